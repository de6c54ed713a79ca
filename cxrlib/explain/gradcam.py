"""Grad-CAM (Selvaraju et al. 2017) heatmaps for the classifiers of ``cxrlib.models.build_model`` and similar models.

The feature map is the last layer with a spatial (4-D) output, found automatically, also inside the
nested keras.applications backbone. The model is split there into ``features(x)`` (the model's graph before
the backbone, e.g. its preprocessing ops, + the backbone up to that layer) and ``head(features)`` (the rest, re-applied layer by layer),
so the gradient of the PNEUMONIA logit with respect to the feature map can be taken. Drawing the heatmaps over the
X-rays is ``cxrlib.plots.gradcam``'s job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from cxrlib.data.pipeline import load_image


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
    """Grad-CAM heatmaps of one binary sigmoid classifier: ``GradCam(model)(images) -> (heatmaps, probs)``."""

    def __init__(self, model: keras.Model, layer_name: str | None = None):
        self.model = model
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

    def coarse(self, images, for_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps in [0, 1] at the feature map's size ([N, h, w]) and PNEUMONIA probabilities ([N])."""
        images = np.asarray(images, dtype="float32")
        with tf.GradientTape() as tape:
            features = self.features(images)
            tape.watch(features)
            logit = self.head_logit(features)
            score = logit if for_class == 1 else -logit
        grads = tape.gradient(score, features)
        channel_weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(channel_weights * features, axis=-1))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(cam, peak).numpy(), tf.sigmoid(logit).numpy()

    def __call__(self, images, for_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps in [0, 1] at the input size ([N, H, W]) and PNEUMONIA probabilities ([N])."""
        images = np.asarray(images, dtype="float32")
        cams, probs = self.coarse(images, for_class)
        return upsample(cams, images.shape[1:3]), probs


def upsample(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Coarse heatmaps [N, h, w] resized (bilinear) to the input's ``size`` (H, W) and kept in [0, 1]."""
    resized = tf.image.resize(np.asarray(cams, dtype="float32")[..., None], tuple(size), method="bilinear")
    return np.clip(resized.numpy()[..., 0], 0, 1)


@dataclass(frozen=True)
class ModelHeatmaps:
    """One model's Grad-CAM of a batch: the raw-pixel ``images`` [N, S, S, 3] at its input size, ``heatmaps`` in
    [0, 1] [N, S, S] and its PNEUMONIA ``probs`` [N]."""

    images: np.ndarray
    heatmaps: np.ndarray
    probs: np.ndarray


def gradcam_maps(models: Mapping[str, keras.Model], images: np.ndarray | Sequence[str]) -> dict[str, ModelHeatmaps]:
    """{name: ModelHeatmaps} of each model for the same images: raw-pixel arrays, or file paths loaded at each
    model's input size (``cxrlib.data.load_image``)."""
    maps = {}
    for name, model in models.items():
        if isinstance(images, np.ndarray):
            batch = images.astype("float32")
        else:
            batch = np.stack([load_image(path, model.input_shape[1]) for path in images]).astype("float32")
        maps[name] = ModelHeatmaps(batch, *GradCam(model)(batch))
    return maps
