"""Every figure of the study, in one style. Each function returns a matplotlib Figure and can save a PNG.

Figures are created with ``matplotlib.figure.Figure`` (not pyplot), so nothing leaks or shows twice in
notebooks: a figure displays when it is the cell's last expression (or via ``display(fig)``).
Runs are ``cxrlib.compare.Run`` objects (anything with ``name``, ``arch``, ``threshold``, ``val``, ``test``).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image, ImageOps
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

from cxrlib import evaluate
from cxrlib.data.summary import images_per_patient, sample_per_class

SAVE_DPI = 110
STYLE = {"figure.dpi": 90, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.titleweight": "bold"}
PALETTE = sns.color_palette("colorblind")
KNOWN_MODELS = ("resnet50", "densenet121", "ensemble")
RIGHT, WRONG = "#1a7f37", "#cf222e"
HISTORY_METRICS = ("loss", "accuracy", "auc")


def styled(plot: Callable) -> Callable:
    """Draw inside the study's seaborn/matplotlib style without changing the caller's global settings."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)
    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (4.5, 4.0), **kwargs):
    """A constrained-layout Figure with a grid of axes; ``size`` is per panel (width, height) in inches."""
    figure = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, **kwargs)
    return figure, axes


def finish(figure: Figure, save_to: str | Path | None = None) -> Figure:
    """Save ``figure`` as PNG when ``save_to`` is given (creating folders); return it."""
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_to, dpi=SAVE_DPI, bbox_inches="tight")
    return figure


def model_color(run_or_name, index: int = 0):
    """A fixed colour per architecture (resnet50, densenet121, ensemble) so every figure agrees."""
    name = getattr(run_or_name, "arch", run_or_name)
    if name in KNOWN_MODELS:
        return PALETTE[KNOWN_MODELS.index(name)]
    return PALETTE[(len(KNOWN_MODELS) + index) % len(PALETTE)]


def _arrays(run, subset: str = "test") -> tuple[np.ndarray, np.ndarray]:
    frame = run.test if subset == "test" else run.val
    return frame["target"].to_numpy(), frame["prob"].to_numpy()


# ---------------------------------------------------------------- training history

