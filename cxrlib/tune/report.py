"""The search's report (reports/tune-<name>/index.html): conclusion first, then what the studies adopted, budget and
cost, the recipes, the reruns that measure seed noise, the figures and every trial. Rendered from storage alone;
nothing is trained.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from cxrlib import plots
from cxrlib.backbones import title_of
from cxrlib.contract import INDEX_PAGE, REPORTS_DIR, repo_relative
from cxrlib.files import write_atomic
from cxrlib.plots import objective_limit, outliers
from cxrlib.report.discussion import signed
from cxrlib.report.format import DASH, display_table, is_missing, number, transposed
from cxrlib.runner.pages import render, shown_figure

from . import adoption, ledger
from .recipe import tuned_recipes
from .results import TRIALS_FILE, trials_frame
from .spec import SearchSpec

REPORT_FILE = "index.html"
FIGURES = {"history": "search_history.png", "cost": "quality_vs_cpu.png", "importance": "importances.png"}
MIN_TRIALS_FOR_IMPORTANCE = 4
SHARED, FRESH, WITH_WINNER = "shared recipe", "tuned recipe, fresh seeds", "tuned recipe, with the winning trial"
RERUN_RECIPES = {"base": "shared", "tuned": "tuned"}
PARAMETER_WORDS = {"learning_rate": "learning rate", "lr_schedule": "schedule", "weight_decay": "weight decay",
                   "label_smoothing": "label smoothing", "augment_strength": "augment strength",
                   "image_size": "image size (px)"}
EPOCHS_RUN_OF_PLANNED = "epochs run of planned"
SIGNIFICANT_DIGITS = 3  # parameters on the page; trials.csv and the tuned profile keep the exact values


def parameter_words(name: str) -> str:
    """A searched parameter as a reader names it: ``learning_rate`` -> ``learning rate``."""
    return PARAMETER_WORDS.get(name, name.replace("_", " "))


def significant(value) -> str:
    """A parameter value to 3 significant digits, written out (0.0000671, not 6.711e-05); text stays as it is."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return DASH if is_missing(value) else np.format_float_positional(
            float(value), precision=SIGNIFICANT_DIGITS, unique=False, fractional=False, trim="-")
    return DASH if value is None else str(value)


def joined(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def seeds_text(seeds) -> str:
    """Training seeds as a reader lists them: ``1000–1002`` when consecutive, else ``1001, 1003``."""
    seeds = sorted(int(seed) for seed in seeds)
    consecutive = len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1))
    return f"{seeds[0]}–{seeds[-1]}" if consecutive else ", ".join(str(seed) for seed in seeds)


def href(target: Path, directory: Path) -> str:
    """A link from a page in ``directory`` to ``target``."""
    return Path(os.path.relpath(target, directory)).as_posix()


def link(target: Path, directory: Path) -> tuple[str, str]:
    """A link from a page in ``directory`` to ``target``, and its text: the target's path in the repository."""
    return href(target, directory), repo_relative(target)


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
    """One row per searched parameter: the shared recipe and each architecture's best configuration (so far, while
    its search has not used its budget), to 3 significant digits."""
    columns = {SHARED: spec.base_recipe()}
    for arch in spec.archs:
        study = ledger.load(spec, storage, arch)
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            done = ledger.progress(study).counted >= spec.trials_per_arch
            columns[f"{title_of(arch)} {'tuned' if done else 'best so far'}"] = ledger.best_values(study)
    frame = pd.DataFrame(columns).map(significant)
    frame.index = frame.index.map(parameter_words)
    return frame.rename_axis("parameter").reset_index()


def best_search_trial(trials: pd.DataFrame, arch: str) -> pd.Series | None:
    """``arch``'s complete search trial with the lowest objective (ties: the earlier), or None."""
    search = trials[(trials["arch"] == arch) & (trials["kind"] == "search") & (trials["state"] == "COMPLETE")]
    return search.sort_values(["value", "number"]).iloc[0] if len(search) else None


