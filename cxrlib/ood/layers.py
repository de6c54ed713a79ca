"""A model's OOD features: the global-average-pooled outputs of its registry layers, in the same pass as its score.

Layer names are those of the nested keras.applications backbone (`backbones.Backbone.ood_layers`), or `pool`, the
model's own pooled backbone output (the head's input).
"""
from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrlib.backbones import BACKBONES
from cxrlib.data.pipeline import make_dataset
from cxrlib.models import HEAD_LAYERS, arch_of, backbone_of

POOLED = "pool"  # the model's own layer: the pooled backbone output


class MissingLayerError(ValueError):
    """A model lacks a layer the detector was fitted on."""


def registry_layers(model: keras.Model) -> tuple[str, ...]:
    """The OOD layers the backbone registry names for the model's architecture."""
    return BACKBONES[arch_of(model)].ood_layers


def scoring_model(model: keras.Model, layers) -> keras.Model:
    """Raw pixels -> [pooled output of each of `layers`..., score]: one pass through a build_model model's backbone.

    MissingLayerError names a layer that neither the backbone nor the model has.
    """
    try:
        base = backbone_of(model)
    except ValueError as error:
        raise MissingLayerError(f"layers {list(layers)} cannot be found: {error}") from None
    inner_names = {layer.name for layer in base.layers}
    missing = [name for name in layers if name != POOLED and name not in inner_names]
    if missing:
        raise MissingLayerError(f"{model.name} has no layer {', '.join(map(repr, missing))}")
    tapped = [name for name in layers if name != POOLED]
    inner = keras.Model(base.input, [base.get_layer(name).output for name in tapped] + [base.output])
    *stages, top = inner(model.get_layer("preprocess").output)
    pooled = {name: keras.layers.GlobalAveragePooling2D(name=f"ood_{name}")(stage)
              for name, stage in zip(tapped, stages)}
    pooled[POOLED] = x = model.get_layer(POOLED)(top)
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(model.input, [pooled[name] for name in layers] + [x], name=f"{model.name}_ood")


def layer_features(scorer: keras.Model, layers, frame: pd.DataFrame, image_size: int, batch_size: int = 32,
                   desc: str = "OOD features") -> dict[str, np.ndarray]:
    """{layer: float32 [N, D]} of the frame's images through `scorer` (scoring_model(model, layers)), in row order."""
    batches = {name: [] for name in layers}
    with tqdm(total=len(frame), desc=desc, unit="img") as progress:
        for images, _ in make_dataset(frame, image_size, batch_size, cache=None):
            outputs = scorer.predict_on_batch(images)
            for name, output in zip(layers, outputs[:-1]):
                batches[name].append(np.asarray(output, dtype=np.float32))
            progress.update(len(images))
    return {name: np.concatenate(parts) for name, parts in batches.items()}
