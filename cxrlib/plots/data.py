"""Data-exploration figures from the dataset index: class counts, images per patient, image sizes, label rate by
group, where images are black."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from cxrlib.contract import CLASS_NAMES
from cxrlib.data.geometry import frequent_sizes, size_name
from cxrlib.data.summary import images_per_patient

from .style import CLASS_COLORS, PALETTE, finish, new_figure, styled


@styled
def plot_class_counts(counts: pd.DataFrame, save_to: str | Path | None = None) -> Figure:
    """Bars of images per split (or subset) and class, from ``cxrlib.data.subset_counts``, counts on the bars."""
    group = "subset" if "subset" in counts else "split"
    figure, axes = new_figure(size=(6.0, 3.5))
    ax = axes[0, 0]
    sns.barplot(counts, x=group, y="images", hue="label", palette=CLASS_COLORS, ax=ax)
    for bars in ax.containers:
        ax.bar_label(bars, fontsize=8)
    ax.set(title=f"Images per {group} and class", xlabel=group, ylabel="images")
    return finish(figure, save_to)


@styled
def plot_images_per_patient(images: pd.DataFrame, split: str = "train", save_to: str | Path | None = None) -> Figure:
    """Histogram (log scale) of how many images each patient of one Kaggle split has, per class."""
    per_patient = images_per_patient(images)
    per_patient = per_patient[per_patient["split"] == split]
    bins = np.arange(0.5, per_patient["images"].max() + 1.5)
    figure, axes = new_figure(size=(6.0, 3.5))
    ax = axes[0, 0]
    for label, group in per_patient.groupby("label"):
        ax.hist(group["images"], bins=bins, alpha=0.7, log=True, color=CLASS_COLORS[label], label=label)
    ax.set(title=f"Kaggle {split} folder: images per patient", xlabel="images of one patient", ylabel="patients")
    ax.legend()
    return finish(figure, save_to)


@styled
def plot_image_sizes(images: pd.DataFrame, save_to: str | Path | None = None) -> Figure:
    """One panel per class: a dot per distinct stored width x height, coloured by its number of images (log scale,
    one scale for both panels); the frequent sizes (``geometry.frequent_sizes``) labelled with their count."""
    counts = images.groupby(["label", "width", "height"]).size().rename("images").reset_index()
    labels = [label for label in CLASS_NAMES if label in set(counts["label"])]
    norm = LogNorm(vmin=1, vmax=max(2, int(counts["images"].max())))
    figure, axes = new_figure(1, len(labels), size=(4.6, 3.8), sharex=True, sharey=True)
    frequent = frequent_sizes(images).index
    for ax, label in zip(axes[0], labels):
        part = counts[counts["label"] == label].sort_values("images")  # the largest counts drawn on top
        dots = ax.scatter(part["width"], part["height"], c=part["images"], norm=norm, cmap="viridis", s=14,
                          edgecolors="none")
        for k, (width, height) in enumerate(frequent):  # labels below right, larger sizes higher: no lines cross
            shown = part[(part["width"] == width) & (part["height"] == height)]["images"]
            if len(shown):
                ax.annotate(f"{size_name(width, height)}: {int(shown.iloc[0]):,}", (width, height), fontsize=9,
                            xytext=(40, -28 - 16 * (len(frequent) - 1 - k)), textcoords="offset points",
                            va="center", ha="left", arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.8})
        ax.set(title=f"{label} ({part['images'].sum():,} images)", xlabel="width (px)")
    axes[0, 0].set_ylabel("height (px)")
    figure.colorbar(dots, ax=axes[0, -1], label="images at this size (log scale)")
    figure.suptitle("Stored image sizes by class")
    return finish(figure, save_to)


@styled
def plot_label_rate_by_group(rates: pd.DataFrame, save_to: str | Path | None = None) -> Figure:
    """Bars of the NORMAL share per geometry group and split (``cxrlib.data.label_rate_by_group``), n on the bars."""
    figure, axes = new_figure(size=(6.5, 3.5))
    ax = axes[0, 0]
    rates = rates.assign(group=rates["group"].astype(str), split=rates["split"].astype(str))
    groups, splits = list(dict.fromkeys(rates["group"])), list(dict.fromkeys(rates["split"]))
    split_colors = {"train": PALETTE[2], "val": PALETTE[7], "test": PALETTE[4]}
    sns.barplot(rates, x="group", y="NORMAL share", hue="split", order=groups, hue_order=splits,
                palette={split: split_colors[split] for split in splits}, ax=ax)
    for bars, split in zip(ax.containers, splits):  # one container per split, bars in ``groups`` order
        part = rates[rates["split"] == split].set_index("group").reindex(groups).dropna(subset=["images"])
        ax.bar_label(bars, labels=[f"n={int(n):,}" for n in part["images"]], fontsize=8)
    ax.set(title="Share of NORMAL images by stored size", xlabel="geometry group", ylabel="NORMAL share", ylim=(0, 1))
    return finish(figure, save_to)


@styled
def plot_black_pixel_maps(maps: dict[str, np.ndarray], save_to: str | Path | None = None) -> Figure:
    """One panel per class: where images are exactly black (``cxrlib.data.black_pixel_maps``), 0..1 of images."""
    labels = [label for label in CLASS_NAMES if label in maps]
    figure, axes = new_figure(1, len(labels), size=(3.2, 3.2))
    for ax, label in zip(axes[0], labels):
        shown = ax.imshow(maps[label], vmin=0, vmax=1, cmap="magma_r")
        ax.set(title=label, xticks=[], yticks=[])
    figure.colorbar(shown, ax=axes[0, -1], label="share of images black here")
    figure.suptitle("Where pixels are exactly 0 (each image stretched to a square)")
    return finish(figure, save_to)
