"""Reliability across replicates: per model the mean observed PNEUMONIA share in each output bin, with the band
from the lowest to the highest replicate, one panel per output (raw score, calibrated probability)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cxrlib.backbones import title_of

from .style import finish, model_color, styled


@styled
def plot_reliability_band(summary: pd.DataFrame, outputs: Mapping[str, tuple[str, str]], n_bins: int = 10,
                          save_to: str | Path | None = None) -> Figure:
    """One column per output in ``outputs`` (its panel title and x-axis label): the reliability curve of each model
    across replicates (line: mean observed share per bin; band: min–max over replicates) above the images per bin.

    ``summary``: ``compare.summarise_reliability`` rows (model, output, bin, predicted, observed, observed_min,
    observed_max, replicates, images).
    """
    missing = sorted(set(outputs) - set(summary["output"]))
    if missing:
        raise ValueError(f"plot_reliability_band: the summary holds no rows of outputs {missing}; pass "
                         "compare.summarise_reliability of runs with those outputs")
    figure = Figure(figsize=(5.0 * len(outputs), 5.8), layout="constrained")
    axes = figure.subplots(2, len(outputs), squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    width = 1 / n_bins
    models = list(dict.fromkeys(summary["model"]))
    for column, (output, (title, axis_label)) in enumerate(outputs.items()):
        curve_ax, count_ax = axes[:, column]
        for index, model in enumerate(models):
            rows = summary[(summary["model"] == model) & (summary["output"] == output)].sort_values("predicted")
            color = model_color(model, index)
            replicates = int(rows["replicates"].max())
            curve_ax.fill_between(rows["predicted"], rows["observed_min"], rows["observed_max"], color=color,
                                  alpha=0.2, linewidth=0)
            curve_ax.plot(rows["predicted"], rows["observed"], marker="o", ms=4, color=color,
                          label=f"{title_of(model)} ({replicates} replicates)")
            offset = (index - (len(models) - 1) / 2) * width / (len(models) + 1)
            count_ax.bar((rows["bin"] + 0.5) * width + offset, rows["images"] / replicates,
                         width=width / (len(models) + 1), color=color)
        curve_ax.plot([0, 1], [0, 1], ls=":", color="grey", label="output = observed share")
        curve_ax.set(title=title, ylabel="observed PNEUMONIA share (test)",
                     xlim=(0, 1), ylim=(-0.01, 1.01), xticks=np.linspace(0, 1, 6))
        curve_ax.legend(loc="upper left")
        count_ax.set(xlabel=axis_label, ylabel="images per replicate", yscale="log")
    return finish(figure, save_to)