@styled
def plot_history(history: pd.DataFrame, best_epoch: int | None = None, title: str = "",
                 save_to: str | Path | None = None) -> Figure:
    """Loss, accuracy and AUC per epoch, train vs validation, with the best epoch (max val AUC) marked."""
    metrics = [metric for metric in HISTORY_METRICS if metric in history and f"val_{metric}" in history]
    if not metrics:
        raise ValueError(f"history has none of the columns {HISTORY_METRICS} with val_ counterparts; "
                         f"got {list(history.columns)} (expected history.csv from cxrlib.train)")
    if best_epoch is None and "val_auc" in history:
        best_epoch = int(history.loc[history["val_auc"].idxmax(), "epoch"])
    figure, axes = new_figure(1, len(metrics), size=(4.0, 3.2))
    for ax, metric in zip(axes[0], metrics):
        ax.plot(history["epoch"], history[metric], marker="o", ms=3, label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", ms=3, label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.set(title=metric.upper() if metric == "auc" else metric.capitalize(), xlabel="epoch", ylabel=metric)
        ax.legend()
    if title:
        figure.suptitle(title)
    return finish(figure, save_to)


# ---------------------------------------------------------------- confusion matrices

@styled
def plot_confusion_matrices(runs: Sequence, save_to: str | Path | None = None) -> Figure:
    """Per run: test confusion matrix at the chosen threshold, as counts and row-normalised (recall)."""
    figure, axes = new_figure(len(runs), 2, size=(3.6, 3.2))
    for row, run in zip(axes, runs):
        y_true, probs = _arrays(run)
        counts = confusion_matrix(y_true, evaluate.predict_labels(probs, run.threshold), labels=[0, 1])
        normalised = counts / counts.sum(axis=1, keepdims=True)
        for ax, values, fmt, kind in ((row[0], counts, "d", "counts"), (row[1], normalised, ".2f", "row-normalised")):
            sns.heatmap(values, annot=True, fmt=fmt, cmap="Blues", cbar=False, square=True, ax=ax,
                        xticklabels=evaluate.CLASS_NAMES, yticklabels=evaluate.CLASS_NAMES,
                        vmin=0, vmax=1 if kind == "row-normalised" else None)
            ax.set(title=f"{run.name}: {kind}\nthreshold {run.threshold:.3f}", xlabel="predicted", ylabel="true")
    return finish(figure, save_to)


# ---------------------------------------------------------------- ROC / PR / calibration

def _operating_point(run) -> dict:
    y_true, probs = _arrays(run)
    return evaluate.compute_metrics(y_true, probs, run.threshold)


@styled
def plot_roc_curves(runs: Sequence, save_to: str | Path | None = None) -> Figure:
    """Test ROC curves of several models on one axes, AUC in the legend, chosen thresholds marked."""
    figure, axes = new_figure(size=(5.0, 4.6))
    ax = axes[0, 0]
    for index, run in enumerate(runs):
        y_true, probs = _arrays(run)
        fpr, tpr, _ = roc_curve(y_true, probs)
        color = model_color(run, index)
        ax.plot(fpr, tpr, color=color, label=f"{run.name} (AUC {roc_auc_score(y_true, probs):.3f})")
        point = _operating_point(run)
        ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=color, ms=8, mec="black",
                label=f"{run.name} @ {run.threshold:.2f}")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    ax.set(title="ROC (test)", xlabel="1 - specificity (false positive rate)", ylabel="sensitivity",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax.legend(loc="lower right")
    return finish(figure, save_to)


@styled
def plot_pr_curves(runs: Sequence, save_to: str | Path | None = None) -> Figure:
    """Test precision-recall curves (PNEUMONIA positive), average precision in the legend, thresholds marked."""
    figure, axes = new_figure(size=(5.0, 4.6))
    ax = axes[0, 0]
    for index, run in enumerate(runs):
        y_true, probs = _arrays(run)
        precision, recall, _ = precision_recall_curve(y_true, probs)
        color = model_color(run, index)
        ax.step(recall, precision, where="post", color=color,
                label=f"{run.name} (AP {average_precision_score(y_true, probs):.3f})")
        point = _operating_point(run)
        ax.plot(point["sensitivity"], point["ppv"], "o", color=color, ms=8, mec="black",
                label=f"{run.name} @ {run.threshold:.2f}")
    prevalence = _arrays(runs[0])[0].mean()
    ax.axhline(prevalence, ls=":", color="grey", label=f"prevalence ({prevalence:.2f})")
    ax.set(title="Precision-recall (test)", xlabel="recall (sensitivity)", ylabel="precision (PPV)",
           xlim=(-0.01, 1.01), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    return finish(figure, save_to)


@styled
def plot_calibration(runs: Sequence, n_bins: int = evaluate.ECE_BINS, save_to: str | Path | None = None) -> Figure:
    """Reliability diagram (equal-width bins, ECE in the legend) above a histogram of test probabilities."""
    figure = Figure(figsize=(5.0, 5.6), layout="constrained")
    curve_ax, hist_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = np.linspace(0, 1, n_bins + 1)
    for index, run in enumerate(runs):
        y_true, probs = _arrays(run)
        observed, predicted = calibration_curve(y_true, probs, n_bins=n_bins, strategy="uniform")
        color = model_color(run, index)
        ece = evaluate.expected_calibration_error(y_true, probs, n_bins)
        curve_ax.plot(predicted, observed, marker="o", color=color, label=f"{run.name} (ECE {ece:.3f})")
        hist_ax.hist(probs, bins=bins, histtype="step", lw=1.5, color=color)
    curve_ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    curve_ax.set(title="Calibration (test)", ylabel="observed PNEUMONIA rate", ylim=(-0.01, 1.01))
    curve_ax.legend(loc="upper left")
    hist_ax.set(xlabel="predicted probability of PNEUMONIA", ylabel="images", xlim=(0, 1))
    return finish(figure, save_to)


@styled
def plot_threshold_metrics(run, subset: str = "val",
                           metrics: Sequence[str] = ("sensitivity", "specificity", "ppv", "f1_macro", "accuracy"),
                           save_to: str | Path | None = None) -> Figure:
    """Metrics vs decision threshold on one subset, with the validation-chosen threshold and 0.5 marked."""
    y_true, probs = _arrays(run, subset)
    curve = evaluate.metrics_vs_threshold(y_true, probs)
    figure, axes = new_figure(size=(6.0, 4.0))
    ax = axes[0, 0]
    for metric in metrics:
        ax.plot(curve["threshold"], curve[metric], label=metric)
    ax.axvline(run.threshold, color="black", ls="--", lw=1.2, label=f"chosen threshold ({run.threshold:.3f})")
    ax.axvline(0.5, color="grey", ls=":", lw=1, label="0.5")
    ax.set(title=f"{run.name}: metrics vs threshold ({subset})", xlabel="threshold", ylabel="value",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower center", ncols=2)
    return finish(figure, save_to)


# ---------------------------------------------------------------- image grids

def display_image(image) -> np.ndarray:
    """Pixels ready for imshow: [H, W] or [H, W, 3] in 0..1 (accepts 0..255 uint8 or float)."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image / 255.0 if image.max() > 1 else image, 0, 1)


def default_loader() -> Callable:
    """``cxrlib.data.load_image`` (imported lazily: it pulls in TensorFlow)."""
    from cxrlib.data import load_image
    return load_image


def _image_grid(rows: pd.DataFrame, threshold: float, title: str, image_size: int, loader: Callable | None,
                ncols: int, save_to) -> Figure:
    """Images with 'pred (prob) / true' titles, green when right and red when wrong."""
    loader = loader or default_loader()
    nrows = max(1, int(np.ceil(len(rows) / ncols)))
    figure, axes = new_figure(nrows, ncols, size=(2.4, 2.7))
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows.itertuples(index=False)):
        predicted = int(row.prob >= threshold)
        ax.imshow(display_image(loader(row.path, image_size)), cmap="gray")
        ax.set_title(f"pred {evaluate.CLASS_NAMES[predicted]} ({row.prob:.2f})\ntrue {row.label}",
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
    return _image_grid(sample, run.threshold, f"{run.name}: sample test predictions (threshold {run.threshold:.2f})",
                       image_size, loader, ncols, save_to)


@styled
def plot_confident_errors(run, n: int = 8, image_size: int = 224, loader: Callable | None = None,
                          ncols: int = 4, save_to: str | Path | None = None) -> Figure:
    """The test errors the model was most sure of (probability furthest from the chosen threshold)."""
    test = run.test
    errors = test[~test["correct"]]
    errors = errors.assign(confidence=(errors["prob"] - run.threshold).abs()).nlargest(n, "confidence")
    if errors.empty:
        raise ValueError(f"{run.name} makes no test errors at threshold {run.threshold:.3f}; nothing to show")
    return _image_grid(errors, run.threshold, f"{run.name}: most confident errors ({len(errors)} shown)",
                       image_size, loader, ncols, save_to)


# ---------------------------------------------------------------- data exploration

CLASS_COLORS = {"NORMAL": PALETTE[0], "PNEUMONIA": PALETTE[3]}


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
    loader = loader or default_loader()
    sample = sample_per_class(images, n_per_class, seed)
    figure, axes = new_figure(size=(6.0, 3.5))
    ax = axes[0, 0]
    for label, group in sample.groupby("label"):
        values = np.concatenate([loader(path, image_size)[..., 0].ravel() for path in group["path"]])
        ax.hist(values, bins=64, range=(0, 255), density=True, histtype="step", lw=1.5, color=CLASS_COLORS[label],
                label=f"{label} (mean {values.mean():.0f})")
    per_class = len(sample) // sample["label"].nunique()
    ax.set(title=f"Pixel intensities: {per_class} images per class at {image_size}x{image_size}",
           xlabel="pixel value", ylabel="density", xlim=(0, 255))
    ax.legend()
    return finish(figure, save_to)
