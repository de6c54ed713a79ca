"""The comparison report's words: tables for readers and the discussion, every number taken from the results.

Pure functions of the study tables (cxrlib.study) and runs, so they are unit-tested on fabricated results and
no model name or number is written into the notebook.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from cxrlib import compare
from cxrlib.contract import ENSEMBLE, model_of
from cxrlib.params import RECIPE_PARAMETERS
from cxrlib.plan import StudyPlan
from cxrlib.report.format import (DASH, NAMES, POLICY_NAMES, is_missing, mean_sd_range, minus, model_title, number,
                                  p_value, with_interval)


def across_seeds(row: pd.Series) -> str:
    """One summary row (mean, sd, min, max) as ``mean ± SD (min–max)``."""
    return mean_sd_range(row["mean"], row["sd"], row["min"], row["max"])


def difference_table(summary: pd.DataFrame, planned: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The paired differences across seeds for readers: mean, 95% t-interval, who won how often, Wilcoxon and
    sign tests (each with the smallest p-value its number of seeds allows); with a plan, whether each comparison
    is the plan's (``planned``: its (compared, reference) pairs) or descriptive."""
    table = pd.DataFrame({
        "comparison": [f"{model_title(m)} − {model_title(r)}" for m, r in zip(summary["model"], summary["reference"])],
        "metric": summary["metric"].map(NAMES),
        "seeds": summary["n_seeds"],
        "mean difference (95% t-interval)": [signed_interval(m, lo, hi) for m, lo, hi in
                                             summary[["mean_difference", "ci_low", "ci_high"]].to_numpy()],
        "seeds won / lost": [f"{int(w)} / {int(lo)}" for w, lo in
                             summary[["n_model_better", "n_reference_better"]].to_numpy()],
        "Wilcoxon p (smallest possible)": [f"{p_value(p)} ({p_value(floor)})" for p, floor in
                                           summary[["wilcoxon_p", "wilcoxon_min_attainable_p"]].to_numpy()],
        "sign test p (smallest possible)": [f"{p_value(p)} ({p_value(floor)})" for p, floor in
                                            summary[["sign_test_p", "min_attainable_p"]].to_numpy()],
    })
    if planned is not None:
        table.insert(1, "role", ["decides" if pair in planned else "descriptive"
                                 for pair in zip(summary["model"], summary["reference"])])
    return table


def between_studies_table(between: pd.DataFrame, title: str, earlier_title: str) -> pd.DataFrame:
    """``study.between_studies`` for readers: each study's ``mean ± SD (replicates)`` under its title and the
    difference of means with its Welch interval, one row per model and metric."""
    def spread(means, sds, counts):
        return [f"{number(m, 4)} ± {number(s, 4)} ({int(n)})" for m, s, n in zip(means, sds, counts)]
    return pd.DataFrame({
        "model": between["model"].map(model_title), "metric": between["metric"].map(NAMES),
        title: spread(between["mean"], between["sd"], between["n"]),
        earlier_title: spread(between["earlier_mean"], between["earlier_sd"], between["earlier_n"]),
        "difference (95% Welch interval)": [signed_interval(d, lo, hi) for d, lo, hi in
                                            between[["difference", "ci_low", "ci_high"]].to_numpy()],
    })


def pair_table(pair: pd.DataFrame, name_a: str, name_b: str) -> pd.DataFrame:
    """compare.compare_pair's rows with the two models named instead of a and b."""
    notes = pair["note"].str.replace("only a correct", f"only {name_a} right").str.replace(
        "only b correct", f"only {name_b} right")
    return pd.DataFrame({"test": pair["test"], name_a: pair["a"], name_b: pair["b"],
                         "difference": pair["difference"], "95% CI low": pair["ci_low"], "95% CI high": pair["ci_high"],
                         "p-value": pair["p_value"].map(p_value), "note": notes})


