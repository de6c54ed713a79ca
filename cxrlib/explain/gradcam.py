"""Class-activation heatmaps for the classifiers of ``cxrlib.models.build_model`` and similar models: Grad-CAM
(Selvaraju et al. 2017) and HiResCAM (Draelos and Carin 2020).

The model is split at a feature map into ``features(x)`` (the model's graph before the backbone, e.g. its
preprocessing ops, + the backbone up to that layer) and ``head(features)`` (the rest, re-applied layer by layer), so
the gradient of the PNEUMONIA logit with respect to the feature map can be taken. By default the feature map is the
last layer with a spatial (4-D) output, found automatically, also inside the nested keras.applications backbone.

Both methods give one *signed* map per image (``GradCam.evidence``): positive cells raise the PNEUMONIA logit,
negative cells lower it, i.e. are evidence for NORMAL (the model has one sigmoid output, so NORMAL's logit is minus
PNEUMONIA's). The map of a class (``class_maps``) is the signed map's part for that class, cut at zero and divided by
its own maximum. Grad-CAM weights each channel by its gradient averaged over the map; HiResCAM multiplies gradient
and activation cell by cell, so a cell's value is its first-order share of the logit and is not smeared over the map
by the averaging: the method made for maps that must show where the model looked, at any layer.

``explainer(model)`` is the method the reports use: HiResCAM at the architecture's ``cam_layer``
(``cxrlib.backbones``), the end of the stride-16 stage: 6×6 cells at 96 px and 8×8 at 128 px, where the last
stage's 3×3 and 4×4 cannot say which lung a map points at. The stage was chosen from the architectures (the deepest
layer with four times the last stage's cells), not from any map. Drawing the heatmaps is ``cxrlib.plots.gradcam``'s
job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from cxrlib.backbones import BACKBONES
from cxrlib.data.pipeline import load_image

from .region import outside_shares

GRADCAM, HIRESCAM = "gradcam", "hirescam"


def _is_spatial(layer: keras.layers.Layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # layers never called in a graph have no symbolic output
        return False


def find_feature_layer(model: keras.Model) -> list[keras.layers.Layer]:
    """Path to the last layer with a 4-D output: ``[layer]`` or ``[nested_model, layer]``."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            inner = find_feature_layer(layer)
            if inner:
                return [layer, *inner]
        elif _is_spatial(layer) and not isinstance(layer, keras.layers.InputLayer):
            return [layer]
    return []


def _named_layer_path(model: keras.Model, layer_name: str) -> list[keras.layers.Layer]:
    """Path to ``layer_name`` in the model or in one of its nested models."""
    for layer in model.layers:
        if layer.name == layer_name:
            return [layer]
        if isinstance(layer, keras.Model) and any(inner.name == layer_name for inner in layer.layers):
            return [layer, layer.get_layer(layer_name)]
    raise ValueError(f"model {model.name!r} has no layer {layer_name!r} (also searched its nested models)")


