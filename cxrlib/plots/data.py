"""Data-exploration figures from the dataset index: class counts, images per patient, image sizes, label rate by group."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

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
    """Scatter of stored width vs height, one point per image, coloured by class."""
    figure, axes = new_figure(size=(5.0, 4.0))
    ax = axes[0, 0]
    for label, group in images.groupby("label"):
        ax.scatter(group["width"], group["height"], s=6, alpha=0.4, color=CLASS_COLORS[label], label=label)
    ax.set(title="Image sizes by class", xlabel="width (px)", ylabel="height (px)")
    ax.legend()
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
