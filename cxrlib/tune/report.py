"""The search's report (reports/tune-<name>/index.html): conclusion first, then budget and cost, the recipes, the
reruns that measure seed noise, the figures and every trial. Rendered from storage alone; nothing is trained.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pandas as pd

from cxrlib import plots
from cxrlib.backbones import title_of
from cxrlib.contract import repo_relative
from cxrlib.files import write_atomic
from cxrlib.report.format import DASH, display_table, epoch_number, number, transposed
from cxrlib.runner.pages import render

from . import ledger
from .results import TRIALS_FILE, trials_frame
from .spec import SearchSpec

REPORT_FILE = "index.html"
FIGURES = {"history": "search_history.png", "cost": "quality_vs_cpu.png", "importance": "importances.png"}
MIN_TRIALS_FOR_IMPORTANCE = 4


def budget_table(spec: SearchSpec, trials: pd.DataFrame) -> pd.DataFrame:
    """Per architecture: trials declared, counted, complete, pruned, lost and run again, refused; CPU and wall hours."""
    rows = []
    for arch in spec.archs:
        search = trials[(trials["arch"] == arch) & (trials["kind"] == "search")]
        failure = search.get("failure", pd.Series(index=search.index, dtype=object)).fillna("")
        rows.append({"model": arch, "trials declared": spec.trials_per_arch,
                     "trials counted": int(search["state"].isin(["COMPLETE", "PRUNED"]).sum()),
                     "complete": int((search["state"] == "COMPLETE").sum()),
                     "pruned": int((search["state"] == "PRUNED").sum()),
                     "lost and run again": int(failure.str.startswith("lost").sum()),
                     "refused (over budget)": int((failure == "over budget").sum()),
                     "CPU hours": search["cpu_seconds"].sum() / 3600, "wall hours": search["wall_seconds"].sum() / 3600,
                     "CPUs": ", ".join(sorted(search["cpu"].dropna().unique()))})
    return pd.DataFrame(rows)


def recipe_table(spec: SearchSpec, storage) -> pd.DataFrame:
    """One row per searched parameter: the base recipe and each architecture's best configuration (so far, while
    its search has not used its budget)."""
    columns = {"base recipe": spec.base_recipe()}
    for arch in spec.archs:
        study = ledger.load(spec, storage, arch)
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            done = ledger.progress(study).counted >= spec.trials_per_arch
            columns[f"{title_of(arch)} {'tuned' if done else 'best so far'}"] = ledger.best_values(study)
    frame = pd.DataFrame(columns).map(lambda value: f"{value:.4g}" if isinstance(value, float) else str(value))
    return frame.rename_axis("parameter").reset_index()


def seed_table(spec: SearchSpec, trials: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and recipe: the objective over training seeds (mean, SD, min, max, seeds).

    The tuned recipe's row with the search seed includes the search's best trial, chosen as the lowest of many
    (optimistic); the row of the fresh seeds alone is free of that selection.
    """
    rows = []
    for arch in spec.archs:
        mine = trials[trials["arch"] == arch]
        search = mine[(mine["kind"] == "search") & (mine["state"] == "COMPLETE")]
        reruns = mine[(mine["kind"] == "rerun") & (mine["state"] == "COMPLETE")]
        tuned_fresh = reruns[reruns["recipe"] == "tuned"]
        groups = {"base recipe": reruns[reruns["recipe"] == "base"]["value"],
                  "tuned recipe, fresh seeds": tuned_fresh["value"],
                  "tuned recipe, with the search's best trial (so far)": pd.concat(
                      [search.nsmallest(1, "value")["value"], tuned_fresh["value"]])}
        for recipe, values in groups.items():
            if len(values):
                rows.append({"model": arch, "recipe": recipe, "seeds": len(values), "mean": values.mean(),
                             "SD": values.std(ddof=1) if len(values) > 1 else None, "min": values.min(),
                             "max": values.max()})
    return pd.DataFrame(rows)


