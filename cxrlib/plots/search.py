"""Figures of a hyperparameter search (cxrlib.tune): its history, what each parameter mattered, quality against cost.

Each takes the trials table of cxrlib.tune.results (one row per trial) and draws every architecture alike. The
objective axis is logarithmic and stops at ``objective_limit``: a trial that diverged (a pruned trial's 4.15 beside
complete ones at 0.08–0.3) is drawn as a triangle on the top edge and its value written in the legend, so it neither
hides nor squashes the informative values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator, StrMethodFormatter

from cxrlib.backbones import title_of

from .style import finish, model_color, new_figure, styled

_COUNTED = ("COMPLETE", "PRUNED")
_MARKERS = {"COMPLETE": "o", "PRUNED": "x"}
_OUTLIER_MARKER = "^"
_FENCE_IQRS = 1.5  # Tukey's fence: values above Q3 + 1.5 IQR (of the log objective) are outliers
_AXIS_MARGIN = 1.15  # the lowest value sits this factor above the axis' bottom
_TICK_STEPS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)  # objective ticks per decade: 0.1, 0.15, 0.2, 0.3, 0.5, 0.7


def _search_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The counted search trials (reruns and trials that did not happen left out)."""
    return trials[(trials["kind"] == "search") & trials["state"].isin(_COUNTED)]


def objective_limit(trials: pd.DataFrame) -> float:
    """The top of the objective axis: Tukey's upper fence of the counted search trials' log objective, or their
    largest value when none lies beyond it."""
    values = _search_trials(trials)["value"].dropna()
    logs = np.log10(values)
    low, high = logs.quantile([0.25, 0.75])
    return float(min(values.max(), 10 ** (high + _FENCE_IQRS * (high - low))))


def outliers(trials: pd.DataFrame) -> pd.DataFrame:
    """The counted search trials above ``objective_limit``: drawn on the axis' top edge, their values written."""
    searched = _search_trials(trials)
    return searched[searched["value"] > objective_limit(trials)]


def _objective_axis(ax, trials: pd.DataFrame, objective: str) -> float:
    """A log objective axis from just below the best trial to ``objective_limit``, ticks as plain numbers; returns
    its top."""
    top = objective_limit(trials)
    ax.set_yscale("log")
    ax.set_ylim(_search_trials(trials)["value"].min() / _AXIS_MARGIN, top)
    ax.yaxis.set_major_locator(LogLocator(subs=_TICK_STEPS))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel(f"validation {objective.replace('_', ' ')} (log scale)")
    return top


def outlier_label(rows: pd.DataFrame, top: float, prefix: str = "") -> str:
    """The legend entry of the trials above ``top``: ``above 0.74: 4.15 (trial 1), 1.42 (trial 2)``."""
    beyond = rows[rows["value"] > top].sort_values("value", ascending=False)
    values = ", ".join(f"{row['value']:.2f} (trial {int(row['number'])})" for row in beyond.to_dict("records"))
    return f"{prefix}above {top:.2f}: {values}"


def _scatter_counted(ax, rows: pd.DataFrame, x: str, top: float, color, label, prefix: str = "") -> None:
    """Complete (dots) and pruned (crosses) trials at or below ``top``; the rest as triangles on the top edge, their
    values in the legend. ``label`` names a state's markers in the legend, ``prefix`` starts the triangles' entry."""
    for state, marker in _MARKERS.items():
        chosen = rows[(rows["state"] == state) & (rows["value"] <= top)]
        ax.scatter(chosen[x], chosen["value"], marker=marker, color=color, clip_on=False, label=label(state))
    beyond = rows[rows["value"] > top]
    if len(beyond):
        ax.scatter(beyond[x], np.full(len(beyond), top), marker=_OUTLIER_MARKER, color=color, clip_on=False, zorder=3,
                   label=outlier_label(rows, top, prefix))


@styled
def plot_search_history(trials: pd.DataFrame, objective: str, save_to=None):
    """Per architecture: each counted trial's validation objective by trial number, and the best so far."""
    searched = _search_trials(trials)
    archs = list(dict.fromkeys(searched["arch"]))
    figure, axes = new_figure(1, max(1, len(archs)), size=(4.6, 3.8), sharey=True)
    for ax, arch in zip(axes[0], archs):
        rows = searched[searched["arch"] == arch].sort_values("number")
        top = _objective_axis(ax, trials, objective)
        _scatter_counted(ax, rows, "number", top, model_color(arch),
                         lambda state: f"{state.lower()} ({(rows['state'] == state).sum()})")
        complete = rows[rows["state"] == "COMPLETE"]
        ax.step(complete["number"], complete["value"].cummin(), where="post", color="black", lw=1, label="best so far")
        ax.set(title=title_of(arch), xlabel="trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)
    return finish(figure, save_to)


@styled
def plot_quality_vs_cost(trials: pd.DataFrame, objective: str, save_to=None):
    """Every counted trial's validation objective against the CPU hours it cost (pruned trials stop early)."""
    searched = _search_trials(trials).assign(hours=lambda frame: frame["cpu_seconds"] / 3600)
    figure, axes = new_figure(size=(7.4, 4.2))
    ax = axes[0][0]
    top = _objective_axis(ax, trials, objective)
    for arch in dict.fromkeys(searched["arch"]):
        _scatter_counted(ax, searched[searched["arch"] == arch], "hours", top, model_color(arch),
                         lambda state, arch=arch: f"{title_of(arch)}, {state.lower()}", f"{title_of(arch)}, ")
    ax.set(xlabel="CPU hours of the trial")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    return finish(figure, save_to)


@styled
def plot_importances(importances: dict[str, dict[str, float]], complete_trials: dict[str, int], save_to=None):
    """Per architecture: how much of the objective's variation each parameter explains (fANOVA over its
    ``complete_trials[arch]`` complete trials; indicative only when they are few)."""
    archs = list(importances)
    figure, axes = new_figure(1, max(1, len(archs)), size=(4.6, 3.4), sharex=True)
    for ax, arch in zip(axes[0], archs):
        shares = pd.Series(importances[arch]).sort_values()
        ax.barh(shares.index, shares.to_numpy(), color=model_color(arch))
        ax.set(title=f"{title_of(arch)}: {complete_trials[arch]} complete trials",
               xlabel="share of the objective's variance")
    parameters = len(next(iter(importances.values()), {}))
    figure.suptitle(f"Indicative only: {parameters} parameters, few complete trials", fontsize=10)
    return finish(figure, save_to)
