"""The backbone registry: one entry per architecture, everything the library and the reports need to know.

TensorFlow-free, so that parameter checks and the runner can read it cheaply. Adding an architecture is
one entry here plus a two-line training notebook (README, "Extending").
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    """One architecture: its keras.applications constructor, input normalisation, fine-tuning block, OOD layers,
    heat-map layer, ImageNet weights and prose."""

    name: str  # registry key; the run directory and notebook use it
    title: str  # how reports name it
    application: str  # the keras.applications constructor, e.g. "ResNet50"
    preprocess_mode: str  # keras.applications preprocess_input mode: "caffe" or "torch"
    finetune_from: str  # first block of the last stage: fine-tuning unfreezes from here to the top
    ood_layers: tuple[str, ...]  # the OOD detector's layers (cxrlib.ood): the end of each stage, shallow to deep
    cam_layer: str  # the heat maps' layer (cxrlib.explain): the end of the stride-16 stage, 6×6 cells at 96 px
    weights_url: str  # Keras' download folder for the ImageNet no-top weights
    weights_file: str
    weights_md5: str
    intro: str  # the training notebook's introduction (Markdown)


_INTRO_END = (
    "This notebook trains the model, picks its decision threshold on the validation patients, and only then "
    "evaluates it on the untouched test folder. Everything it produces is saved in one *run directory* per "
    "replicate (listed at the end), which the comparison notebook reads."
)

BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        Backbone(
            name="resnet50", title="ResNet-50", application="ResNet50", preprocess_mode="caffe",
            finetune_from="conv5_block1",  # conv5_block1..3: the last residual stage, ~15M weights
            ood_layers=("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
            cam_layer="conv4_block6_out",  # stage 4's output (stride 16); stage 5's is 3×3 at 96 px
            weights_url="https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_md5="4d473c1dd8becc155b73f8504c6f6626",
            intro=("**ResNet-50** (He et al. 2016) stacks 50 layers in residual blocks: each block adds its input "
                   "to its output (\"skip connections\"), which lets very deep networks train. It is the larger "
                   "of the two models compared here (about 26 million weights with this head).\n\n" + _INTRO_END),
        ),
        Backbone(
            name="densenet121", title="DenseNet-121", application="DenseNet121", preprocess_mode="torch",
            finetune_from="conv5_block1",  # conv5_block1..16: the last dense block, ~2.9M weights, + final BN
            # dense blocks 1-3 end in their concat; `relu` (after the final BN) is the backbone's output
            ood_layers=("conv2_block6_concat", "conv3_block12_concat", "conv4_block24_concat", "relu"),
            cam_layer="conv4_block24_concat",  # dense block 3's output (stride 16); `relu` is 4×4 at 128 px
            weights_url="https://storage.googleapis.com/tensorflow/keras-applications/densenet/",
            weights_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_md5="30ee3e1110167f948a6b9946edeeb738",
            intro=("**DenseNet-121** (Huang et al. 2017) connects every layer of a block to every later layer of "
                   "that block, so features are reused instead of relearned. It has far fewer weights than "
                   "ResNet-50 (about 8 million with this head, against 26 million); CheXNet (Rajpurkar et al. "
                   "2017) used it for chest X-rays.\n\n" + _INTRO_END),
        ),
    )
}


def title_of(name: str) -> str:
    """The display name of a registered backbone; any other name (e.g. "ensemble") is returned as it is."""
    return BACKBONES[name].title if name in BACKBONES else name
