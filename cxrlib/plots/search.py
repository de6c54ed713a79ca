"""Figures of a hyperparameter search (cxrlib.tune): its history, what each parameter mattered, quality against cost.

Each takes the trials table of cxrlib.tune.results (one row per trial) and draws every architecture alike.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.ticker import MaxNLocator

from cxrlib.backbones import title_of

from .style import finish, model_color, new_figure, styled

COUNTED = ("COMPLETE", "PRUNED")
MARKERS = {"COMPLETE": "o", "PRUNED": "x"}


def _search_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The counted search trials (reruns and trials that did not happen left out)."""
    return trials[(trials["kind"] == "search") & trials["state"].isin(COUNTED)]


@styled
def plot_search_history(trials: pd.DataFrame, objective: str, save_to=None):
    """Per architecture: each counted trial's validation objective by trial number, and the best so far."""
    searched = _search_trials(trials)
    archs = list(dict.fromkeys(searched["arch"]))
    figure, axes = new_figure(1, max(1, len(archs)), size=(4.6, 3.6), sharey=True)
    for ax, arch in zip(axes[0], archs):
        rows = searched[searched["arch"] == arch].sort_values("number")
        for state, marker in MARKERS.items():
            chosen = rows[rows["state"] == state]
            ax.scatter(chosen["number"], chosen["value"], marker=marker, color=model_color(arch),
                       label=f"{state.lower()} ({len(chosen)})")
        complete = rows[rows["state"] == "COMPLETE"]
        ax.step(complete["number"], complete["value"].cummin(), where="post", color="black", lw=1, label="best so far")
        ax.set(title=title_of(arch), xlabel="trial", ylabel=f"validation {objective.replace('_', ' ')}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper right")
    return finish(figure, save_to)


@styled
def plot_quality_vs_cost(trials: pd.DataFrame, objective: str, save_to=None):
    """Every counted trial's validation objective against the CPU hours it cost (pruned trials stop early)."""
    searched = _search_trials(trials)
    figure, axes = new_figure(size=(6.0, 4.0))
    ax = axes[0][0]
    for arch in dict.fromkeys(searched["arch"]):
        for state, marker in MARKERS.items():
            chosen = searched[(searched["arch"] == arch) & (searched["state"] == state)]
            ax.scatter(chosen["cpu_seconds"] / 3600, chosen["value"], marker=marker, color=model_color(arch),
                       label=f"{title_of(arch)}, {state.lower()}")
    ax.set(xlabel="CPU hours of the trial", ylabel=f"validation {objective.replace('_', ' ')}")
    ax.legend(loc="upper right")
    return finish(figure, save_to)


@styled
def plot_importances(importances: dict[str, dict[str, float]], save_to=None):
    """Per architecture: how much of the objective's variation each parameter explains (fANOVA, complete trials)."""
    archs = list(importances)
    figure, axes = new_figure(1, max(1, len(archs)), size=(4.6, 3.4), sharex=True)
    for ax, arch in zip(axes[0], archs):
        shares = pd.Series(importances[arch]).sort_values()
        ax.barh(shares.index, shares.to_numpy(), color=model_color(arch))
        ax.set(title=title_of(arch), xlabel="share of the objective's variance")
    return finish(figure, save_to)
