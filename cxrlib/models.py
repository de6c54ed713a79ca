"""ResNet-50 / DenseNet-121 classifiers that take raw 0..255 pixels and output P(PNEUMONIA).

Layout of every model (head_of below, features.py and ood/layers.py find layers by these names; explain/gradcam.py
re-applies the top-level layers as a chain): `image` -> the backbone's own preprocess_input as plain Keras ops,
ending in `preprocess` (Identity) -> backbone (`resnet50` / `densenet121`, a nested keras.applications model,
include_top=False) -> `pool` (GlobalAveragePooling2D) -> `head_dense` -> `head_dropout` -> `prediction` (float32
sigmoid). Architectures come from the registry in cxrlib/backbones.py; saved models hold only standard Keras layers
and ops.
"""
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers

from .backbones import BACKBONES
from .contract import ARCHS, WEIGHTS_FILE_SUFFIXES

HEAD_LAYERS = ("head_dense", "head_dropout", "prediction")

# Keras' own download location and checksum of each ImageNet no-top weights file (from the registry).
IMAGENET_WEIGHTS = {name: (b.weights_url, b.weights_file, b.weights_md5) for name, b in BACKBONES.items()}

# keras.applications preprocess_input constants: "caffe" = RGB->BGR then ImageNet mean subtraction (no
# scaling); "torch" = /255 then ImageNet mean/std normalisation.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


# What `weights` may be: None, 'imagenet', a weights file, a path template with `{arch}`, or {arch: one of these}.
WeightsSpec = str | os.PathLike | Mapping[str, str | os.PathLike | None] | None


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are neither in the Keras cache nor downloadable."""


def preprocess(images, mode: str):
    """The backbone's preprocess_input as plain Keras ops (float32), so saved models need no custom layer."""
    if mode == "caffe":
        return keras.ops.subtract(keras.ops.flip(images, axis=-1), np.array(CAFFE_BGR_MEAN, "float32"))
    if mode == "torch":
        scaled = keras.ops.subtract(keras.ops.divide(images, 255.0), np.array(TORCH_MEAN, "float32"))
        return keras.ops.divide(scaled, np.array(TORCH_STD, "float32"))
    raise ValueError(f"preprocess mode must be 'caffe' or 'torch', got {mode!r}")


def keras_models_dir() -> Path:
    """Where keras.applications looks for downloaded weights: $KERAS_HOME/models or ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def file_md5(path: Path) -> str:
    """The md5 of a file, the checksum Keras publishes for its application weights."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_weights_path(arch: str) -> Path:
    """The local ImageNet no-top weights file for `arch`, downloading it when missing; clear error offline."""
    base_url, file_name, md5 = IMAGENET_WEIGHTS[arch]
    cache_dir = keras_models_dir()
    local = cache_dir / file_name
    if local.exists():
        if file_md5(local) != md5:
            raise WeightsUnavailableError(
                f"{local} is corrupt or incomplete (md5 differs from {md5}). Delete it and download "
                f"{base_url}{file_name} again.")
        return local
    cache_dir.mkdir(parents=True, exist_ok=True)  # get_file falls back to /tmp/.keras when it is missing
    try:
        return Path(keras.utils.get_file(file_name, base_url + file_name, cache_dir=str(cache_dir.parent),
                                         cache_subdir="models", file_hash=md5))
    except Exception as error:
        raise WeightsUnavailableError(
            f"ImageNet weights for {arch} are not available offline: Keras needs {local} "
            f"(download {base_url}{file_name} on a connected machine and copy it there, or set KERAS_HOME). "
            f"Download failed with: {error}. To run without them, train from scratch: weights=None "
            f"(the `cpu` profile does this).") from error


def backbone_weights(arch: str, weights: WeightsSpec) -> str | None:
    """`arch`'s own choice in `weights`: its entry of a mapping, `{arch}` filled into a path template."""
    if isinstance(weights, Mapping):
        unknown = sorted(map(str, set(weights) - set(ARCHS)))
        if unknown or arch not in weights:
            problem = f"names unknown backbones {unknown}" if unknown else f"has no entry for {arch}"
            entries = ", ".join(f"'{name}': <weights file>" for name in ARCHS)
            raise ValueError(f"weights mapping {dict(weights)!r} {problem}; give one entry per backbone: "
                             f"{{{entries}}} ('imagenet' or None also work as entries)")
        weights = weights[arch]
    if weights is None or weights == "imagenet":
        return weights
    return os.fspath(weights).replace("{arch}", arch)


