"""Heatmaps drawn over the X-rays: blended overlays (also at the stored image's own resolution), the figure of several
models side by side (every panel named by its image file, one colour bar, the chest region outlined, maps with most
of their mass outside it warned) and the share of each map's mass outside the region. The heatmaps come as arrays
(``cxrlib.explain.gradcam_maps``); the region and the warning are the caller's (``cxrlib.explain.region``)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
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


COLOUR_BAR = "share of the map's own strongest cell (0 = no evidence, 1 = strongest)"


def _verdict(prob: float, threshold: float | None, truth: str) -> tuple[str, str]:
    """The title colour and line of a model's call at its threshold, right or wrong ("" without both)."""
    if not truth or threshold is None:
        return "black", ""
    predicted = CLASS_NAMES[int(prob >= threshold)]
    return (RIGHT, f"\n{predicted}: right") if predicted == truth else (WRONG, f"\n{predicted}: WRONG")


def _map_line(model_maps, row: int, warn_above: float | None, warning: str) -> str:
    """The title line naming the class a map explains and, past ``warn_above``, its share outside and ``warning``."""
    classes, outside = getattr(model_maps, "classes", None), getattr(model_maps, "outside", None)
    line = "" if classes is None else f"\nmap for {CLASS_NAMES[int(classes[row])]}"
    if outside is None or np.isnan(outside[row]):
        return line + ("" if classes is None else " (empty)")
    share = f"{outside[row]:.0%} outside the box"
    return line + (f"\n⚠ {share}:\n{warning}" if warn_above is not None and outside[row] > warn_above
                   else f"\n{share}")


def _outline(ax, box, size: int) -> None:
    """The chest region (fractions ``top``, ``bottom``, ``left``, ``right`` of the square) as a dashed rectangle."""
    ax.add_patch(Rectangle((box.left * size - 0.5, box.top * size - 0.5), (box.right - box.left) * size,
                           (box.bottom - box.top) * size, fill=False, linestyle="--", linewidth=1, edgecolor="white"))


@styled
def plot_gradcam(maps: Mapping, labels: Sequence | None = None, thresholds: Mapping[str, float] | None = None,
                 alpha: float = 0.4, save_to: str | Path | None = None, names: Sequence[str] | None = None,
                 box=None, warn_above: float | None = None, warning: str = "", cmap: str = "jet") -> Figure:
    """Rows of images: the X-ray, then each model's heatmap overlay titled with its PNEUMONIA score; one colour bar.

    ``maps``: {model name: its ``images``, ``heatmaps`` and ``probs`` of the same images} (``explain.ModelHeatmaps``;
    its ``classes`` and ``outside``, when given, name the class each map explains and its share outside ``box``).
    ``names``: the image files, named on every panel. With ``labels`` and ``thresholds`` ({name: threshold}), each
    overlay's title also says the model's call and whether it is right, in words and in colour (blue right, vermillion
    wrong: ``style.RIGHT``/``WRONG``). ``box``: the chest region, outlined (dashed); a map with more than
    ``warn_above`` of its mass outside it gets ``warning`` in its title.
    """
    thresholds = thresholds or {}
    first_images = next(iter(maps.values())).images
    figure, axes = new_figure(len(first_images), 1 + len(maps), size=(2.7, 3.4))
    for row in range(len(first_images)):
        truth = _label_name(labels[row]) if labels is not None else ""
        named = f"{Path(names[row]).name}\n" if names is not None else ""
        axes[row, 0].imshow(display_image(first_images[row]), cmap="gray")
        axes[row, 0].set_title(f"{named}true {truth}" if truth else f"{named}X-ray", fontsize=8)
        for column, (name, model_maps) in enumerate(maps.items(), start=1):
            ax = axes[row, column]
            ax.imshow(overlay_heatmap(model_maps.images[row], model_maps.heatmaps[row], alpha, cmap))
            if box is not None:
                _outline(ax, box, model_maps.images.shape[1])
            color, verdict = _verdict(model_maps.probs[row], thresholds.get(name), truth)
            ax.set_title(f"{named}{name}: score {model_maps.probs[row]:.2f}{verdict}"
                         f"{_map_line(model_maps, row, warn_above, warning)}", fontsize=8, color=color)
    for ax in axes.flat:
        ax.axis("off")
    figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.5, aspect=40, label=COLOUR_BAR)
    figure.suptitle("Heatmaps over the X-rays (warm colours = strongest evidence for the class named under each "
                    "panel); each title: the image file, the model's score, its call at its threshold, right or wrong",
                    fontsize=10)
    return finish(figure, save_to)


@styled
def plot_outside_shares(shares: Mapping[str, np.ndarray], warn_above: float, uniform: float,
                        save_to: str | Path | None = None) -> Figure:
    """Per model, a histogram of the share of each map's mass outside the chest region, the warning line at
    ``warn_above`` and, dotted, the share of an evenly spread map (``uniform``)."""
    figure, axes = new_figure(1, len(shares), size=(4.2, 3.0), sharey=True)
    bins = np.linspace(0, 1, 21)
    for ax, (name, values) in zip(axes[0], shares.items()):
        values = np.asarray(values, dtype="float64")
        values = values[~np.isnan(values)]
        ax.hist(values, bins=bins, color="0.6")  # grey: the warning line keeps the one colour
        ax.axvline(warn_above, color=WRONG, linewidth=1.5, label=f"warning: more than {warn_above:.0%} outside")
        ax.axvline(uniform, color="grey", linestyle=":", label=f"an evenly spread map ({uniform:.0%})")
        ax.set_title(f"{name}: {np.mean(values > warn_above):.0%} of {len(values)} maps warned", fontsize=10)
        ax.set_xlabel("share of the map's mass outside the chest box")
    axes[0, 0].set_ylabel("test images")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    return finish(figure, save_to)
