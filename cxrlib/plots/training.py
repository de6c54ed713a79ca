"""Training curves from history.csv."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cxrlib.backbones import title_of

from .style import PALETTE, finish, label, new_figure, styled

HISTORY_METRICS = ("loss", "accuracy", "auc")


@styled
def plot_history(history: pd.DataFrame, best_epoch: int | None = None, title: str = "",
                 save_to: str | Path | None = None) -> Figure:
    """Loss, accuracy and AUC per epoch, train vs validation, with the best epoch (max val AUC) marked.

    ``best_epoch`` and history.csv's ``epoch`` count from 0 (as Keras callbacks do); the axes count from 1, as
    Keras' own "Epoch 1/8" lines do.
    """
    metrics = [metric for metric in HISTORY_METRICS if metric in history and f"val_{metric}" in history]
    if not metrics:
        raise ValueError(f"history has none of the columns {HISTORY_METRICS} with val_ counterparts; "
                         f"got {list(history.columns)} (expected history.csv from cxrlib.train)")
    if best_epoch is None and "val_auc" in history:
        best_epoch = int(history.loc[history["val_auc"].idxmax(), "epoch"])
    figure, axes = new_figure(1, len(metrics), size=(4.0, 3.2))
    for ax, metric in zip(axes[0], metrics):
        ax.plot(history["epoch"] + 1, history[metric], marker="o", ms=3, label="train")
        ax.plot(history["epoch"] + 1, history[f"val_{metric}"], marker="o", ms=3, label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch + 1})")
        ax.set(title=metric.upper() if metric == "auc" else metric.capitalize(), xlabel="epoch", ylabel=metric)
        ax.legend()
    if title:
        figure.suptitle(title)
    return finish(figure, save_to)


LEARNING_CURVES = {"loss": "loss", "auc": "ROC-AUC"}  # history.csv column -> what the axis shows
HISTORY_SUBSETS = {"": "training", "val_": "validation"}  # history.csv column prefix -> the images it was measured on


def _check_histories(runs: Sequence) -> None:
    """A ValueError naming the runs whose history lacks a learning-curve column."""
    needed = {f"{prefix}{metric}" for prefix in HISTORY_SUBSETS for metric in LEARNING_CURVES}
    lacking = [label(run) for run in runs if run.history is None or not needed <= set(run.history)]
    if lacking or not runs:
        raise ValueError(f"plot_learning_curves needs runs whose history.csv holds {sorted(needed)}; runs without: "
                         f"{lacking or 'no runs given'} (train them with cxrlib.train, which records them)")


@styled
def plot_learning_curves(runs: Sequence, save_to: str | Path | None = None) -> Figure:
    """Per model (columns) the loss and ROC-AUC per epoch (rows), training and validation, one thin line per
    replicate and their mean in bold; each replicate's best epoch (highest validation ROC-AUC) marked."""
    _check_histories(runs)
    models = list(dict.fromkeys(run.name for run in runs))
    figure, axes = new_figure(len(LEARNING_CURVES), len(models), size=(4.2, 3.0), sharex="col")
    for column, model in enumerate(models):
        histories = [run.history.set_index("epoch") for run in runs if run.name == model]
        for row, (metric, name) in enumerate(LEARNING_CURVES.items()):
            ax = axes[row, column]
            for color, (prefix, subset) in zip(PALETTE, HISTORY_SUBSETS.items()):
                curves = pd.concat([history[f"{prefix}{metric}"] for history in histories], axis=1)
                ax.plot(curves.index + 1, curves, color=color, alpha=0.3, linewidth=0.8)
                ax.plot(curves.index + 1, curves.mean(axis=1), color=color, linewidth=2.2,
                        label=f"{subset} (mean of {curves.shape[1]})")
            if metric == "auc":
                best = [history["val_auc"].idxmax() for history in histories]
                ax.scatter(np.add(best, 1), [history.loc[epoch, "val_auc"] for history, epoch in zip(histories, best)],
                           marker="v", color="black", s=18, zorder=3, label="a replicate's best epoch")
            ax.set(title=f"{title_of(model)}: {name}", ylabel=name)
            ax.legend(fontsize=8)
        axes[-1, column].set(xlabel="epoch")
    return finish(figure, save_to)