def seed_pair_row(seed: int, pair: pd.DataFrame, name_a: str, name_b: str) -> dict:
    """One seed's compare.compare_pair rows as one line: differences with patient-bootstrap CIs, image-level p-values."""
    rows = pair.set_index(["level", "metric"])  # one test per level and metric (compare.compare_pair)
    boot = {metric: rows.loc[("patient", metric)] for metric in ("accuracy", "roc_auc")}
    return {"seed": seed, "comparison": f"{name_a} − {name_b}",
            "ROC-AUC difference (patient 95% CI)": with_interval(*boot["roc_auc"][["difference", "ci_low", "ci_high"]], 4),
            "image-level DeLong p": p_value(rows.loc[("image", "roc_auc"), "p_value"]),
            "accuracy difference (patient 95% CI)": with_interval(*boot["accuracy"][["difference", "ci_low", "ci_high"]],
                                                                  4),
            "image-level McNemar p": p_value(rows.loc[("image", "accuracy"), "p_value"])}


def randomised_sources(runs: Sequence[compare.Run]) -> str:
    """What varied between the replicates: the patient split, training, or both (from run.json)."""
    trained = [run for run in runs if run.arch != ENSEMBLE]
    seeds = sorted({run.seed for run in trained})
    split_seeds = {run.info["config"].get("split_seed", run.seed) for run in trained}
    if len(seeds) == 1:
        return (f"One replicate (seed {seeds[0]}): the intervals below cover the sampling of test patients, not "
                "retraining or another validation split.")
    if len(split_seeds) == 1:
        return (f"{len(seeds)} replicates (seeds {', '.join(map(str, seeds))}) share one patient split "
                f"(split seed {split_seeds.pop()}): they vary initialisation, data order, augmentation and dropout.")
    return (f"{len(seeds)} replicates (seeds {', '.join(map(str, seeds))}); each drew its own validation patients and "
            "its own training seed (initialisation, data order, augmentation, dropout), so the spread across "
            "replicates is what a user retraining this profile would meet. Within a replicate all models share the "
            "split, so their comparison is paired. The test folder is the same in every replicate.")


def _summary_row(tables: dict[str, pd.DataFrame], model: str, metric: str) -> pd.Series:
    """The primary-policy summary row of one model and metric."""
    summary = tables["summary"]
    rows = summary[summary["is_primary"] & (summary["model"] == model) & (summary["metric"] == metric)]
    return rows.iloc[0]


def _difference_words(row: pd.Series, decides: bool = True, mixed: bool = False) -> str:
    """What the t-interval of one paired difference allows us to say: the decision rule's words where the
    comparison ``decides`` (a plan's comparison, or any when there is no plan), else a description without them."""
    what = f"{model_title(row['model'])} − {model_title(row['reference'])} in {NAMES[row['metric']]}"
    interval = with_interval(row["mean_difference"], row["ci_low"], row["ci_high"], 4)
    if is_missing(row["ci_low"]):
        return f"{what}: {interval} (one seed: no interval across seeds)"
    if not decides:
        side = "excludes" if row["ci_low"] > 0 or row["ci_high"] < 0 else "includes"
        return f"{what}: {interval}; the interval {side} 0 (descriptive: a comparison the plan did not make)"
    if row["ci_low"] > 0 or row["ci_high"] < 0:
        better = row["model"] if row["ci_low"] > 0 else row["reference"]
        recipe = (" at its recipe (architecture and recipe together: the two trained at different recipes)"
                  if mixed else "")
        return f"{what}: {interval}; the interval excludes 0, so {model_title(better)}{recipe} is better here"
    return f"{what}: {interval}; the interval includes 0, so the study detects no difference"


