"""Grad-CAM heatmaps drawn over the X-rays: blended overlays (also at the stored image's own resolution) and the
figure of several models side by side. The heatmaps come as arrays (``cxrlib.explain.gradcam_maps``)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cxrlib.contract import CLASS_NAMES

from .images import display_image, read_stored_image
from .style import RIGHT, WRONG, finish, new_figure, styled


def overlay_heatmap(image, heatmap, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The X-ray in grey with the heatmap blended on top, RGB in [0, 1]."""
    base = display_image(image)
    base = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    colored = matplotlib.colormaps[cmap](np.asarray(heatmap))[..., :3]
    return np.clip((1 - alpha) * base + alpha * colored, 0, 1)


def source_overlay(path: str | Path, heatmap, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The stored image at its own resolution with the heatmap stretched over it, RGB in [0, 1].

    The model saw the image squashed to a square (``cxrlib.data.load_image``), so the square heatmap is resized
    bilinearly to the image's width and height, aspect ratio ignored, which maps each cell back to where it was.
    """
    pixels = read_stored_image(path)
    height, width = pixels.shape[:2]
    square = Image.fromarray(np.asarray(heatmap, dtype=np.float32))  # mode F: 32-bit float pixels
    stretched = np.asarray(square.resize((width, height), Image.Resampling.BILINEAR))
    return overlay_heatmap(pixels, np.clip(stretched, 0, 1), alpha, cmap)


def _label_name(label) -> str:
    return CLASS_NAMES[label] if isinstance(label, (int, np.integer)) else str(label)


@styled
def plot_gradcam(maps: Mapping, labels: Sequence | None = None, thresholds: Mapping[str, float] | None = None,
                 alpha: float = 0.4, save_to: str | Path | None = None) -> Figure:
    """Rows of images: the X-ray, then each model's Grad-CAM overlay titled with its PNEUMONIA probability.

    ``maps``: {model name: its ``images``, ``heatmaps`` and ``probs`` of the same images} (``explain.ModelHeatmaps``).
    With ``labels`` and ``thresholds`` ({name: threshold}), each overlay's title also says the model's call and
    whether it is right, in words and in colour (blue right, vermillion wrong: ``style.RIGHT``/``WRONG``).
    """
    thresholds = thresholds or {}
    first_images = next(iter(maps.values())).images
    figure, axes = new_figure(len(first_images), 1 + len(maps), size=(2.6, 2.8))
    for row in range(len(first_images)):
        truth = _label_name(labels[row]) if labels is not None else ""
        axes[row, 0].imshow(display_image(first_images[row]), cmap="gray")
        axes[row, 0].set_title(f"true {truth}" if truth else "X-ray", fontsize=9)
        for column, (name, model_maps) in enumerate(maps.items(), start=1):
            axes[row, column].imshow(overlay_heatmap(model_maps.images[row], model_maps.heatmaps[row], alpha))
            color, verdict = "black", ""
            if truth and name in thresholds:
                predicted = CLASS_NAMES[int(model_maps.probs[row] >= thresholds[name])]
                right = predicted == truth
                color, verdict = (RIGHT, f"\n{predicted}: right") if right else (WRONG, f"\n{predicted}: WRONG")
            axes[row, column].set_title(f"{name}: score {model_maps.probs[row]:.2f}{verdict}", fontsize=9, color=color)
    for ax in axes.flat:
        ax.axis("off")
    figure.suptitle("Grad-CAM: evidence for PNEUMONIA (warm colours = strongest); each title: the model's score, "
                    "its call at its threshold, right or wrong", fontsize=10)
    return finish(figure, save_to)