def seed_table(spec: SearchSpec, trials: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and recipe: the objective over training seeds (which seeds, mean, SD, min, max).

    The tuned recipe's row with the search seed includes the search's best trial, chosen as the lowest of many
    (biased low: the winner's curse); the row of the fresh seeds alone is free of that selection.
    """
    rows = []
    for arch in spec.archs:
        reruns = trials[(trials["arch"] == arch) & (trials["kind"] == "rerun") & (trials["state"] == "COMPLETE")]
        best = best_search_trial(trials, arch)
        tuned_fresh = reruns[reruns["recipe"] == "tuned"]
        groups = {SHARED: reruns[reruns["recipe"] == "base"],
                  FRESH: tuned_fresh,
                  WITH_WINNER: pd.concat([best.to_frame().T, tuned_fresh]) if best is not None else tuned_fresh}
        for recipe, rows_of_recipe in groups.items():
            values = rows_of_recipe["value"].astype(float)
            if len(values):
                rows.append({"model": arch, "recipe": recipe,
                             "training seeds": seeds_text(rows_of_recipe["training_seed"]), "mean": values.mean(),
                             "SD": values.std(ddof=1) if len(values) > 1 else None, "min": values.min(),
                             "max": values.max()})
    return pd.DataFrame(rows)


def _seed_row(seeds: pd.DataFrame, arch: str, recipe: str) -> pd.Series | None:
    """The seed_table row of ``arch`` and ``recipe``, or None."""
    chosen = seeds[(seeds["model"] == arch) & (seeds["recipe"] == recipe)] if len(seeds) else seeds
    return chosen.iloc[0] if len(chosen) else None


def _mean_sd(row: pd.Series) -> str:
    """``0.1394 ± 0.0087 (seeds 1000–1002)``, the bare mean when one seed has no SD."""
    spread = f" ± {row['SD']:.4f}" if pd.notna(row["SD"]) else ""
    return f"{row['mean']:.4f}{spread} (seeds {row['training seeds']})"


def model_summary(spec: SearchSpec, trials: pd.DataFrame, seeds: pd.DataFrame, arch: str) -> str | None:
    """What ``arch``'s search found, once its reruns ran: the winning trial, its recipe on fresh seeds and on all
    seeds (winner included: biased low), against the shared recipe."""
    shared, fresh, with_winner = (_seed_row(seeds, arch, recipe) for recipe in (SHARED, FRESH, WITH_WINNER))
    best = best_search_trial(trials, arch)
    if shared is None or fresh is None or best is None:
        return None
    return (f"{title_of(arch)}: the search's best trial (trial {int(best['number'])}, seed {spec.training_seed}) "
            f"scored {best['value']:.4f}. Its recipe trained again scored {fresh['mean']:.4f} on fresh seeds "
            f"{fresh['training seeds']} (their mean) and {_mean_sd(with_winner)} with the winning trial included, a "
            f"mean biased low by that selection; the shared recipe scored {_mean_sd(shared)}. Tuned − shared on the "
            f"fresh seeds: {signed(fresh['mean'] - shared['mean'])}.")


def conclusion(spec: SearchSpec, storage, trials: pd.DataFrame, seeds: pd.DataFrame,
               budget: pd.DataFrame) -> list[str]:
    """The report's opening sentences: where the search stands and what the tuned recipes gave on validation."""
    finished = ledger.is_finished(spec, storage)
    counted = ", ".join(f"{title_of(row['model'])} {row['trials counted']}/{row['trials declared']} trials"
                        for row in budget.to_dict("records"))
    lines = [f"{'The search is finished' if finished else 'The search is in progress; every number below is interim'}: "
             f"{counted} counted, "
             f"{budget['CPU hours'].sum():.1f} CPU hours. Objective: validation {spec.objective.replace('_', ' ')} "
             "(lower is better); test images were never read (the search indexes the train folder only)."]
    summaries = (model_summary(spec, trials, seeds, arch) for arch in spec.archs)
    return lines + [summary for summary in summaries if summary]


def held_up(seeds: pd.DataFrame, arch: str) -> str | None:
    """Whether ``arch``'s best trial held up on fresh seeds, with both means; None before its reruns."""
    shared, fresh = _seed_row(seeds, arch, SHARED), _seed_row(seeds, arch, FRESH)
    if shared is None or fresh is None:
        return None
    verdict = "held up" if fresh["mean"] < shared["mean"] else "did not hold up"
    return (f"{title_of(arch)}'s best trial {verdict} on fresh seeds ({fresh['mean']:.4f} against the shared "
            f"recipe's {shared['mean']:.4f})")


def adopted(spec: SearchSpec, storage, trials: pd.DataFrame, directory: Path) -> list[dict]:
    """Each study that trains one of the search's tuned recipes: its title, what each model trains at, and links
    to its plan, its plan file and its page (none before the search is finished with a best trial per model)."""
    best = {arch: best_search_trial(trials, arch) for arch in spec.archs}
    if not ledger.is_finished(spec, storage) or any(trial is None for trial in best.values()):
        return []
    best_trial = {arch: int(trial["number"]) for arch, trial in best.items()}
    studies = []
    for study in adoption.adoptions(spec, tuned_recipes(spec, storage), best_trial):
        name, _, detail = study.title.partition(": ")
        studies.append({"name": name, "detail": detail, "report": study.report and link(study.report, directory),
                        "trains": joined([f"{title_of(arch)} at {words}" for arch, words in study.recipes.items()]),
                        "plan": [link(path, directory) for path in (study.document, study.plan_file)]})
    return studies


def unrerun_rivals(spec: SearchSpec, trials: pd.DataFrame) -> list[str]:
    """Per architecture, the complete search trials other than the best that also beat the shared recipe on the
    search seed, which the reruns never trained again."""
    sentences = []
    for arch in spec.archs:
        mine = trials[(trials["arch"] == arch) & (trials["state"] == "COMPLETE")]
        shared = mine[(mine["kind"] == "rerun") & (mine["recipe"] == "base")
                      & (mine["training_seed"] == spec.training_seed)]
        best = best_search_trial(trials, arch)
        if shared.empty or best is None:
            continue
        bar = float(shared["value"].iloc[0])
        rivals = mine[(mine["kind"] == "search") & (mine["value"] < bar) & (mine["number"] != best["number"])]
        if len(rivals):
            named = joined([trial_text(row) for row in rivals.sort_values("number").to_dict("records")])
            sentences.append(f"{title_of(arch)}'s trial{'s' if len(rivals) > 1 else ''} {named} also scored below the "
                             f"shared recipe's {bar:.4f} on seed {spec.training_seed} and "
                             f"{'were' if len(rivals) > 1 else 'was'} never trained again: only the best trial was.")
    return sentences


def trial_text(row: dict) -> str:
    """A trial named with its image size (when searched) and objective: ``6 (128 px, 0.0958)``."""
    size = row.get("param_image_size")
    where = f"{int(size)} px, " if size is not None and not is_missing(size) else ""
    return f"{int(row['number'])} ({where}{row['value']:.4f})"


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


def state_words(row: dict, retried_as: dict) -> str:
    """A trial's state as the budget table words it: complete, pruned, lost and run again (as trial N), refused
    (over budget), and for a retry which lost trial it ran again."""
    failure = row.get("failure")
    if row["state"] != "FAIL" or is_missing(failure):
        retry_of = row.get("retry_of")
        return row["state"].lower() + ("" if is_missing(retry_of) else f" (retry of trial {int(retry_of)})")
    if failure.startswith("lost"):
        again = retried_as.get((row["arch"], row["kind"], row["number"]))
        return "lost and run again" + ("" if again is None else f" (trial {again})")
    if failure.startswith("error"):
        return f"failed with an error ({TRIALS_FILE})"
    return f"refused ({failure})"


def _retries(trials: pd.DataFrame) -> dict:
    """(arch, kind, lost trial's number) -> the number of the trial that ran its configuration again."""
    again = trials.dropna(subset=["retry_of"]) if "retry_of" in trials else trials.iloc[0:0]
    return {(row["arch"], row["kind"], int(row["retry_of"])): int(row["number"]) for row in again.to_dict("records")}


def outcome_columns(row: dict, retried_as: dict) -> dict:
    """A trial's state, objective and best epoch (counted from 1, as trials.csv counts it)."""
    return {"state": state_words(row, retried_as), "validation balanced log loss": number(row.get("value"), 4),
            "best epoch": whole(row.get("best_epoch"))}


def whole(value) -> str:
    """A count stored as a float (NaN made the column float) as a whole number, or a dash."""
    return DASH if is_missing(value) else str(int(value))


def parameter_cell(row: dict, name: str) -> tuple[str, str]:
    """A search trial's column for parameter ``name``: its header and value; epochs show how many ran of those
    planned (``3 of 12`` for a trial pruned after epoch 3)."""
    value = significant(row.get(f"param_{name}"))
    if name == "epochs":
        return EPOCHS_RUN_OF_PLANNED, f"{whole(row.get('epochs_run'))} of {value}"
    return parameter_words(name), value


def search_trials_table(trials: pd.DataFrame, arch: str, names: list[str]) -> pd.DataFrame:
    """``arch``'s search trials as the page shows them: outcome, then the searched parameters ``names`` (3
    significant digits). Their ROC-AUC and cost are in trials.csv and the quality-vs-cost figure, so that the
    table fits the page."""
    retried_as = _retries(trials)
    rows = [{"trial": str(int(row["number"])), **outcome_columns(row, retried_as),
             **dict(parameter_cell(row, name) for name in names)}
            for row in trials[(trials["arch"] == arch) & (trials["kind"] == "search")].to_dict("records")]
    return pd.DataFrame(rows)


def rerun_trials_table(trials: pd.DataFrame) -> pd.DataFrame:
    """The reruns as the page shows them: model, rerun trial, recipe, training seed, outcome, epochs run,
    validation ROC-AUC and CPU minutes (the recipes' parameters are in the recipe table)."""
    retried_as = _retries(trials)
    rows = [{"model": row["arch"], "trial": str(int(row["number"])), "recipe": RERUN_RECIPES.get(row["recipe"], DASH),
             "training seed": whole(row.get("training_seed")), **outcome_columns(row, retried_as),
             "epochs run": whole(row.get("epochs_run")), "validation ROC-AUC": number(row.get("val_auc"), 3),
             "CPU minutes": DASH if is_missing(row.get("cpu_seconds")) else f"{row['cpu_seconds'] / 60:.0f}"}
            for row in trials[trials["kind"] == "rerun"].to_dict("records")]
    return pd.DataFrame(rows)


def per_model(spec: SearchSpec, counts: pd.Series) -> str:
    """``6 (ResNet-50) and 4 (DenseNet-121)`` from a count per architecture."""
    return joined([f"{counts[arch]} ({title_of(arch)})" for arch in spec.archs if arch in counts])


def nav_bar(spec: SearchSpec, directory: Path, studies: list[dict]) -> dict:
    """The header bar: home is the shared recipe's study page, next the first adopting study's page."""
    home = REPORTS_DIR / spec.base_profile / INDEX_PAGE
    reported = [study for study in studies if study["report"]]
    following = {"href": reported[0]["report"][0], "title": reported[0]["name"]} if reported else None
    return {"home": href(home, directory) if home.is_file() else None,
            "profile": spec.base_profile if home.is_file() else None, "previous": None, "next": following}


def figure_notes(spec: SearchSpec, trials: pd.DataFrame, found: dict) -> dict:
    """What the captions say with numbers: the objective axis' top and the trials drawn on it, and the trial
    counts behind the importances."""
    beyond = [f"{title_of(row['arch'])} trial {int(row['number'])} ({row['value']:.2f}, {row['state'].lower()})"
              for row in outliers(trials).sort_values("value", ascending=False).to_dict("records")]
    complete = trials[(trials["kind"] == "search") & (trials["state"] == "COMPLETE")].groupby("arch").size()
    return {"top": f"{objective_limit(trials):.2f}", "outliers": joined(beyond) if beyond else "",
            "importance_trials": per_model(spec, complete[list(found)]) if found else "",
            "parameters": len(spec.space)}


def write_figures(spec: SearchSpec, storage, trials: pd.DataFrame, directory: Path) -> tuple[dict, dict]:
    """Draw the history, quality-vs-cost and importance figures that have data; returns them (shown_figure) and
    the numbers their captions quote."""
    if not trials["state"].isin(["COMPLETE", "PRUNED"]).any():
        return {}, {}
    plots.plot_search_history(trials, spec.objective, save_to=directory / FIGURES["history"])
    plots.plot_quality_vs_cost(trials, spec.objective, save_to=directory / FIGURES["cost"])
    drawn = ["history", "cost"]
    found = importances(spec, storage)
    if found:
        complete = trials[(trials["kind"] == "search") & (trials["state"] == "COMPLETE")].groupby("arch").size()
        shares = {arch: {parameter_words(name): share for name, share in found[arch].items()} for arch in found}
        plots.plot_importances(shares, complete.to_dict(), save_to=directory / FIGURES["importance"])
        drawn.append("importance")
    return {name: shown_figure(directory / FIGURES[name]) for name in drawn}, figure_notes(spec, trials, found)


def write_report(spec: SearchSpec, storage, directory: Path | None = None) -> Path:
    """Render the search's report and figures into its record directory; returns the page's path."""
    directory = Path(directory or spec.record_dir)
    trials = trials_frame(spec, storage)
    budget, seeds = budget_table(spec, trials), seed_table(spec, trials)
    figures, notes = write_figures(spec, storage, trials, directory)
    studies = adopted(spec, storage, trials, directory)
    complete = budget.set_index("model")["complete"]
    names = [dimension.name for dimension in spec.space]
    page = render("search.html.j2", title=f"Hyperparameter search '{spec.name}'", spec=spec,
                  nav=nav_bar(spec, directory, studies),
                  conclusion=conclusion(spec, storage, trials, seeds, budget), studies=studies,
                  held_up=[words for words in (held_up(seeds, arch) for arch in spec.archs) if words],
                  budget=transposed(display_table(budget)), recipes=display_table(recipe_table(spec, storage)),
                  seeds=display_table(seeds, digits=4) if len(seeds) else None, complete=per_model(spec, complete),
                  rivals=unrerun_rivals(spec, trials), figures=figures, notes=notes,
                  search_tables=[(title_of(arch), display_table(search_trials_table(trials, arch, names)))
                                 for arch in spec.archs if (trials["arch"] == arch).any()],
                  reruns=display_table(rerun_trials_table(trials)) if (trials["kind"] == "rerun").any() else None,
                  trials_file=TRIALS_FILE, declaration=repo_relative(spec.path),
                  declaration_href=href(spec.path, directory),
                  space=[(d.name, d.type, ", ".join(str(c) for c in d.choices) if d.type == "categorical" else
                          f"{significant(d.low)} to {significant(d.high)}" + (" (log scale)" if d.log else "")
                          + (f", step {d.step}" if d.step else "")) for d in spec.space])
    return write_atomic(directory / REPORT_FILE, page)
