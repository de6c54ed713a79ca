"""Each replicate's share of a subgroup classified correctly, per model: a dot per replicate and the mean."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cxrlib.backbones import title_of

from .style import finish, model_color, new_figure, styled


@styled
def plot_subgroup_shares(rows: pd.DataFrame, subgroup_labels: Mapping[str, str],
                         save_to: str | Path | None = None) -> Figure:
    """Per subgroup in ``subgroup_labels`` (its tick label), each model's replicates as dots and their mean as a bar.

    ``rows``: ``compare.subgroup_rows`` of one group (model, seed, subgroup, images, share_correct).
    """
    if rows.empty:
        raise ValueError("plot_subgroup_shares got no rows; pass compare.subgroup_rows of the runs")
    models = list(dict.fromkeys(rows["model"]))
    figure, axes = new_figure(size=(2.0 + 1.6 * len(subgroup_labels), 3.8))
    ax = axes[0, 0]
    spacing = 0.8 / len(models)
    for index, model in enumerate(models):
        color = model_color(model, index)
        for position, subgroup in enumerate(subgroup_labels):
            shares = rows.loc[(rows["model"] == model) & (rows["subgroup"] == subgroup), "share_correct"]
            x = position + (index - (len(models) - 1) / 2) * spacing
            ax.scatter(np.full(len(shares), x), shares, color=color, s=22, alpha=0.7, zorder=2)
            ax.hlines(shares.mean(), x - spacing / 2.5, x + spacing / 2.5, color=color, linewidth=2.5, zorder=3,
                      label=title_of(model) if position == 0 else None)
    ax.set(xticks=range(len(subgroup_labels)), xticklabels=list(subgroup_labels.values()),
           ylabel="share classified correctly (test)",
           title="Each replicate (dots) and the mean (bar), at the threshold")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return finish(figure, save_to)
