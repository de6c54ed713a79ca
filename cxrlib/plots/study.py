"""A study's replicates at a glance: each replicate's paired values of two models, and the paired differences
with their mean and interval (the figure on the index page and in notebook 04)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cxrlib.backbones import title_of

from .style import PALETTE, finish, model_color, new_figure, styled


def seed_labels(values: pd.Series, span: float, closeness: float = 0.06) -> list[tuple[float, str]]:
    """Where to write each replicate's seed beside its value: seeds whose values lie within ``closeness`` of the
    axis's data ``span`` of each other share one label ("3, 5") at their mean, so that no two labels overlap."""
    ordered = values.sort_values()
    gap = closeness * (span or 1.0)
    groups: list[list] = []
    for seed, value in ordered.items():
        if groups and value - groups[-1][-1][1] < gap:
            groups[-1].append((seed, value))
        else:
            groups.append([(seed, value)])
    return [(float(np.mean([value for _, value in group])), ", ".join(str(seed) for seed, _ in sorted(group)))
            for group in groups]


@styled
def plot_seed_pairs(per_seed: pd.DataFrame, differences: pd.DataFrame, reference: str, compared: str,
                    metrics: Sequence[str], metric_names: Mapping[str, str] | None = None, level: float = 0.95,
                    save_to: str | Path | None = None) -> Figure:
    """Per metric: each seed's value of ``reference`` and ``compared`` joined by a line (left), and the per-seed
    differences ``compared − reference`` with their mean and interval (right).

    ``per_seed``: ``study.seed_metrics`` rows at one policy (model, seed, metric columns); ``differences``:
    ``study.summarise_differences`` rows (metric, mean_difference, ci_low, ci_high) for ``compared``.
    """
    names = dict(metric_names or {})
    figure, axes = new_figure(len(metrics), 2, size=(3.6, 3.0), width_ratios=(1.3, 1))
    values = per_seed.pivot(index="seed", columns="model", values=list(metrics))
    for (pairs_ax, diff_ax), metric in zip(axes, metrics):
        name = names.get(metric, metric)
        pair = values[metric][[reference, compared]]
        for seed, (left, right) in pair.iterrows():
            pairs_ax.plot([0, 1], [left, right], color="0.6", linewidth=1, zorder=1)
        for y, label in seed_labels(pair[compared], pair.max().max() - pair.min().min()):
            pairs_ax.annotate(label, (1, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8,
                              color="0.4")
        for x, model in enumerate((reference, compared)):
            pairs_ax.scatter(np.full(len(pair), x), pair[model], color=model_color(model), zorder=2, s=28)
        pairs_ax.set(xticks=[0, 1], xticklabels=[title_of(reference), title_of(compared)], xlim=(-0.4, 1.4),
                     ylabel=f"test {name}", title=f"{name}: each replicate")
        summary = differences[differences["metric"] == metric].iloc[0]
        per_seed_difference = pair[compared] - pair[reference]
        diff_ax.axhline(0, color="0.3", linewidth=1, linestyle=":")
        diff_ax.scatter(np.zeros(len(per_seed_difference)), per_seed_difference, color=PALETTE[2], s=28, zorder=2)
        diff_ax.errorbar([0.5], [summary["mean_difference"]],
                         yerr=[[summary["mean_difference"] - summary["ci_low"]],
                               [summary["ci_high"] - summary["mean_difference"]]],
                         fmt="o", color="black", capsize=5)
        diff_ax.set(xticks=[0, 0.5], xticklabels=["replicates", f"mean, {level:.0%}\nt-interval"], xlim=(-0.4, 0.9),
                    title=f"{title_of(compared)} − {title_of(reference)}", ylabel=f"difference in {name}")
    return finish(figure, save_to)


@styled
def plot_factorial(per_cell: pd.DataFrame, values: pd.DataFrame, summary: pd.DataFrame,
                   contrast_titles: Mapping[str, str],
                   metrics: Sequence[str], metric_names: Mapping[str, str] | None = None,
                   save_to: str | Path | None = None) -> Figure:
    """Per metric: each architecture's value at each recipe, one faint line per replicate and the mean in bold
    (left; parallel lines mean no interaction), and each contrast's per-replicate values with its mean, its 95%
    interval (thick) and its Bonferroni interval (thin) (right).

    ``per_cell``: ``factorial.cell_metrics`` rows; ``values``: ``factorial.contrast_values`` rows (one per contrast,
    metric and replicate); ``summary``: ``factorial.summarise_contrasts`` rows.
    """
    names = dict(metric_names or {})
    figure, axes = new_figure(len(metrics), 2, size=(3.9, 3.2), width_ratios=(1, 1.5))
    recipes = list(dict.fromkeys(per_cell["recipe"]))
    for (cells_ax, contrast_ax), metric in zip(axes, metrics):
        name = names.get(metric, metric)
        for arch, rows in per_cell.groupby("arch", sort=False):
            wide = rows.pivot(index="seed", columns="recipe", values=metric)[recipes]
            for _, replicate in wide.iterrows():
                cells_ax.plot(range(len(recipes)), replicate, color=model_color(arch), alpha=0.25, linewidth=1)
            cells_ax.plot(range(len(recipes)), wide.mean(), color=model_color(arch), linewidth=2.5, marker="o",
                          label=title_of(arch))
        cells_ax.set(xticks=range(len(recipes)), xticklabels=[f"recipe {recipe}" for recipe in recipes],
                     xlim=(-0.3, len(recipes) - 0.7), ylabel=f"test {name}", title=f"{name}: each cell")
        cells_ax.legend(fontsize=8)
        rows = summary[summary["metric"] == metric].reset_index(drop=True)
        contrast_ax.axhline(0, color="0.3", linewidth=1, linestyle=":")
        for x, row in rows.iterrows():
            replicates = values[(values["contrast"] == row["contrast"]) & (values["metric"] == metric)]["difference"]
            contrast_ax.scatter(np.full(len(replicates), x - 0.18), replicates, color=PALETTE[2], s=16, zorder=2)
            contrast_ax.errorbar([x], [row["mean"]], yerr=[[row["mean"] - row["adjusted_low"]],
                                                           [row["adjusted_high"] - row["mean"]]],
                                 fmt="none", color="0.5", capsize=3, linewidth=1)
            contrast_ax.errorbar([x], [row["mean"]], yerr=[[row["mean"] - row["ci_low"]],
                                                           [row["ci_high"] - row["mean"]]],
                                 fmt="o", color="black", capsize=0, linewidth=3)
        contrast_ax.set(xticks=range(len(rows)), xlim=(-0.6, len(rows) - 0.4), ylabel=f"difference in {name}",
                        title="contrasts: 95% (thick), Bonferroni (thin) intervals")
        contrast_ax.set_xticklabels([contrast_titles.get(c, c) for c in rows["contrast"]], rotation=30, ha="right",
                                    fontsize=8)
    return finish(figure, save_to)