class GradCam:
    """Grad-CAM (or HiResCAM) heatmaps of one binary sigmoid classifier: ``GradCam(model)(images) -> (heatmaps,
    probs)``."""

    def __init__(self, model: keras.Model, layer_name: str | None = None, method: str = GRADCAM):
        if method not in (GRADCAM, HIRESCAM):
            raise ValueError(f"method {method!r} is not one of {GRADCAM!r}, {HIRESCAM!r}")
        self.model, self.method = model, method
        path = _named_layer_path(model, layer_name) if layer_name else find_feature_layer(model)
        if not path or len(path) > 2:
            raise ValueError(f"model {model.name!r}: no spatial feature map found at the top level or in one "
                             "nested model; pass layer_name= explicitly")
        self.layer_path = [layer.name for layer in path]
        top_layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        anchor, feature_layer = path[0], path[-1]
        index = top_layers.index(anchor)
        # Everything before the anchor runs as the model's own graph (layers and plain Keras ops alike).
        self.prefix = keras.Model(model.inputs, top_layers[index - 1].output) if index else None
        self.suffix = top_layers[index + 1:]
        if len(path) == 1:
            self.to_features, self.after_features = anchor, None
        else:
            self.to_features = keras.Model(anchor.inputs, feature_layer.output)
            reaches_output = feature_layer.output is anchor.outputs[0]
            self.after_features = None if reaches_output else keras.Model(feature_layer.output, anchor.outputs[0])
        self._check_split()
        self._signed = tf.function(self._signed_maps, reduce_retracing=True)

    def features(self, images) -> tf.Tensor:
        """The feature map (float32) for raw-pixel ``images``."""
        x = tf.convert_to_tensor(images, dtype=tf.float32)
        if self.prefix is not None:
            x = self.prefix(x, training=False)
        return tf.cast(self.to_features(x, training=False), tf.float32)

    def head_logit(self, features) -> tf.Tensor:
        """The PNEUMONIA logit from the feature map (pre-sigmoid, so saturated probabilities keep a gradient)."""
        x = features if self.after_features is None else self.after_features(features, training=False)
        for layer in self.suffix[:-1]:
            x = layer(x, training=False)
        last = self.suffix[-1]
        if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.sigmoid:
            kernel = tf.cast(last.kernel, tf.float32)
            logit = tf.matmul(tf.cast(x, tf.float32), kernel) + tf.cast(last.bias, tf.float32)
        else:  # an unknown last layer: use its output as the score
            logit = tf.cast(last(x, training=False), tf.float32)
        return tf.reshape(logit, [-1])

    def _check_split(self) -> None:
        """Refuse models whose top level is not a simple chain (the re-applied head would be wrong)."""
        size = self.model.input_shape[1:]
        probe = np.random.default_rng(0).uniform(0, 255, (1, *size)).astype("float32")
        expected = np.ravel(self.model(probe, training=False))
        try:
            rebuilt = tf.sigmoid(self.head_logit(self.features(probe))).numpy()
        except (ValueError, TypeError):  # a layer received a tensor from the wrong branch
            rebuilt = np.full_like(expected, np.nan)
        if not np.allclose(expected, rebuilt, atol=1e-2):
            raise ValueError(f"model {self.model.name!r}: re-applying its layers around {self.layer_path} does not "
                             "reproduce its output; Grad-CAM needs a chain of top-level layers (as build_model makes)")

    def _signed_maps(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Signed maps [N, h, w] (positive: evidence for PNEUMONIA) and PNEUMONIA probabilities [N], as a graph."""
        with tf.GradientTape() as tape:
            features = self.features(images)
            tape.watch(features)
            logit = self.head_logit(features)
        grads = tape.gradient(logit, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True) if self.method == GRADCAM else grads
        return tf.reduce_sum(weights * features, axis=-1), tf.sigmoid(logit)

    def evidence(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Signed maps at the feature map's size ([N, h, w]: positive for PNEUMONIA, negative for NORMAL) and
        PNEUMONIA probabilities ([N])."""
        signed, probs = self._signed(tf.convert_to_tensor(np.asarray(images, dtype="float32")))
        return signed.numpy(), probs.numpy()

    def coarse(self, images, for_class=1) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps in [0, 1] at the feature map's size ([N, h, w]) of ``for_class`` (1 PNEUMONIA, 0 NORMAL; one
        class or one per image) and PNEUMONIA probabilities ([N])."""
        signed, probs = self.evidence(images)
        return class_maps(signed, for_class), probs

    def __call__(self, images, for_class=1) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps in [0, 1] at the input size ([N, H, W]) and PNEUMONIA probabilities ([N])."""
        images = np.asarray(images, dtype="float32")
        cams, probs = self.coarse(images, for_class)
        return upsample(cams, images.shape[1:3]), probs