def discussion(runs: Sequence[compare.Run], tables: dict[str, pd.DataFrame], policy: str, reference: str,
               planned: set[tuple[str, str]] | None = None) -> str:
    """The discussion in Markdown: setup, headline per model, paired differences, ensemble, limits. With a plan,
    ``planned`` holds its (compared, reference) pairs: only those get decision words, the rest are descriptive."""
    models = list(dict.fromkeys(model_of(run.arch, run.name) for run in runs))
    trained = [run for run in runs if run.arch != ENSEMBLE]
    from_scratch = not any(run.info["config"]["weights"] for run in trained)
    seeds = sorted({run.seed for run in trained})
    n_test, n_pos = len(trained[0].test), int(trained[0].test["target"].sum())
    lines = [f"**Setup.** {len(models)} models ({', '.join(model_title(m) for m in models)}) over {len(seeds)} "
             f"seed{'s' if len(seeds) != 1 else ''}, trained {_how_trained(trained)}, tested on the same {n_test} "
             f"test images "
             f"({n_pos} PNEUMONIA; always answering PNEUMONIA scores {n_pos / n_test:.1%}). Thresholds follow the "
             f"pre-registered policy ({POLICY_NAMES[policy]}"
             + ("; fixed in advance, not estimated from any data)." if policy == "fixed" else
                "; set on each run's validation patients only).") , ""]
    for model in models:
        auc, accuracy = _summary_row(tables, model, "roc_auc"), _summary_row(tables, model, "accuracy")
        spread = "mean ± SD (min–max) across seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
        lines.append(f"- **{model_title(model)}:** ROC-AUC {across_seeds(auc)}, accuracy {across_seeds(accuracy)} "
                     f"({spread}).")
    lines.append("")
    differences = tables["difference_summary"]
    mixed = len({tuple(run.info["config"].get(key) for key in RECIPE_PARAMETERS) for run in trained}) > 1
    lines += [f"- {_difference_words(row, planned is None or (row['model'], row['reference']) in planned, mixed)}."
              for _, row in differences.iterrows()] or [f"- {DASH}"]
    lines += ["", "**Limits.** One test folder from one hospital; the data copy's stored image sizes are tied to the "
              "label, and so is its share of pure-black border (more in NORMAL images), and a classifier on file "
              "metadata alone separates the classes well (notebook 1 measures all three). The within-group view above "
              "controls for stored size only, not for the border. "
              + ("These models were trained from scratch at reduced resolution, not with the published protocol "
                 "(ImageNet weights, 224 px; profile full). " if from_scratch else "")
              + (f"With {len(seeds)} seeds neither the Wilcoxon nor the sign test can fall below "
                 f"{number(2 * 0.5 ** len(seeds), 4)}, so the t-interval carries the decision (pre-registered rule)."
                 if len(seeds) > 1 else "With one seed nothing here measures how results move with retraining: "
                 "train more seeds (`seeds`) for that.")]
    return "\n".join(lines)


def _how_trained(trained: Sequence[compare.Run]) -> str:
    """``from scratch at 96×96 pixels``, or that per model when their recipes differ (a study may give each
    architecture its own)."""
    def words(config: dict) -> str:
        start = "from ImageNet weights" if config["weights"] else "from scratch"
        return f"{start} at {config['image_size']}×{config['image_size']} pixels"
    per_model = {model_title(model_of(run.arch, run.name)): words(run.info["config"]) for run in trained}
    if len(set(per_model.values())) == 1:
        return next(iter(per_model.values()))
    return ", ".join(f"{model} {how}" for model, how in per_model.items())


def signed(value, digits: int = 4) -> str:
    """``+0.0012`` or ``−0.0063``: a difference with its sign."""
    if is_missing(value):
        return DASH
    text = minus(f"{value:+.{digits}f}")
    return text if text.strip("+0.") else text.lstrip("+")  # a difference that rounds to 0 has no sign


def signed_interval(value, low, high, digits: int = 4) -> str:
    """A difference with its interval, every number signed: ``+0.0089 (+0.0016 to +0.0162)``; the bare difference
    when the interval is undefined."""
    if is_missing(low) or is_missing(high):
        return signed(value, digits)
    return f"{signed(value, digits)} ({signed(low, digits)} to {signed(high, digits)})"


def _verdict(row: pd.Series) -> str | None:
    """The model the decision rule calls better in one difference row (its interval excludes 0), else None."""
    if is_missing(row["ci_low"]):
        return None
    if row["ci_low"] > 0:
        return row["model"]
    return row["reference"] if row["ci_high"] < 0 else None


