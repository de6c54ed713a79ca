"""The sections of the comparison notebook (04): any number of models x seeds, read from run records.

Runs come from ``report_dir/runs/<arch>/seed-<k>/`` (the records the training notebooks copy there, and the
committed study); model files for Grad-CAM from ``runs_dir``. Byte-identical test images count once; every
threshold is set on validation by the pre-registered policy; intervals resample test patients.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from cxrlib import compare, data, explain, plan, plots, runtime, study
from cxrlib.contract import (ARCHS, COMPARISON_FILE, COMPARISON_MARKDOWN, ENSEMBLE, GRADCAM_FILE, HEADLINE_METRICS,
                             MODEL_FILE, PROFILES_DIR, RECORDS_DIR, REPO_ROOT, ROC_FIGURE, SEED_PAIRS_FIGURE,
                             SEEDS_FILE, STUDY_FILE, model_of, replicate_dir, repo_relative)
from cxrlib.files import write_atomic
from cxrlib.params import notebook_parameters, policy_kwargs, read_profile
from cxrlib.report import discussion, heatmaps
from cxrlib.report import factorial as factorial_report
from cxrlib.report.format import (NAMES, POLICY_NAMES, headline_table, is_missing, markdown_table,
                                  column_label, mean_sd_range, model_title, number, parameters_text, readable,
                                  setting_text, table_record, with_interval)
from cxrlib.report.training import shown_parameters

# Settings shown side by side for every model (a difference between models would show here).
SETTINGS = ("image_size", "weights", "train_base", "epochs", "finetune_epochs", "batch_size", "learning_rate",
            "lr_schedule", "weight_decay", "label_smoothing", "augment", "augment_strength", "head_units", "dropout",
            "precision")


@dataclass
class ComparisonSetup:
    """The checked parameters, the data index and every run (duplicates merged) at the pre-registered policy."""

    params: dict
    index: data.DatasetIndex
    runs: list[compare.Run]  # models and ensembles, every seed, thresholds by the pre-registered policy
    merged_rows: int
    focus_seed: int
    plan: plan.StudyPlan | None  # the two-model study plan the records belong to (parameter `study`), if any
    factorial: plan.FactorialPlan | None = None  # or the factorial plan whose own cells these records are

    def policy_kwargs(self) -> dict:
        """The parameters of the threshold policies, as the profile fixed them."""
        return policy_kwargs(self.params)

    @property
    def models(self) -> list[str]:
        """Model names in registry order, then ensembles."""
        return list(dict.fromkeys(model_of(run.arch, run.name) for run in self.runs))

    @property
    def reference(self) -> str:
        """The model the others are compared with: the first architecture of the registry that has runs."""
        return next(name for name in self.models if name in ARCHS)

    def planned_pairs(self) -> set[tuple[str, str]] | None:
        """The (compared, reference) pairs the plan decides: the two-model plan's pair, none for a factorial plan's
        own cells, None without a plan (every difference is then read by the decision rule)."""
        if self.plan:
            return {(self.plan.compared, self.plan.reference)}
        return set() if self.factorial else None

    def focus_runs(self) -> list[compare.Run]:
        """The runs of the seed shown image by image."""
        return [run for run in self.runs if run.seed == self.focus_seed]


def load_study_runs(records: Path, index: data.DatasetIndex) -> tuple[list[compare.Run], pd.DataFrame]:
    """A study's committed run records, checked against the data set, byte-identical test images counted once;
    and the merged rows (``compare.merge_duplicates``)."""
    return compare.merge_duplicates(compare.load_runs(records, index.root), index.images)


def setup(namespace: dict) -> ComparisonSetup:
    """Check parameters, load and check every run record, merge duplicates, add the per-seed ensembles."""
    params = notebook_parameters(namespace, "compare")
    records = Path(params["report_dir"]) / RECORDS_DIR
    if not records.is_dir() or not compare.find_run_dirs(records):
        profile = params["profile"] if (PROFILES_DIR / f"{params['profile']}.yaml").is_file() else "smoke"
        raise FileNotFoundError(f"no run records in {repo_relative(records)}: train the models first, e.g. "
                                f"./run_all.sh --profile {profile} --only 02 --only 03 (or run notebooks 2 and 3 "
                                "with this report_dir), or read the committed exploratory study with "
                                'report_dir = "../reports/cpu" and study = "exploratory-cpu"')
    index = data.scan_dataset(data.locate_data(params["data_dir"]))
    runs, dropped = load_study_runs(records, index)
    with_ensembles = study.add_seed_ensembles(runs)
    runs = [compare.with_policy(run, params["threshold_policy"], **policy_kwargs(params)) for run in with_ensembles]
    seeds = sorted({run.seed for run in runs})
    factorial_plan = (plan.load_factorial(params["study"])
                      if params["study"] and plan.plan_kind(params["study"]) == "factorial" else None)
    study_plan = plan.load_plan(params["study"]) if params["study"] and not factorial_plan else None
    if factorial_plan and seeds != sorted(factorial_plan.seeds):
        raise plan.PlanError(f"the records hold seeds {seeds} but the factorial study {factorial_plan.name!r} planned "
                             f"{sorted(factorial_plan.seeds)}; it is read only when every replicate is committed")
    if study_plan:
        plan.check_runs(study_plan, seeds, params["threshold_policy"])
    default_focus = (study_plan or factorial_plan).focus_seed if (study_plan or factorial_plan) else seeds[0]
    focus = params["focus_seed"] if params["focus_seed"] is not None else default_focus
    if focus not in seeds:
        raise ValueError(f"focus_seed = {focus} has no runs in {repo_relative(records)} (seeds: {seeds}); set "
                         "focus_seed to one of them or null")
    print(f"parameters: {parameters_text(shown_parameters(params))}")
    print("versions:", ", ".join(f"{lib} {version}" for lib, version in runtime.library_versions().items()))
    print(f"run records: {repo_relative(records)}; data fingerprint (all runs): {runs[0].info['data_fingerprint']}")
    fingerprinted = all(run.info.get("split_fingerprint") for run in runs if run.arch in ARCHS)
    print("one validation split per replicate, checked on: its validation images"
          + (" and split fingerprints" if fingerprinted else " (these run.json files predate split fingerprints)"))
    if study_plan or factorial_plan:
        shown = study_plan or factorial_plan
        print(f"study plan: studies/{shown.name}.yaml ({shown.document})" + (
            "; a factorial study: the sections after its own describe this profile's two cells only" if factorial_plan
            else ""))
    return ComparisonSetup(params, index, runs, len(dropped), focus, study_plan, factorial_plan)


def factorial_section(setup: ComparisonSetup) -> dict | None:
    """The factorial study's section (``report.factorial``) when the records belong to a factorial plan; else
    nothing (an earlier factorial's files are removed)."""
    return factorial_report.section(setup.params, setup.index.images, setup.index.root, **setup.policy_kwargs())


def runs_section(setup: ComparisonSetup) -> None:
    """Which models and seeds were found, what was randomised, and each model's settings side by side."""
    found = pd.DataFrame({"model": [model_of(run.arch, run.name) for run in setup.runs], "seed": [run.seed for run in setup.runs]})
    seeds = found.groupby("model", sort=False)["seed"].agg(lambda values: ", ".join(map(str, sorted(values))))
    display(readable(seeds.reset_index().rename(columns={"seed": "seeds found"})))
    images = setup.index.images
    children = images.loc[images["split"] == "test", "patient_id"].nunique()
    merged_children = setup.runs[0].test["patient_id"].nunique()
    display(Markdown(discussion.randomised_sources(setup.runs) + f" Byte-identical test images count once: "
                     f"{setup.merged_rows} duplicate rows merged per run, leaving {len(setup.runs[0].test)} test "
                     f"images of {merged_children} children (the folder holds {children} children; a child whose "
                     "only images duplicate another child's is counted with that child). Every patient-level "
                     f"interval resamples these {merged_children} children."))
    recorded = sorted({str(run.info["threshold"].get("policy")) for run in setup.runs if run.arch in ARCHS})
    policy = setup.params["threshold_policy"]
    if recorded != [policy]:
        display(Markdown(f"Each run.json records the threshold its training code chose by "
                         f"{', '.join(POLICY_NAMES.get(name, name) for name in recorded)}; this report does not use "
                         f"it: every run is scored at the pre-registered policy ({POLICY_NAMES[policy]})."))
    trained = {run.name: run for run in setup.runs if run.arch in ARCHS}
    settings = pd.DataFrame({model_title(name): [setting_text(key, run.info["config"].get(key)) for key in SETTINGS]
                             for name, run in trained.items()}, index=[column_label(key) for key in SETTINGS])
    display(readable(settings.reset_index(names="setting")))
    display(Markdown("**Where and how long each replicate trained** (training time of each model, from its run.json):"))
    display(readable(replicate_costs(setup.runs), digits=1))


def replicate_costs(runs: list[compare.Run]) -> pd.DataFrame:
    """Per replicate: the CPU(s) its models trained on and each model's training time in minutes."""
    rows = []
    for seed, seed_runs in study.runs_by_seed([run for run in runs if run.arch in ARCHS]).items():
        cpus = sorted({run.cpu for run in seed_runs})
        rows.append({"seed": seed, "CPU": ", ".join(cpus),
                     **{f"{model_title(run.name)} training (min)": run.info["timing"]["training"] / 60
                        for run in seed_runs}})
    return pd.DataFrame(rows)


def study_section(setup: ComparisonSetup) -> dict[str, pd.DataFrame]:
    """The headline: mean ± SD (min–max) across seeds at the pre-registered policy; writes seeds.csv,
    comparison.csv and the headline as shown (comparison.md) next to the report."""
    trained = [run for run in setup.runs if run.arch in ARCHS]  # seed_study adds each seed's ensemble itself
    tables = study.seed_study(trained, setup.params["threshold_policy"], setup.reference, **setup.policy_kwargs())
    if setup.plan:  # the ensemble against the plan's other model too: a comparison the plan did not make
        against_compared = study.seed_differences(tables["per_seed"], setup.plan.compared,
                                                  setup.params["threshold_policy"], models=[ENSEMBLE])
        tables["differences"] = pd.concat([tables["differences"], against_compared], ignore_index=True)
        tables["difference_summary"] = study.summarise_differences(tables["differences"])
    summary = tables["summary"][tables["summary"]["is_primary"]]
    headline = summary.pivot(index="model", columns="metric", values=["mean", "sd", "min", "max", "n_seeds"])
    headline = headline.reindex(setup.models)
    comparison = pd.DataFrame({"model": headline.index,
                               "seeds": headline[("n_seeds", "accuracy")].astype(int)}).reset_index(drop=True)
    for metric in (*HEADLINE_METRICS, "threshold"):
        for stat in ("mean", "sd", "min", "max"):
            comparison[f"{metric}_{stat}"] = headline[(stat, metric)].to_numpy()
    report_dir = Path(setup.params["report_dir"])
    write_atomic(report_dir / COMPARISON_FILE, lambda partial: comparison.to_csv(partial, index=False))
    shown = headline_table(comparison)
    write_atomic(report_dir / COMPARISON_MARKDOWN, f"# {comparison_title(setup)}\n\n{comparison_context(setup)}\n\n"
                 + markdown_table(shown) + "\n")
    write_atomic(report_dir / SEEDS_FILE, lambda partial: tables["per_seed"].to_csv(partial, index=False))
    display(readable(shown))
    if setup.plan:
        plan_section(setup, tables)
    else:
        (report_dir / STUDY_FILE).unlink(missing_ok=True)  # an earlier plan's decision must not outlive its records
        (report_dir / SEED_PAIRS_FIGURE).unlink(missing_ok=True)
    return tables


def tuned_archs(profile: str) -> list[str]:
    """The architectures a profile gives their own recipe (its ``recipes`` entry): the others train at the shared
    one."""
    return list(read_profile(profile).get("recipes") or {})


def comparison_title(setup: ComparisonSetup) -> str:
    """The headline table's title: the study it belongs to, or the profile's records."""
    named = setup.plan or setup.factorial
    return f"Comparison: {named.title}" if named else f"Comparison of the runs of profile {setup.params['profile']}"


def comparison_context(setup: ComparisonSetup) -> str:
    """What the headline table holds: test images, threshold, replicates, and how the models trained."""
    trained = [run for run in setup.runs if run.arch in ARCHS]
    tuned = tuned_archs(setup.params["profile"]) if (PROFILES_DIR / f"{setup.params['profile']}.yaml").is_file() else ()
    return (f"Test set, {len(trained[0].test)} distinct images; threshold {POLICY_NAMES[setup.params['threshold_policy']]}; "
            f"each cell mean ± SD (smallest–largest) across {len({run.seed for run in trained})} replicate(s). "
            + discussion.recipe_sentence(trained, tuned))


def plan_section(setup: ComparisonSetup, tables: dict[str, pd.DataFrame]) -> None:
    """The plan's decision in one sentence, the figure of the replicates, and every expectation stated in advance,
    met or not; writes them (study.json, seed_pairs.png) for the index."""
    study_plan, report_dir = setup.plan, Path(setup.params["report_dir"])
    tuned = tuple(tuned_archs(study_plan.profile))
    recipes = discussion.recipe_sentence(setup.runs, tuned)
    lead, details = discussion.decision(study_plan, tables["difference_summary"], recipes, tuned if tuned else None)
    display(Markdown(f"**{lead}** {details}"))
    per_seed = tables["per_seed"][tables["per_seed"]["is_primary"]]
    compared = tables["difference_summary"][tables["difference_summary"]["model"] == study_plan.compared]
    display(plots.plot_seed_pairs(per_seed, compared, study_plan.reference, study_plan.compared,
                                  study_plan.decision_metrics, NAMES, study_plan.level,
                                  save_to=report_dir / SEED_PAIRS_FIGURE))
    expectations = discussion.expectation_table(study_plan, plan.expectation_results(
        study_plan, tables["summary"], tables["difference_summary"]))
    display(Markdown("**Expected in advance** (the plan's list, each reported met or not):"))
    display(readable(expectations))
    beside = beside_section(setup, tables) if study_plan.beside else None
    differences = discussion.difference_table(tables["difference_summary"], setup.planned_pairs())
    differences["Wilcoxon / sign test p (smallest possible)"] = [  # one column: the index must fit a laptop
        f"{wilcoxon.split(' (')[0]}\u00a0/\u00a0{sign}" for wilcoxon, sign in
        zip(differences["Wilcoxon p (smallest possible)"], differences["sign test p (smallest possible)"])]
    record = {"title": study_plan.title, "kind": study_plan.kind, "plan": f"studies/{study_plan.name}.yaml",
              "document": study_plan.document, "document_added": runtime.adding_commit(study_plan.document),
              "seeds": list(study_plan.seeds), "policy": POLICY_NAMES[study_plan.primary_policy],
              "decision": lead, "decision_details": details, "figure": SEED_PAIRS_FIGURE,
              "differences": table_record(differences[INDEX_DIFFERENCE_COLUMNS]),
              "expectations": table_record(expectations),
              "within_group": table_record(index_within_group(setup)),
              "within_group_notes": within_group_notes(within_group_rows(setup)),
              "beside": None if beside is None else {"plan": f"studies/{study_plan.beside}.yaml",
                                                     "table": table_record(beside)}}
    write_atomic(report_dir / STUDY_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def beside_section(setup: ComparisonSetup, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The earlier study the plan names (``beside``), read from its committed records, next to this one and not
    pooled: per model each study's mean ± SD at its own primary policy and the difference of means (Welch)."""
    study_plan, earlier = setup.plan, plan.load_plan(setup.plan.beside)
    earlier_runs, _ = load_study_runs(REPO_ROOT / earlier.records, setup.index)
    plan.check_runs(earlier, sorted({run.seed for run in earlier_runs}), earlier.primary_policy)
    earlier_tables = study.seed_study(earlier_runs, earlier.primary_policy, setup.reference, **setup.policy_kwargs())
    between = study.between_studies(tables["per_seed"], earlier_tables["per_seed"], study_plan.decision_metrics,
                                    study_plan.level)
    names = ((study_plan.kind, earlier.kind) if study_plan.kind != earlier.kind else (study_plan.name, earlier.name))
    table = discussion.between_studies_table(between, *names)
    display(Markdown(
        f"**Beside the {earlier.title.lower()}** (`studies/{earlier.name}.yaml`, {len(earlier.seeds)} replicates, "
        f"{POLICY_NAMES[earlier.primary_policy]}), never pooled with this study. The two studies differ in their "
        "recipes and in their replicates' seeds, not in the test images; their replicates are independent draws, so "
        "the difference of means has a Welch interval. Where the recipes are the only planned difference, it "
        "estimates what the recipe changed for each model. Each cell: mean ± SD (replicates):"))
    display(readable(table))
    return table


INDEX_DIFFERENCE_COLUMNS = ["comparison", "role", "metric", "mean difference (95% t-interval)", "seeds won / lost",
                            "Wilcoxon / sign test p (smallest possible)"]


def index_within_group(setup: ComparisonSetup) -> pd.DataFrame:
    """The index's compact within-group table: each group (not ``all``), ROC-AUC and accuracy as mean ± SD across
    replicates, beside the always-PNEUMONIA accuracy."""
    summary = within_group_summary(setup, ranges=False)
    return summary.loc[summary["group"] != "all", ["group", "model", "NORMAL", "PNEUMONIA", "roc_auc", "accuracy",
                                                   "always PNEUMONIA: accuracy"]]


def per_seed_section(setup: ComparisonSetup) -> None:
    """Each seed and model at the pre-registered policy, with 95% patient-bootstrap intervals."""
    rows = []
    for seed, seed_runs in study.runs_by_seed(setup.runs).items():
        table = compare.results_table(seed_runs, n_boot=setup.params["n_boot"], seed=setup.params["sampling_seed"])
        for _, row in table.iterrows():
            rows.append({"seed": seed, "model": row["model"], "threshold": row["threshold"],
                         **{metric: with_interval(row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
                            for metric in HEADLINE_METRICS}})
    display(readable(pd.DataFrame(rows)))


def differences_section(setup: ComparisonSetup, tables: dict[str, pd.DataFrame]) -> None:
    """Paired differences to the reference model across seeds (t-interval, Wilcoxon, sign test), then each seed's
    own paired tests (image-level McNemar and DeLong, patient-bootstrap intervals)."""
    display(readable(discussion.difference_table(tables["difference_summary"], setup.planned_pairs())))
    rows = []
    for seed, seed_runs in study.runs_by_seed(setup.runs).items():
        reference = next(run for run in seed_runs if run.arch == setup.reference)
        for run in seed_runs:
            if run.arch in ARCHS and run is not reference:
                pair = compare.compare_pair(run, reference, n_boot=setup.params["n_boot"],
                                            seed=setup.params["sampling_seed"])
                rows.append(discussion.seed_pair_row(seed, pair, model_title(run.name), model_title(reference.name)))
    display(readable(pd.DataFrame(rows), digits=4))


def sensitivity_section(tables: dict[str, pd.DataFrame]) -> None:
    """The same summary at every threshold policy (the sensitivity analysis of the pre-registered choice)."""
    summary = tables["summary"][tables["summary"]["metric"].isin(("threshold", "accuracy", "sensitivity",
                                                                  "specificity"))]
    summary = summary.assign(policy=pd.Categorical(summary["policy"].map(POLICY_NAMES),
                                                   list(dict.fromkeys(summary["policy"].map(POLICY_NAMES)))),
                             model=pd.Categorical(summary["model"], list(dict.fromkeys(summary["model"]))),
                             value=[discussion.across_seeds(row) for _, row in summary.iterrows()])
    table = summary.pivot(index=["model", "policy"], columns="metric", values="value").reset_index()
    display(readable(table[["model", "policy", "threshold", "accuracy", "sensitivity", "specificity"]]))


def within_group_rows(setup: ComparisonSetup) -> pd.DataFrame:
    """Per model, replicate and stored-geometry group holding both classes (and ``all``): the test metrics at the
    pre-registered policy and what always answering PNEUMONIA would score."""
    groups = data.geometry_groups(setup.index.images)
    frames = [compare.within_group_metrics(run.test, setup.index.images, run.threshold, groups)
              .reset_index().assign(model=model_of(run.arch, run.name), seed=run.seed) for run in setup.runs]
    rows = pd.concat(frames, ignore_index=True)
    return rows.assign(always_pneumonia_accuracy=rows["PNEUMONIA"] / rows["images"])


def spread(values: pd.Series, ranges: bool = True) -> str:
    """Values across replicates as ``mean ± SD (min–max)``, or ``mean ± SD`` without ``ranges``."""
    if ranges or is_missing(values.std()):
        return mean_sd_range(values.mean(), values.std(), values.min(), values.max())
    return f"{number(values.mean())} ± {number(values.std())}"


SMALL_GROUP = 30  # a group with fewer test images is too small to read: one image moves accuracy by > 3 points
NEAR_BASELINE = 0.05  # accuracy within this of always answering PNEUMONIA is "barely above" it


def within_group_notes(rows: pd.DataFrame) -> str:
    """What a reader must know before reading the within-group tables, from ``within_group_rows``: groups too
    small to read, whether the pooled ROC-AUC exceeds every group's (the groups are harder than the pooled test),
    and groups where a model's accuracy is barely above always answering PNEUMONIA."""
    means = rows.groupby(["group", "model"], sort=False)[["roc_auc", "accuracy", "always_pneumonia_accuracy",
                                                         "images"]].mean().reset_index()
    groups = means[means["group"] != "all"]
    notes = []
    small = groups.loc[groups["images"] < SMALL_GROUP, "group"].unique()
    if len(small):
        sizes = {group: int(groups.loc[groups["group"] == group, "images"].iloc[0]) for group in small}
        notes.append(f"Too small to read (fewer than {SMALL_GROUP} test images): "
                     + ", ".join(f"{group} ({count} images)" for group, count in sizes.items()) + ".")
    readable_groups = groups[~groups["group"].isin(small)]
    pooled = means[means["group"] == "all"].set_index("model")["roc_auc"]
    above = [model for model, value in pooled.items()
             if (readable_groups.loc[readable_groups["model"] == model, "roc_auc"] < value).all()]
    if above and len(above) == len(pooled):
        notes.append("Every model's pooled ROC-AUC (all test images) is higher than its ROC-AUC within each group: "
                     "within a group the stored size no longer helps.")
    near = readable_groups[readable_groups["accuracy"] - readable_groups["always_pneumonia_accuracy"] < NEAR_BASELINE]
    notes += [f"In the {row.group} group {model_title(row.model)}'s accuracy ({number(row.accuracy)}) is barely above "
              f"always answering PNEUMONIA ({number(row.always_pneumonia_accuracy)})." for row in near.itertuples()]
    return " ".join(notes)


def within_group_summary(setup: ComparisonSetup, ranges: bool = True) -> pd.DataFrame:
    """``within_group_rows`` across replicates: per model and group, each metric as mean ± SD (min–max), without
    the range when ``ranges`` is false (the index's compact table)."""
    rows = within_group_rows(setup)
    summary = []
    for (group, model), part in rows.groupby(["group", "model"], sort=False):
        first = part.iloc[0]
        summary.append({"group": group, "model": model, "NORMAL": int(first["NORMAL"]),
                        "PNEUMONIA": int(first["PNEUMONIA"]),
                        **{metric: spread(part[metric], ranges) for metric in HEADLINE_METRICS},
                        "always PNEUMONIA: accuracy": first["always_pneumonia_accuracy"]})
    return pd.DataFrame(summary)


def within_group_intervals(setup: ComparisonSetup) -> pd.DataFrame:
    """The focus replicate's within-group metrics with 95% intervals that resample the group's test children."""
    groups = data.geometry_groups(setup.index.images)
    rows = []
    for run in setup.focus_runs():
        scores = compare.within_group_intervals(run.test, setup.index.images, run.threshold, groups,
                                                n_boot=setup.params["n_boot"], seed=setup.params["sampling_seed"])
        for group, part in scores.groupby("group", sort=False):
            intervals = {row.metric: with_interval(row.estimate, row.ci_low, row.ci_high) for row in part.itertuples()}
            rows.append({"group": group, "model": model_of(run.arch, run.name), **intervals})
    return pd.DataFrame(rows)


def within_group_section(setup: ComparisonSetup) -> None:
    """Within each stored-geometry group that holds both classes: the metrics across replicates beside the
    always-PNEUMONIA baseline, the focus replicate with intervals, and every replicate's values."""
    display(Markdown(within_group_notes(within_group_rows(setup))))
    display(readable(within_group_summary(setup)))
    display(Markdown(f"**Replicate {setup.focus_seed}, with 95% intervals** (resampling the group's test children; "
                     "with a few dozen children per class the intervals are wide):"))
    display(readable(within_group_intervals(setup)))
    display(Markdown("**Every replicate:**"))
    rows = within_group_rows(setup)
    display(readable(rows[["group", "model", "seed", "NORMAL", "PNEUMONIA", *HEADLINE_METRICS]], digits=3))


def focus_note(setup: ComparisonSetup) -> None:
    """Which replicate the image-level views show, and why that one."""
    why = (f"the designated replicate of {setup.plan.document}" if setup.plan and setup.plan.focus_seed ==
           setup.focus_seed else "set by focus_seed" if setup.params["focus_seed"] is not None else "the smallest seed")
    display(Markdown(f"*Every table and figure from here on shows replicate (seed) {setup.focus_seed} only: {why}.*"))


def focus_tests_section(setup: ComparisonSetup) -> None:
    """Paired tests between every two trained models of the focus seed (McNemar, DeLong, patient bootstrap)."""
    focus_note(setup)
    trained = [run for run in setup.focus_runs() if run.arch in ARCHS]
    for run_a, run_b in itertools.combinations(trained, 2):
        pair = compare.compare_pair(run_b, run_a, n_boot=setup.params["n_boot"], seed=setup.params["sampling_seed"])
        display(Markdown(f"**{model_title(run_b.name)} − {model_title(run_a.name)}, seed {setup.focus_seed}**"))
        display(readable(discussion.pair_table(pair, model_title(run_b.name), model_title(run_a.name)), digits=4))


def focus_curves_section(setup: ComparisonSetup) -> None:
    """ROC (saved as roc_curves.png for the index), precision-recall and calibration of the focus seed."""
    runs = setup.focus_runs()
    display(plots.plot_roc_curves(runs, save_to=Path(setup.params["report_dir"]) / ROC_FIGURE))
    display(plots.plot_pr_curves(runs))
    display(plots.plot_calibration(runs))


def disagreements_section(setup: ComparisonSetup) -> pd.DataFrame:
    """Confusion matrices of the focus seed and how many test images its first two models disagree on (the images
    themselves, across every replicate, are the gallery of ``report.reader.failures_section``)."""
    runs = setup.focus_runs()
    display(plots.plot_confusion_matrices(runs))
    trained = [run for run in runs if run.arch in ARCHS]
    disagree = compare.disagreements(trained[0], trained[1])
    display(Markdown(disagreement_count(disagree, trained[:2], len(trained[0].test))))
    return disagree


def disagreement_count(disagree: pd.DataFrame, runs: list[compare.Run], n_test: int) -> str:
    """How many test images two models of one replicate answer differently, of which class, and who was right."""
    right = disagree["correct"].value_counts()
    counts = ", ".join(f"{model_title(run.name)} is right on {int(right.get(run.name, 0))}" for run in runs)
    classes = ", ".join(f"{count} {label}" for label, count in disagree["label"].value_counts().sort_index().items())
    return (f"The models disagree on **{len(disagree)}** of {n_test} test images in this replicate "
            f"({classes or 'none'}): {counts}. The images themselves, across every replicate, are in the gallery under "
            "*Failures you can see*.")


def gradcam_cases(setup: ComparisonSetup, disagree: pd.DataFrame) -> pd.DataFrame:
    """The focus seed's example images: some the first two models disagree on, then a random sample of the test."""
    first = next(run for run in setup.focus_runs() if run.arch in ARCHS)
    n_examples, seed = setup.params["n_examples"], setup.params["sampling_seed"]
    return pd.concat([disagree[["path", "label"]].sample(min(len(disagree), n_examples), random_state=seed),
                      first.test[["path", "label"]].sample(n_examples, random_state=seed)]).drop_duplicates("path")


def regenerate_text(setup: ComparisonSetup, runs: list[compare.Run]) -> str:
    """The commands that retrain the focus replicate and write its current-method heatmap records."""
    profile, seed = setup.params["profile"], setup.focus_seed
    models_dir = Path(setup.params["runs_dir"]).resolve()  # a relative one is relative to the notebook's folder
    runs_dir = repo_relative(models_dir)
    explains = "; ".join(
        f"`{heatmaps.regenerate_command(run.run_dir, replicate_dir(models_dir, run.arch, seed) / MODEL_FILE)}`"
        for run in runs)
    return (f"To replace them, retrain replicate {seed} (`./run_all.sh --profile {profile} --only 02 --only 03 --set "
            f"\"seeds=[{seed}]\"`), check that it reproduces the committed records (`.venv/bin/python -m "
            f"cxrlib.compare.rerun {runs_dir}`: `python -m cxrlib.explain` refuses a model that does not), then write "
            f"the records: {explains}.")


def gradcam_section(setup: ComparisonSetup, disagree: pd.DataFrame) -> None:
    """Heatmaps of the focus seed's models side by side, disagreements first, from each run's heatmap record (else
    its model file, else an old-method record, labelled so): method and resolution, the examples, the sanity check
    and the share of mass outside the chest box over every test image."""
    trained = [run for run in setup.focus_runs() if run.arch in ARCHS]
    files = {run.name: replicate_dir(setup.params["runs_dir"], run.arch, run.seed) / MODEL_FILE for run in trained}
    found = {run.name: heatmaps.run_heatmap_records(run.run_dir, files[run.name], setup.index.root) for run in trained}
    absent = [run for run in trained if found[run.name] is None]
    if absent:
        display(Markdown(f"The heatmaps need each run's `{GRADCAM_FILE}` record or its model file, which is not in "
                         f"git; {', '.join(model_title(run.name) for run in absent)} of replicate {setup.focus_seed} has "
                         "neither. " + regenerate_text(setup, absent)))
        return
    size = {run.name: run.info["config"]["image_size"] for run in trained}
    display(Markdown("\n\n".join(heatmaps.method_sentence(model_title(run.name), found[run.name], size[run.name])
                                  for run in trained)))
    old = [run for run in trained if explain.is_old(found[run.name].record)]
    if old:
        display(Markdown("The old method's maps are shown as recorded, for PNEUMONIA only, their model files gone. "
                         + regenerate_text(setup, old)))
    display(Markdown(" ".join(([heatmaps.NORMALISATION] if len(old) < len(trained) else [])
                              + ([heatmaps.OLD_NORMALISATION] if old else []))))
    cases = gradcam_cases(setup, disagree)
    relpaths = [Path(path).relative_to(setup.index.root).as_posix() for path in cases["path"]]
    maps = {model_title(run.name): explain.maps_from_record(found[run.name].record, relpaths, setup.index.root,
                                                            size[run.name], run.threshold) for run in trained}
    heatmaps.show_examples(maps, cases, {model_title(run.name): run.threshold for run in trained})
    display(Markdown(heatmaps.warned_examples(maps, cases)))
    display(Markdown(heatmaps.sanity_words()))
    display(readable(pd.DataFrame([heatmaps.summary_row(model_title(run.name), found[run.name], run.threshold)
                                   for run in trained]), percent_columns=(
        "median share outside the box", f"maps warned (> {explain.OUTSIDE_WARNING:.0%} outside)")))
    shares = {model_title(run.name): explain.outside_shares(explain.shown_cells(found[run.name].record, run.threshold))
              for run in trained}
    display(plots.gradcam.plot_outside_shares(shares, explain.OUTSIDE_WARNING, explain.UNIFORM_OUTSIDE))


def discussion_section(setup: ComparisonSetup, tables: dict[str, pd.DataFrame]) -> None:
    """The discussion, every number computed from the tables above."""
    display(Markdown(discussion.discussion(setup.runs, tables, setup.params["threshold_policy"], setup.reference,
                                           setup.planned_pairs())))