def class_maps(signed: np.ndarray, classes) -> np.ndarray:
    """Each signed map's part for its class (1 PNEUMONIA: the positive part; 0 NORMAL: the negative part), divided
    by its own maximum: [N, h, w] in [0, 1]; a map with no evidence for its class stays all zero."""
    signed = np.asarray(signed, dtype="float64")
    signs = np.where(np.broadcast_to(np.asarray(classes), signed.shape[:1]) == 1, 1.0, -1.0)
    cams = np.maximum(signed * signs[:, None, None], 0.0)
    peaks = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peaks, out=np.zeros_like(cams), where=peaks > 0).astype("float32")


def chosen_classes(probs, threshold: float) -> np.ndarray:
    """The class each image is called at ``threshold`` (1 PNEUMONIA, 0 NORMAL), as the reports decide it."""
    return (np.asarray(probs) >= threshold).astype(int)


def explainer(model: keras.Model) -> GradCam:
    """The reports' method: HiResCAM at the architecture's ``cam_layer`` for a build_model model (else at the last
    spatial layer)."""
    backbone = next((layer.name for layer in model.layers if layer.name in BACKBONES), None)
    return GradCam(model, BACKBONES[backbone].cam_layer if backbone else None, method=HIRESCAM)


def upsample(cams: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Coarse heatmaps [N, h, w] resized to the input's ``size`` (H, W) and kept in [0, 1]: ``bilinear`` (smooth), or
    ``nearest`` (one block per cell, so the map's resolution stays visible)."""
    resized = tf.image.resize(np.asarray(cams, dtype="float32")[..., None], tuple(size), method=method)
    return np.clip(resized.numpy()[..., 0], 0, 1)


@dataclass(frozen=True)
class ModelHeatmaps:
    """One model's heatmaps of a batch: the raw-pixel ``images`` [N, S, S, 3] at its input size, ``heatmaps`` in
    [0, 1] [N, S, S] and its PNEUMONIA ``probs`` [N]; the maps at the feature map's size (``cells``), the class each
    map explains (``classes``: 1 PNEUMONIA, 0 NORMAL), each map's share of mass outside the chest region
    (``outside``, ``explain.region``) and the method in words (``method``), when known."""

    images: np.ndarray
    heatmaps: np.ndarray
    probs: np.ndarray
    cells: np.ndarray | None = None
    classes: np.ndarray | None = None
    outside: np.ndarray | None = None
    method: str = ""


def chosen_class_heatmaps(images: np.ndarray, signed: np.ndarray, probs: np.ndarray, threshold: float,
                          method: str) -> ModelHeatmaps:
    """``ModelHeatmaps`` of the class the model chose at ``threshold``, from signed maps; drawn as one block per cell."""
    classes = chosen_classes(probs, threshold)
    cells = class_maps(signed, classes)
    return ModelHeatmaps(images, upsample(cells, images.shape[1:3], "nearest"), np.asarray(probs, dtype="float32"),
                         cells, classes, outside_shares(cells), method)


def method_words(gradcam: GradCam) -> str:
    """The method and its layer in words, e.g. ``HiResCAM at conv4_block6_out``."""
    return f"{'HiResCAM' if gradcam.method == HIRESCAM else 'Grad-CAM'} at {gradcam.layer_path[-1]}"


def gradcam_maps(models: Mapping[str, keras.Model], images: np.ndarray | Sequence[str],
                 thresholds: Mapping[str, float] | None = None) -> dict[str, ModelHeatmaps]:
    """{name: ModelHeatmaps} of each model for the same images (raw-pixel arrays, or file paths loaded at each
    model's input size by ``cxrlib.data.load_image``): the reports' method (``explainer``), each map for the class
    the model chose at its threshold (``thresholds``, default 0.5)."""
    maps = {}
    for name, model in models.items():
        if isinstance(images, np.ndarray):
            batch = images.astype("float32")
        else:
            batch = np.stack([load_image(path, model.input_shape[1]) for path in images]).astype("float32")
        gradcam = explainer(model)
        signed, probs = gradcam.evidence(batch)
        maps[name] = chosen_class_heatmaps(batch, signed, probs, (thresholds or {}).get(name, 0.5),
                                           method_words(gradcam))
    return maps
