"""Figures of X-ray images: prediction grids, confident errors, stored samples and pixel-intensity histograms."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from cxrlib.contract import CLASS_NAMES
from cxrlib.data.summary import sample_per_class

from .style import CLASS_COLORS, RIGHT, WRONG, finish, label, new_figure, styled


def display_image(image) -> np.ndarray:
    """Pixels ready for imshow: [H, W] or [H, W, 3] in 0..1 (accepts 0..255 uint8 or float)."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image / 255.0 if image.max() > 1 else image, 0, 1)


def _default_loader() -> Callable:
    """``cxrlib.data.load_image`` (imported lazily: it pulls in TensorFlow)."""
    from cxrlib.data import load_image
    return load_image


def _image_grid(rows: pd.DataFrame, threshold: float, title: str, image_size: int, loader: Callable | None,
                ncols: int, save_to) -> Figure:
    """Images with 'pred (prob) / true' titles, green when right and red when wrong."""
    loader = loader or _default_loader()
    nrows = max(1, int(np.ceil(len(rows) / ncols)))
    figure, axes = new_figure(nrows, ncols, size=(2.4, 2.7))
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows.itertuples(index=False)):
        predicted = int(row.prob >= threshold)
        ax.imshow(display_image(loader(row.path, image_size)), cmap="gray")
        ax.set_title(f"pred {CLASS_NAMES[predicted]} ({row.prob:.2f})\ntrue {row.label}",
                     color=RIGHT if predicted == row.target else WRONG, fontsize=9)
    figure.suptitle(title)
    return finish(figure, save_to)


@styled
def plot_sample_predictions(run, n: int = 12, image_size: int = 224, loader: Callable | None = None,
                            ncols: int = 4, seed: int = 0, save_to: str | Path | None = None) -> Figure:
    """A seeded random sample of test images, half of each class where possible, with predictions."""
    test = run.test
    wanted = {0: n // 2, 1: n - n // 2}
    per_class = [group.sample(min(len(group), wanted[target]), random_state=seed)
                 for target, group in test.groupby("target")]
    sample = pd.concat(per_class).head(n).sample(frac=1.0, random_state=seed)
    return _image_grid(sample, run.threshold, f"{label(run)}: sample test predictions (threshold {run.threshold:.2f})",
                       image_size, loader, ncols, save_to)


@styled
def plot_confident_errors(run, n: int = 8, image_size: int = 224, loader: Callable | None = None,
                          ncols: int = 4, save_to: str | Path | None = None) -> Figure:
    """The test errors the model was most sure of (probability furthest from the chosen threshold)."""
    test = run.test
    errors = test[~test["correct"]]
    errors = errors.assign(confidence=(errors["prob"] - run.threshold).abs()).nlargest(n, "confidence")
    if errors.empty:
        raise ValueError(f"{label(run)} makes no test errors at threshold {run.threshold:.3f}; nothing to show")
    return _image_grid(errors, run.threshold, f"{label(run)}: most confident errors ({len(errors)} shown)",
                       image_size, loader, ncols, save_to)


def read_stored_image(path: str | Path) -> np.ndarray:
    """uint8 RGB pixels of one file at the size stored on disk (upright; any PIL mode, via ``to_rgb8``)."""
    from cxrlib.data import to_rgb8
    with Image.open(path) as image:
        return np.asarray(to_rgb8(ImageOps.exif_transpose(image)))


@styled
def plot_sample_images(images: pd.DataFrame, n_per_class: int = 4, seed: int = 42, loader: Callable | None = None,
                       save_to: str | Path | None = None) -> Figure:
    """A seeded random sample of images, one row per class, unresized, titled with class and patient.

    ``loader(path)`` returns the pixels; the default reads them at the size stored on disk.
    """
    loader = loader or read_stored_image
    sample = sample_per_class(images, n_per_class, seed)
    groups = list(sample.groupby("label"))
    figure, axes = new_figure(len(groups), max(len(group) for _, group in groups), size=(2.4, 2.6))
    for ax in axes.flat:
        ax.axis("off")
    for row_axes, (_, group) in zip(axes, groups):
        for ax, row in zip(row_axes, group.itertuples(index=False)):
            ax.imshow(display_image(loader(row.path)), cmap="gray")
            ax.set_title(f"{row.label}\n{row.patient_id}", fontsize=9)
    figure.suptitle("Sample images per class (as stored)")
    return finish(figure, save_to)


@styled
def plot_intensity_histograms(images: pd.DataFrame, n_per_class: int = 100, image_size: int = 128, seed: int = 42,
                              loader: Callable | None = None, save_to: str | Path | None = None) -> Figure:
    """Pixel-value densities of a seeded sample of images per class, resized to ``image_size``, means in the legend."""
    loader = loader or _default_loader()
    sample = sample_per_class(images, n_per_class, seed)
    figure, axes = new_figure(size=(6.0, 3.5))
    ax = axes[0, 0]
    for class_name, group in sample.groupby("label"):
        values = np.concatenate([loader(path, image_size)[..., 0].ravel() for path in group["path"]])
        ax.hist(values, bins=64, range=(0, 255), density=True, histtype="step", lw=1.5,
                color=CLASS_COLORS[class_name], label=f"{class_name} (mean {values.mean():.0f})")
    per_class = len(sample) // sample["label"].nunique()
    ax.set(title=f"Pixel intensities: {per_class} images per class at {image_size}x{image_size}",
           xlabel="pixel value", ylabel="density", xlim=(0, 255))
    ax.legend()
    return finish(figure, save_to)


@styled
def plot_image_gallery(paths: Sequence[str], captions: Sequence[str], title: str, loader: Callable | None = None,
                       ncols: int = 4, save_to: str | Path | None = None) -> Figure:
    """The images at ``paths`` as stored (``loader(path)``; default ``read_stored_image``), each over its caption."""
    if len(paths) != len(captions) or not len(paths):
        raise ValueError(f"plot_image_gallery needs one caption per image and at least one image; got {len(paths)} "
                         f"paths and {len(captions)} captions")
    loader = loader or read_stored_image
    nrows = int(np.ceil(len(paths) / ncols))
    figure, axes = new_figure(nrows, ncols, size=(2.9, 3.6))
    for ax in axes.flat:
        ax.axis("off")
    for ax, path, caption in zip(axes.flat, paths, captions):
        ax.imshow(display_image(loader(path)), cmap="gray")
        ax.set_title(caption, fontsize=8, fontweight="normal", loc="left")
    figure.suptitle(title)
    return finish(figure, save_to)