def conclusion(spec: SearchSpec, storage, seeds: pd.DataFrame, budget: pd.DataFrame) -> list[str]:
    """The report's opening sentences: where the search stands and what the tuned recipes gained on validation."""
    finished = ledger.is_finished(spec, storage)
    counted = ", ".join(f"{title_of(row['model'])} {row['trials counted']}/{row['trials declared']} trials"
                        for row in budget.to_dict("records"))
    lines = [f"{'The search is finished' if finished else 'The search is in progress; every number below is interim'}: "
             f"{counted} counted, "
             f"{budget['CPU hours'].sum():.1f} CPU hours. Objective: validation {spec.objective.replace('_', ' ')} "
             "(lower is better); test images were never read (the search indexes the train folder only)."]
    for arch in spec.archs:
        mine = seeds[seeds["model"] == arch] if len(seeds) else seeds
        base = mine[mine["recipe"] == "base recipe"] if len(mine) else mine
        fresh = mine[mine["recipe"] == "tuned recipe, fresh seeds"] if len(mine) else mine
        if len(base) and len(fresh):
            b, t = base.iloc[0], fresh.iloc[0]
            lines.append(f"{title_of(arch)}: tuned recipe {t['mean']:.4f} (mean of {t['seeds']} fresh seeds) against "
                         f"the base recipe's {b['mean']:.4f} ({b['seeds']} seeds), a difference of "
                         f"{t['mean'] - b['mean']:+.4f}; seed-to-seed SD {_sd_text(t)} (tuned) and {_sd_text(b)} (base).")
    return lines


def _sd_text(row) -> str:
    """The SD of a seed_table row, or why there is none."""
    return f"{row['SD']:.4f}" if pd.notna(row["SD"]) else "not defined (one seed)"


def importances(spec: SearchSpec, storage) -> dict[str, dict[str, float]]:
    """fANOVA importance of each parameter per architecture (needs a few complete trials)."""
    found = {}
    for arch in spec.archs:
        study = ledger.load(spec, storage, arch)
        if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= MIN_TRIALS_FOR_IMPORTANCE:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                found[arch] = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=spec.sampler_seed))
    return found


TRIAL_HEADERS = {"arch": "model", "number": "trial", "value": "validation balanced log-loss",
                 "training_seed": "training seed", "epochs_run": "epochs run", "best_epoch": "best epoch",
                 "val_auc": "validation ROC-AUC", "cpu_seconds": "CPU minutes", "cpu": "CPU", "retry_of": "retry of"}


def readable_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table as the page shows it: models by title, seeds and epochs as whole numbers (epochs counted
    from 1, as Keras logs them), CPU time in minutes, parameters by their profile key with 4 significant digits."""
    shown = trials.drop(columns=[c for c in ("code", "started", "wall_seconds") if c in trials])
    params = [c for c in shown if c.startswith("param_")]
    shown[params] = shown[params].map(lambda v: f"{v:.4g}" if isinstance(v, float) and pd.notna(v) else v)
    shown["arch"] = shown["arch"].map(title_of)
    shown["state"] = shown["state"].str.lower()
    for column in [c for c in ("training_seed", "epochs_run", "retry_of") if c in shown]:  # NaN made them float
        shown[column] = shown[column].map(lambda value: DASH if pd.isna(value) else str(int(value)))
    shown["best_epoch"] = shown["best_epoch"].map(epoch_number)
    shown["value"] = shown["value"].map(lambda value: number(value, 4))  # as the page's text quotes the best
    shown["cpu_seconds"] = shown["cpu_seconds"] / 60
    return shown.rename(columns={**TRIAL_HEADERS, **{c: c.removeprefix("param_") for c in params}})


def write_report(spec: SearchSpec, storage, directory: Path | None = None) -> Path:
    """Render the search's report and figures into its record directory; returns the page's path."""
    directory = Path(directory or spec.record_dir)
    trials = trials_frame(spec, storage)
    budget, seeds = budget_table(spec, trials), seed_table(spec, trials)
    figures = {}
    if trials["state"].isin(["COMPLETE", "PRUNED"]).any():
        plots.plot_search_history(trials, spec.objective, save_to=directory / FIGURES["history"])
        plots.plot_quality_vs_cost(trials, spec.objective, save_to=directory / FIGURES["cost"])
        figures = {"history": FIGURES["history"], "cost": FIGURES["cost"]}
    found = importances(spec, storage)
    if found:
        plots.plot_importances(found, save_to=directory / FIGURES["importance"])
        figures["importance"] = FIGURES["importance"]
    shown = readable_trials(trials)
    page = render("search.html.j2", title=f"Hyperparameter search '{spec.name}'", spec=spec,
                  nav={"home": None, "profile": None, "previous": None, "next": None},
                  conclusion=conclusion(spec, storage, seeds, budget), budget=transposed(display_table(budget)),
                  recipes=display_table(recipe_table(spec, storage)),
                  seeds=display_table(seeds) if len(seeds) else None, figures=figures,
                  trials=display_table(shown), trials_file=TRIALS_FILE, declaration=repo_relative(spec.path),
                  space=[(d.name, d.type, d.choices if d.type == "categorical" else f"{d.low} to {d.high}"
                          + (" (log scale)" if d.log else "") + (f", step {d.step}" if d.step else ""))
                         for d in spec.space])
    return write_atomic(directory / REPORT_FILE, page)
