"""Grad-CAM (Selvaraju et al. 2017) for the classifiers of ``cxrlib.models.build_model`` and similar models.

The feature map is the last layer with a spatial (4-D) output, found automatically, also inside the
nested keras.applications backbone. The model is split there into ``features(x)`` (the model's graph before
the backbone, e.g. its preprocessing ops, + the backbone up to that layer) and ``head(features)`` (the rest, re-applied layer by layer),
so the gradient of the PNEUMONIA logit with respect to the feature map can be taken.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import keras
import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from PIL import Image

from cxrlib import plots
from cxrlib.evaluate import CLASS_NAMES


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

    def __call__(self, images, for_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps in [0, 1] at the input size ([N, H, W]) and PNEUMONIA probabilities ([N])."""
        images = np.asarray(images, dtype="float32")
        with tf.GradientTape() as tape:
            features = self.features(images)
            tape.watch(features)
            logit = self.head_logit(features)
            score = logit if for_class == 1 else -logit
        grads = tape.gradient(score, features)
        channel_weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(channel_weights * features, axis=-1))[..., None]
        peak = tf.reduce_max(cam, axis=(1, 2, 3), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        heatmaps = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0]
        return np.clip(heatmaps.numpy(), 0, 1), tf.sigmoid(logit).numpy()


def overlay_heatmap(image, heatmap, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The X-ray in grey with the heatmap blended on top, RGB in [0, 1]."""
    base = plots.display_image(image)
    base = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    colored = matplotlib.colormaps[cmap](np.asarray(heatmap))[..., :3]
    return np.clip((1 - alpha) * base + alpha * colored, 0, 1)


def source_overlay(path: str | Path, heatmap, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The stored image at its own resolution with the heatmap stretched over it, RGB in [0, 1].

    The model saw the image squashed to a square (``cxrlib.data.load_image``), so the square heatmap is resized
    bilinearly to the image's width and height, aspect ratio ignored, which maps each cell back to where it was.
    """
    pixels = plots.read_stored_image(path)
    height, width = pixels.shape[:2]
    square = Image.fromarray(np.asarray(heatmap, dtype=np.float32))  # mode F: 32-bit float pixels
    stretched = np.asarray(square.resize((width, height), Image.Resampling.BILINEAR))
    return overlay_heatmap(pixels, np.clip(stretched, 0, 1), alpha, cmap)


def _load_batch(images, image_size: int, loader: Callable | None) -> np.ndarray:
    """Raw pixel batch from an array or from a sequence of image paths."""
    if isinstance(images, np.ndarray):
        return images.astype("float32")
    loader = loader or plots.default_loader()
    return np.stack([loader(path, image_size) for path in images]).astype("float32")


def _label_name(label) -> str:
    return CLASS_NAMES[label] if isinstance(label, (int, np.integer)) else str(label)


@plots.styled
def plot_gradcam_comparison(models: Mapping[str, keras.Model], images: np.ndarray | Sequence[str],
                            labels: Sequence | None = None, thresholds: Mapping[str, float] | None = None,
                            loader: Callable | None = None, alpha: float = 0.4,
                            save_to: str | Path | None = None) -> Figure:
    """Rows of images: the X-ray, then each model's Grad-CAM overlay titled with its PNEUMONIA probability.

    ``images`` are raw-pixel arrays or file paths (loaded at each model's input size). With ``labels``
    and ``thresholds`` ({name: threshold}), overlay titles are green when right and red when wrong.
    """
    thresholds = thresholds or {}
    results = {}
    for name, model in models.items():
        batch = _load_batch(images, model.input_shape[1], loader)
        results[name] = (batch, *GradCam(model)(batch))
    first_batch = next(iter(results.values()))[0]
    figure, axes = plots.new_figure(len(first_batch), 1 + len(models), size=(2.6, 2.8))
    for row in range(len(first_batch)):
        truth = _label_name(labels[row]) if labels is not None else ""
        axes[row, 0].imshow(plots.display_image(first_batch[row]), cmap="gray")
        axes[row, 0].set_title(f"true {truth}" if truth else "X-ray", fontsize=9)
        for column, (name, (batch, heatmaps, probs)) in enumerate(results.items(), start=1):
            axes[row, column].imshow(overlay_heatmap(batch[row], heatmaps[row], alpha))
            color = "black"
            if truth and name in thresholds:
                predicted = CLASS_NAMES[int(probs[row] >= thresholds[name])]
                color = plots.RIGHT if predicted == truth else plots.WRONG
            axes[row, column].set_title(f"{name}: p={probs[row]:.2f}", fontsize=9, color=color)
    for ax in axes.flat:
        ax.axis("off")
    figure.suptitle("Grad-CAM (PNEUMONIA evidence)")
    return plots.finish(figure, save_to)


def plot_gradcam(model: keras.Model, images: np.ndarray | Sequence[str], labels: Sequence | None = None,
                 name: str | None = None, threshold: float | None = None, **kwargs) -> Figure:
    """Grad-CAM overlays of one model (``plot_gradcam_comparison`` with a single model)."""
    name = name or model.name
    thresholds = None if threshold is None else {name: threshold}
    return plot_gradcam_comparison({name: model}, images, labels, thresholds, **kwargs)