def resolve_weights(arch: str, weights: WeightsSpec) -> str | None:
    """`None`, or a local file keras.applications can load: ImageNet from the Keras cache, or a user file.

    `weights` is None (from scratch), 'imagenet', a weights file, a path template containing `{arch}`
    (`weights/{arch}_radiology.h5`) or a mapping `{arch: any of those}`.
    """
    choice = backbone_weights(arch, weights)
    if choice is None:
        return None
    if choice == "imagenet":
        return str(imagenet_weights_path(arch))
    path = Path(choice)
    options = (f"pass weights='imagenet', None (from scratch), the path of a saved {arch} backbone weights file, "
               "a template such as 'weights/{arch}.weights.h5' or a mapping {arch: path}")
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} (from weights={weights!r}) does not exist; {options}")
    if not path.name.endswith(WEIGHTS_FILE_SUFFIXES):
        raise ValueError(f"backbone weights file {path} (from weights={weights!r}) is not a Keras weights file "
                         f"(it must end in {', '.join(WEIGHTS_FILE_SUFFIXES)}); {options}")
    return str(path)


def build_backbone(arch: str, image_size: int, weights: WeightsSpec = None) -> keras.Model:
    """The keras.applications backbone without its top, on preprocessed inputs of `image_size` pixels."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 for {arch}, got {image_size}")
    application = getattr(keras.applications, BACKBONES[arch].application)
    return application(include_top=False, weights=resolve_weights(arch, weights),
                       input_shape=(image_size, image_size, 3))


def build_model(arch: str, image_size: int, weights: WeightsSpec = None, train_base: bool = True,
                head_units: int = 1024, dropout: float = 0.5) -> keras.Model:
    """Raw pixels -> preprocess -> backbone -> GAP -> Dense(relu) -> Dropout -> Dense(1, sigmoid, float32).

    The backbone runs with BatchNorm in inference mode (`training=False`) whenever it is frozen or starts
    from pretrained weights (so fine-tuning never disturbs the pretrained statistics); from scratch with a
    trainable base, BatchNorm trains normally.
    """
    base = build_backbone(arch, image_size, weights)
    base.trainable = train_base
    bn_inference = (backbone_weights(arch, weights) is not None) or not train_base
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Identity(name="preprocess")(preprocess(inputs, BACKBONES[arch].preprocess_mode))
    x = base(x, training=False) if bn_inference else base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(head_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="prediction")(x)
    return keras.Model(inputs, outputs, name=f"{arch}_classifier")


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a saved classifier in Keras' safe mode (cxrlib.train saves only Keras' own layers)."""
    return keras.saving.load_model(path)


def arch_of(model: keras.Model) -> str:
    """The backbone architecture of a model made by build_model."""
    for arch in ARCHS:
        if any(layer.name == arch for layer in model.layers):
            return arch
    raise ValueError(f"model {model.name!r} has no {' or '.join(ARCHS)} backbone layer; build it with build_model")


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested keras.applications backbone of a build_model model."""
    return model.get_layer(arch_of(model))


def head_of(model: keras.Model) -> keras.Model:
    """A model from pooled backbone features to the probability that shares the head layers of `model`."""
    features = keras.Input((model.get_layer("pool").output.shape[-1],), name="features")
    x = features
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(features, x, name=f"{model.name}_head")


def unfreeze_from(model: keras.Model, block: str | None = None) -> int:
    """Make the backbone trainable from the first layer named `block...` to the top; BatchNorm stays frozen.

    `block` defaults to the registry's finetune_from (`conv5_block1`: the last stage of either backbone); any block
    prefix works (`conv4_block1`, `conv5_block9`, ...). Returns the number of backbone layers unfrozen.
    Recompile the model afterwards.
    """
    arch = arch_of(model)
    block = block or BACKBONES[arch].finetune_from
    base = backbone_of(model)
    names = [layer.name for layer in base.layers]
    starts = [i for i, name in enumerate(names) if name.startswith(block)]
    if not starts:
        blocks = sorted({name.split("_")[0] + "_" + name.split("_")[1] for name in names if "_block" in name})
        raise ValueError(f"{arch} has no layer starting with {block!r}; blocks are: {', '.join(blocks)}")
    base.trainable = True
    unfrozen = 0
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= starts[0] and not isinstance(layer, layers.BatchNormalization)
        unfrozen += layer.trainable and bool(layer.weights)
    return unfrozen


def _count(variables) -> tuple[int, float]:
    """Number of scalars in `variables` and their size in MB (2**20 bytes, as Keras' summary reports)."""
    count = sum(int(np.prod(v.shape)) for v in variables)
    size = sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
               for v in variables)
    return count, size / 2**20


def parameter_summary(model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> pd.DataFrame:
    """Total, trainable, non-trainable and optimizer-state parameter counts and MB (as Keras' summary)."""
    optimizer = optimizer or getattr(model, "optimizer", None)
    rows = {"total": _count(model.weights), "trainable": _count(model.trainable_weights),
            "non_trainable": _count(model.non_trainable_weights)}
    if optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        rows["optimizer"] = _count(optimizer.variables)
    else:
        rows["optimizer"] = (0, 0.0)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["params", "mb"])
    frame.index.name = "kind"
    return frame