def recipe_sentence(runs: Sequence[compare.Run], tuned: Sequence[str] = ()) -> str:
    """How the models trained, said up front: one shared recipe, or each model's (``tuned`` names the architectures
    a profile's ``recipes`` gave their own), with the warning that different recipes mix with architecture."""
    trained = {model_of(run.arch, run.name): run.info["config"] for run in runs if run.arch != ENSEMBLE}
    start = "from scratch" if not any(config.get("weights") for config in trained.values()) else "from ImageNet weights"
    sizes = {model: f"{config['image_size']} px, {config['epochs']} epochs" for model, config in trained.items()}
    recipes = {model: tuple(config.get(key) for key in RECIPE_PARAMETERS) for model, config in trained.items()}
    if len(set(recipes.values())) == 1:
        return (f"Both models trained {start} at one shared recipe ({next(iter(sizes.values()))}); only the "
                "architecture differs.")
    each = " and ".join(f"{model_title(model)} at {'its tuned' if model in tuned else 'the shared'} recipe "
                        f"({size})" for model, size in sizes.items())
    return (f"{each[0].upper() + each[1:]}, both trained {start}: the difference between them mixes architecture "
            "and recipe.")


def decision(plan: StudyPlan, difference_summary: pd.DataFrame, recipes: str = "",
             tuned: Sequence[str] | None = None) -> tuple[str, str]:
    """The study's decision in one sentence, and the numbers behind it: the plan's rule (a model is better only
    when the t-interval of the paired difference excludes 0) applied to each of its decision metrics; ``recipes``
    (``recipe_sentence``) says up front how the models trained. With ``tuned`` (the architectures at their own
    recipe, when the two recipes differ) the sentence names each model with its recipe."""
    def titled(model: str) -> str:
        """A model's title, with its recipe when the two trained at different recipes."""
        if tuned is None:
            return model_title(model)
        return f"{model_title(model)} ({'its tuned' if model in tuned else 'the shared'} recipe)"

    rows = difference_summary[(difference_summary["model"] == plan.compared)
                              & (difference_summary["reference"] == plan.reference)].set_index("metric")
    pair = f"{model_title(plan.compared)} and {model_title(plan.reference)}"
    verdicts, details = [], []
    for metric in plan.decision_metrics:
        row = rows.loc[metric]
        better = _verdict(row)
        name = NAMES[metric] + (f" at {POLICY_NAMES[plan.primary_policy]}" if metric != "roc_auc" else "")
        verdicts.append(f"{titled(better)} has the higher {name}" if better
                        else f"no difference in {name} is detected")
        details.append(f"{name}: {model_title(plan.compared)} − {model_title(plan.reference)} = "
                       f"{signed(row['mean_difference'])} ({plan.level:.0%} t-interval {signed(row['ci_low'])} to "
                       f"{signed(row['ci_high'])}; higher in {int(row['n_model_better'])} and lower in "
                       f"{int(row['n_reference_better'])} of {int(row['n_seeds'])} replicates)")
    decided = any("higher" in verdict for verdict in verdicts)
    lead = "; ".join(verdicts) if decided else f"the study detects no difference between {pair}"
    rule = (f". The rule, fixed in {plan.document} before the replicates ran: a model is better only when the interval "
            "excludes 0" + ("; otherwise the interval bounds the difference the study leaves possible." if not decided
                            else "."))
    return f"{plan.title}. {lead[0].upper() + lead[1:]}.", (f"{recipes} " if recipes else "") + "; ".join(details) + rule


def expectation_table(plan: StudyPlan, results: pd.DataFrame) -> pd.DataFrame:
    """``plan.expectation_results`` for readers: what was expected in advance, what was measured, met or not."""
    statistic = {"mean": "mean", "sd": "SD", "min": "smallest", "max": "largest",
                 "half_width": f"half-width of the {plan.level:.0%} interval of"}
    sign = {"at_least": "≥", "at_most": "≤"}

    def subject(model: str, stat: str) -> str:
        """The model, or the paired difference a half-width is of."""
        return (f"{model_title(model)} − {model_title(plan.reference)}" if stat == "half_width"
                else model_title(model))

    return pd.DataFrame({
        "expected in advance": [f"{subject(r.model, r.statistic)}: {statistic[r.statistic]} {NAMES[r.metric]} "
                                f"{sign[r.bound]} {r.value:g}" for r in results.itertuples()],
        "measured": [number(value, 4) for value in results["measured"]],
        "met": results["met"].map({True: "yes", False: "no"}),
    })
