"""The sections of the comparison notebook (04): any number of models x seeds, read from run records.

Runs come from ``report_dir/runs/<arch>/seed-<k>/`` (the records the training notebooks copy there, and the
committed study); model files for Grad-CAM from ``runs_dir``. Byte-identical test images count once; every
threshold is set on validation by the pre-registered policy; intervals resample test patients.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from cxrlib import compare, data, explain, models, plots, runtime, study
from cxrlib.contract import (ARCHS, COMPARISON_FILE, COMPARISON_MARKDOWN, HEADLINE_METRICS, MODEL_FILE, PROFILES_DIR,
                             RECORDS_DIR, ROC_FIGURE, SEEDS_FILE, model_of, replicate_dir, repo_relative)
from cxrlib.files import write_atomic
from cxrlib.data import audit
from cxrlib.params import notebook_parameters, policy_kwargs
from cxrlib.report import discussion
from cxrlib.report.format import POLICY_NAMES, headline_table, model_title, readable, with_interval
from cxrlib.report.training import shown_parameters

# Settings shown side by side for every model (a difference between models would show here).
SETTINGS = ("image_size", "weights", "train_base", "epochs", "finetune_epochs", "batch_size", "learning_rate",
            "lr_schedule", "label_smoothing", "augment", "head_units", "dropout", "precision")


@dataclass
class ComparisonSetup:
    """The checked parameters, the data index and every run (duplicates merged) at the pre-registered policy."""

    params: dict
    index: data.DatasetIndex
    runs: list[compare.Run]  # models and ensembles, every seed, thresholds by the pre-registered policy
    merged_rows: int
    focus_seed: int

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

    def focus_runs(self) -> list[compare.Run]:
        """The runs of the seed shown image by image."""
        return [run for run in self.runs if run.seed == self.focus_seed]


def setup(namespace: dict) -> ComparisonSetup:
    """Check parameters, load and check every run record, merge duplicates, add the per-seed ensembles."""
    params = notebook_parameters(namespace, "compare")
    records = Path(params["report_dir"]) / RECORDS_DIR
    if not records.is_dir() or not compare.find_run_dirs(records):
        profile = params["profile"] if (PROFILES_DIR / f"{params['profile']}.yaml").is_file() else "smoke"
        raise FileNotFoundError(f"no run records in {repo_relative(records)}: train the models first, e.g. "
                                f"./run_all.sh --profile {profile} --only 02 --only 03 (or run notebooks 2 and 3 "
                                "with this report_dir)")
    runs = compare.load_runs(records)
    index = data.scan_dataset(data.locate_data(params["data_dir"]))
    runs, dropped = compare.merge_duplicates(runs, index.images)
    with_ensembles = study.add_seed_ensembles(runs)
    runs = [compare.with_policy(run, params["threshold_policy"], **policy_kwargs(params)) for run in with_ensembles]
    seeds = sorted({run.seed for run in runs})
    focus = params["focus_seed"] if params["focus_seed"] is not None else seeds[0]
    if focus not in seeds:
        raise ValueError(f"focus_seed = {focus} has no runs in {repo_relative(records)} (seeds: {seeds}); set "
                         "focus_seed to one of them or null")
    print(f"parameters: {shown_parameters(params)}")
    print("versions:", ", ".join(f"{lib} {version}" for lib, version in runtime.library_versions().items()))
    print(f"run records: {repo_relative(records)}; data fingerprint (all runs): {runs[0].info['data_fingerprint']}")
    return ComparisonSetup(params, index, runs, len(dropped), focus)


def runs_section(setup: ComparisonSetup) -> None:
    """Which models and seeds were found, what was randomised, and each model's settings side by side."""
    found = pd.DataFrame({"model": [model_of(run.arch, run.name) for run in setup.runs], "seed": [run.seed for run in setup.runs]})
    seeds = found.groupby("model", sort=False)["seed"].agg(lambda values: ", ".join(map(str, sorted(values))))
    display(readable(seeds.reset_index().rename(columns={"seed": "seeds found"})))
    display(Markdown(discussion.randomised_sources(setup.runs) + f" Byte-identical test images count once: "
                     f"{setup.merged_rows} duplicate rows merged per run."))
    trained = {run.name: run for run in setup.runs if run.arch in ARCHS}
    settings = pd.DataFrame({model_title(name): [str(run.info["config"].get(key)) for key in SETTINGS]
                             for name, run in trained.items()}, index=list(SETTINGS))
    display(readable(settings.reset_index(names="setting")))


def study_section(setup: ComparisonSetup) -> dict[str, pd.DataFrame]:
    """The headline: mean ± SD (min–max) across seeds at the pre-registered policy; writes seeds.csv and
    comparison.csv next to the report."""
    trained = [run for run in setup.runs if run.arch in ARCHS]  # seed_study adds each seed's ensemble itself
    tables = study.seed_study(trained, setup.params["threshold_policy"], setup.reference, **setup.policy_kwargs())
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
    write_atomic(report_dir / COMPARISON_MARKDOWN, comparison.to_markdown(index=False, floatfmt=".4g") + "\n")
    write_atomic(report_dir / SEEDS_FILE, lambda partial: tables["per_seed"].to_csv(partial, index=False))
    display(readable(headline_table(comparison)))
    return tables


