"""Evaluation figures of runs: confusion matrices, ROC, precision-recall, calibration (test, and the score's Platt
calibration on validation), metrics vs threshold."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

from cxrlib import evaluate
from cxrlib.calibration import calibrated_probability
from cxrlib.contract import CLASS_NAMES

from .style import PALETTE, finish, label, model_color, new_figure, styled


def _arrays(run, subset: str = "test") -> tuple[np.ndarray, np.ndarray]:
    frame = run.test if subset == "test" else run.val
    return frame["target"].to_numpy(), frame["prob"].to_numpy()


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
                        xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
                        vmin=0, vmax=1 if kind == "row-normalised" else None)
            ax.set(title=f"{label(run)}: {kind}\nthreshold {run.threshold:.3f}", xlabel="predicted", ylabel="true")
    return finish(figure, save_to)


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
        ax.plot(fpr, tpr, color=color, label=f"{label(run)} (AUC {roc_auc_score(y_true, probs):.3f})")
        point = _operating_point(run)
        ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=color, ms=8, mec="black",
                label=f"{label(run)} @ {run.threshold:.2f}")
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
                label=f"{label(run)} (AP {average_precision_score(y_true, probs):.3f})")
        point = _operating_point(run)
        ax.plot(point["sensitivity"], point["ppv"], "o", color=color, ms=8, mec="black",
                label=f"{label(run)} @ {run.threshold:.2f}")
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
        curve_ax.plot(predicted, observed, marker="o", color=color, label=f"{label(run)} (ECE {ece:.3f})")
        hist_ax.hist(probs, bins=bins, histtype="step", lw=1.5, color=color)
    curve_ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    curve_ax.set(title="Calibration (test)", ylabel="observed PNEUMONIA rate", ylim=(-0.01, 1.01))
    curve_ax.legend(loc="upper left")
    hist_ax.set(xlabel="predicted probability of PNEUMONIA", ylabel="images", xlim=(0, 1))
    return finish(figure, save_to)


@styled
def plot_score_calibration(run, n_bins: int = evaluate.ECE_BINS, save_to: str | Path | None = None) -> Figure:
    """Validation reliability diagram of the model's score and of its Platt-calibrated probability, histogram below.

    The calibration (run.json `calibration`) was fitted on these validation images; its probability holds at their
    PNEUMONIA share, shown as the dotted level.
    """
    calibration = run.info.get("calibration")
    if calibration is None:
        raise ValueError(f"{label(run)} has no calibration in its run.json (trained before cxrlib fitted one); add it "
                         "with: python -m cxrlib.ood fit RUN_DIR")
    y_true, scores = _arrays(run, "val")
    figure = Figure(figsize=(5.0, 5.6), layout="constrained")
    curve_ax, hist_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = np.linspace(0, 1, n_bins + 1)
    shown = {"score (before)": scores, "calibrated probability (after)": calibrated_probability(scores, calibration)}
    for index, (name, probs) in enumerate(shown.items()):
        observed, predicted = calibration_curve(y_true, probs, n_bins=n_bins, strategy="uniform")
        ece = evaluate.expected_calibration_error(y_true, probs, n_bins)
        curve_ax.plot(predicted, observed, marker="o", color=PALETTE[index], label=f"{name} (ECE {ece:.3f})")
        hist_ax.hist(probs, bins=bins, histtype="step", lw=1.5, color=PALETTE[index])
    curve_ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    curve_ax.axhline(calibration["prevalence"], ls="--", lw=1, color="grey",
                     label=f"validation prevalence ({calibration['prevalence']:.2f})")
    curve_ax.set(title=f"{label(run)}: calibration (validation)", ylabel="observed PNEUMONIA rate", ylim=(-0.01, 1.01))
    curve_ax.legend(loc="upper left")
    hist_ax.set(xlabel="score or calibrated probability of PNEUMONIA", ylabel="images", xlim=(0, 1))
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
    ax.set(title=f"{label(run)}: metrics vs threshold ({subset})", xlabel="threshold", ylabel="value",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower center", ncols=2)
    return finish(figure, save_to)
