"""Training curves from history.csv."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .style import finish, new_figure, styled

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