def per_seed_section(setup: ComparisonSetup) -> None:
    """Each seed and model at the pre-registered policy, with 95% patient-bootstrap intervals."""
    rows = []
    for seed, seed_runs in study.runs_by_seed(setup.runs).items():
        table = compare.results_table(seed_runs, n_boot=setup.params["n_boot"], seed=setup.params["seed"])
        for _, row in table.iterrows():
            rows.append({"seed": seed, "model": row["model"], "threshold": row["threshold"],
                         **{metric: with_interval(row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
                            for metric in HEADLINE_METRICS}})
    display(readable(pd.DataFrame(rows)))


def differences_section(setup: ComparisonSetup, tables: dict[str, pd.DataFrame]) -> None:
    """Paired differences to the reference model across seeds (t-interval, Wilcoxon, sign test), then each seed's
    own paired tests (image-level McNemar and DeLong, patient-bootstrap intervals)."""
    display(readable(discussion.difference_table(tables["difference_summary"])))
    rows = []
    for seed, seed_runs in study.runs_by_seed(setup.runs).items():
        reference = next(run for run in seed_runs if run.arch == setup.reference)
        for run in seed_runs:
            if run.arch in ARCHS and run is not reference:
                pair = compare.compare_pair(run, reference, n_boot=setup.params["n_boot"], seed=setup.params["seed"])
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


def within_group_section(setup: ComparisonSetup) -> None:
    """Test ROC-AUC and accuracy within each stored-geometry group that holds both classes."""
    groups = audit.geometry_groups(setup.index.images)
    frames = [audit.within_group_metrics(run.test, setup.index.images, run.threshold, groups)
              .reset_index().assign(model=model_of(run.arch, run.name), seed=run.seed) for run in setup.runs]
    within = pd.concat(frames)
    summary = within.groupby(["model", "group"], sort=False).agg(
        images=("images", "first"), NORMAL=("NORMAL", "first"), PNEUMONIA=("PNEUMONIA", "first"),
        roc_auc=("roc_auc", "mean"), roc_auc_sd=("roc_auc", "std"), accuracy=("accuracy", "mean"),
        accuracy_sd=("accuracy", "std"))
    display(readable(summary.reset_index()))


def focus_tests_section(setup: ComparisonSetup) -> None:
    """Paired tests between every two trained models of the focus seed (McNemar, DeLong, patient bootstrap)."""
    trained = [run for run in setup.focus_runs() if run.arch in ARCHS]
    for run_a, run_b in itertools.combinations(trained, 2):
        pair = compare.compare_pair(run_b, run_a, n_boot=setup.params["n_boot"], seed=setup.params["seed"])
        display(Markdown(f"**{model_title(run_b.name)} − {model_title(run_a.name)}, seed {setup.focus_seed}**"))
        display(readable(discussion.pair_table(pair, model_title(run_b.name), model_title(run_a.name)), digits=4))


def focus_curves_section(setup: ComparisonSetup) -> None:
    """ROC (saved as roc_curves.png for the index), precision-recall and calibration of the focus seed."""
    runs = setup.focus_runs()
    display(plots.plot_roc_curves(runs, save_to=Path(setup.params["report_dir"]) / ROC_FIGURE))
    display(plots.plot_pr_curves(runs))
    display(plots.plot_calibration(runs))


def disagreements_section(setup: ComparisonSetup) -> pd.DataFrame:
    """Confusion matrices of the focus seed and the test images its first two models disagree on."""
    runs = setup.focus_runs()
    display(plots.plot_confusion_matrices(runs))
    trained = [run for run in runs if run.arch in ARCHS]
    disagree = compare.disagreements(trained[0], trained[1])
    display(Markdown(discussion.disagreement_sentence(disagree, trained[:2], len(trained[0].test))))
    display(readable(discussion.disagreement_table(disagree, trained[:2]).head(20)))
    return disagree


def gradcam_section(setup: ComparisonSetup, disagree: pd.DataFrame) -> None:
    """Grad-CAM of the focus seed's models side by side, disagreements first (needs their model files)."""
    trained = [run for run in setup.focus_runs() if run.arch in ARCHS]
    files = {run.name: replicate_dir(setup.params["runs_dir"], run.arch, run.seed) / MODEL_FILE for run in trained}
    missing = [repo_relative(path) for path in files.values() if not path.is_file()]
    if missing:
        display(Markdown(f"Grad-CAM needs the trained model files, which are not in git ({', '.join(missing)} "
                         f"missing): train seed {setup.focus_seed} with notebooks 02 and 03 to see it."))
        return
    n_examples, seed = setup.params["n_examples"], setup.params["seed"]
    cases = pd.concat([disagree[["path", "label"]].sample(min(len(disagree), n_examples), random_state=seed),
                       trained[0].test[["path", "label"]].sample(n_examples, random_state=seed)]).drop_duplicates("path")
    display(explain.plot_gradcam_comparison({model_title(r.name): models.load_model(files[r.name]) for r in trained},
                                    list(cases["path"]), list(cases["label"]),
                                    {model_title(r.name): r.threshold for r in trained}))


def discussion_section(setup: ComparisonSetup, tables: dict[str, pd.DataFrame]) -> None:
    """The discussion, every number computed from the tables above."""
    display(Markdown(discussion.discussion(setup.runs, tables, setup.params["threshold_policy"], setup.reference)))
