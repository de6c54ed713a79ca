"""The sections of a training notebook (02, 03, ...): each function shows one section for one backbone.

A training notebook is prose plus one call per section; what differs between architectures comes from the
backbone registry (cxrlib/backbones.py). Training and copying the records is ``cxrlib.train.replicates``' job;
these functions show what it did.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cxrlib import bootstrap, compare, data, explain, models, plots, runtime
from cxrlib.backbones import BACKBONES
from cxrlib.contract import MODEL_FILE, RECORDS_DIR, THRESHOLD_POLICIES, replicate_dir, repo_relative
from cxrlib.params import notebook_parameters, policy_kwargs, replicate_seeds
from cxrlib.report import heatmaps
from cxrlib.report.format import POLICY_NAMES, epoch_number, number, parameters_text, readable, with_interval
from cxrlib.train.replicates import model_size, train_replicate

PATH_PARAMETERS = ("data_dir", "runs_dir", "report_dir")


@dataclass
class TrainingSetup:
    """What every section needs: the architecture, the checked parameters, the data and each replicate's split."""

    arch: str
    params: dict
    index: data.DatasetIndex
    frames: dict[int, pd.DataFrame]  # training seed -> the assign_subsets frame of that replicate
    split_seeds: dict[int, int]  # training seed -> the seed of its patient split

    @property
    def title(self) -> str:
        """The architecture's display name."""
        return BACKBONES[self.arch].title

    def policy_kwargs(self) -> dict:
        """The parameters of the threshold policies, as the profile fixed them."""
        return policy_kwargs(self.params)


def shown_parameters(params: dict) -> dict:
    """The parameters as a report prints them: folders relative to the repository, never absolute."""
    return {name: repo_relative(value) if name in PATH_PARAMETERS and value else value
            for name, value in params.items()}


def setup(namespace: dict, arch: str) -> TrainingSetup:
    """Check the notebook's parameters, find the data, show the introduction and what this run uses."""
    if arch not in BACKBONES:
        raise ValueError(f"ARCH = {arch!r} is not in the backbone registry ({', '.join(BACKBONES)}); "
                         "add an entry to cxrlib/backbones.py or fix the notebook's ARCH line")
    params = notebook_parameters(namespace, "train")
    index = data.scan_dataset(data.locate_data(params["data_dir"]))
    seeds = dict(replicate_seeds(params))
    frames = {seed: data.replicate_frame(index.images, params, split_seed) for seed, split_seed in seeds.items()}
    display(Markdown(f"# Training {BACKBONES[arch].title}\n\n{BACKBONES[arch].intro}"))
    print(f"parameters: {parameters_text(shown_parameters(params))}")
    print("versions:", ", ".join(f"{lib} {version}" for lib, version in runtime.library_versions().items()))
    device = runtime.device_info()
    print(f"device: {device['cpu']}, {device['cpu_affinity']} cores, GPUs: {device['gpus'] or 'none'}; "
          f"precision: {runtime.choose_precision(params['precision'])}")
    print(f"data: {repo_relative(index.root)} ({len(index.images):,} images); fingerprint {index.fingerprint}")
    print("replicates (training seed: split seed): " + ", ".join(f"{s}: {seeds[s]}" for s in seeds))
    return TrainingSetup(arch, params, index, frames, seeds)


def subsets_section(setup: TrainingSetup) -> None:
    """Images and patients per subset and class, for each replicate's split."""
    tables = [data.subset_counts(frame).assign(seed=seed) for seed, frame in setup.frames.items()]
    counts = pd.concat(tables).pivot_table(index=["subset", "label"], columns="seed", values=["images", "patients"],
                                           observed=True)
    counts.columns = [f"{kind}, seed {seed}" for kind, seed in counts.columns]
    display(readable(counts.reset_index(), digits=0))
    if setup.params["subsample_per_class"] is not None:
        display(Markdown(f"**Subsample:** at most {setup.params['subsample_per_class']} images per class and subset; "
                         "the numbers below only show that the pipeline runs."))


def model_size_section(setup: TrainingSetup) -> None:
    """Weights of the model and of the optimizer state, as counts and megabytes."""
    size = model_size(setup.arch, setup.params)
    display(readable(size.reset_index().rename(columns={"kind": "weights", "params": "count", "mb": "MB"}), digits=2))


def train_replicates(setup: TrainingSetup) -> list[compare.Run]:
    """Train, resume or reuse one run per replicate (``train_replicate``, which copies its records next to the
    reports); show what each cost."""
    runs, costs = [], []
    for seed, frame in setup.frames.items():
        run_dir, record = train_replicate(setup.arch, setup.params, seed, setup.split_seeds[seed], frame,
                                          setup.index.fingerprint)
        runs.append(compare.load_run(run_dir, setup.index.root))
        costs.append({"seed": seed, "epochs run": record["epochs_run"], "best epoch": epoch_number(record["best_epoch"]),
                      "training time (min)": record["timing"]["training"] / 60,
                      "training images / s": record["images_per_sec"], "peak memory (MB)": record["peak_memory_mb"],
                      "model file (MB)": record["model_size_mb"], "latency, one image (ms)": record["latency_ms"],
                      "precision": record["precision"]})
    display(readable(pd.DataFrame(costs), digits=1))
    return runs


def history_section(setup: TrainingSetup, runs: list[compare.Run]) -> None:
    """Training and validation curves of each replicate, the saved epoch marked (epochs counted from 1)."""
    for run in runs:
        display(plots.plot_history(run.history, run.info["best_epoch"], title=f"{setup.title}, seed {run.seed}"))


def at_policy(setup: TrainingSetup, run: compare.Run) -> compare.Run:
    """The run at the profile's pre-registered policy, its threshold set on the run's validation rows."""
    return compare.with_policy(run, setup.params["threshold_policy"], **setup.policy_kwargs())


def threshold_section(setup: TrainingSetup, runs: list[compare.Run]) -> None:
    """Every policy's validation threshold and how much it moves over validation resamples (not a CI)."""
    params = setup.params
    rows = []
    for run in runs:
        val = run.val
        stability = bootstrap.threshold_stability(val["target"], val["prob"], THRESHOLD_POLICIES, params["n_boot"],
                                                  seed=run.seed, groups=val["patient_id"], **setup.policy_kwargs())
        for policy, row in stability.iterrows():
            rows.append({"seed": run.seed, "policy": POLICY_NAMES[policy] + (" (pre-registered)" if policy ==
                         params["threshold_policy"] else ""), "threshold": row["threshold"],
                         "middle 95% over validation resamples": f"{number(row['resampled_p2.5'])}–"
                                                                 f"{number(row['resampled_p97.5'])}"})
    display(readable(pd.DataFrame(rows)))
    display(plots.plot_threshold_metrics(at_policy(setup, runs[0]), "val"))


def calibration_section(runs: list[compare.Run]) -> None:
    """The first replicate's validation reliability diagram: its score, and the probability calibrated from it."""
    run = runs[0]
    calibration = run.info.get("calibration")
    if calibration is None:
        display(Markdown(f"Seed {run.seed}'s run has no calibration (trained before cxrlib fitted one); "
                         f"`python -m cxrlib.ood fit {repo_relative(run.run_dir)}` adds it."))
        return
    display(Markdown(f"Seed {run.seed}: the calibrated probability holds where PNEUMONIA is as common as among "
                     f"these validation images ({calibration['prevalence']:.0%})."))
    display(plots.plot_score_calibration(run))


def test_section(setup: TrainingSetup, runs: list[compare.Run]) -> list[compare.Run]:
    """Test metrics at the pre-registered policy with patient-level 95% CIs, duplicates counted once."""
    merged, dropped = compare.merge_duplicates([at_policy(setup, run) for run in runs], setup.index.images)
    display(Markdown(f"Byte-identical test images count once: {len(dropped)} duplicate rows merged."))
    rows = []
    for run in merged:
        test = run.test
        chosen = bootstrap.bootstrap_metrics(test["target"], test["prob"], run.threshold, setup.params["n_boot"],
                                             seed=run.seed, groups=test["patient_id"])
        rows.append({"seed": run.seed, "threshold": run.threshold,
                     **{metric: with_interval(*chosen.loc[metric, ["estimate", "ci_low", "ci_high"]])
                        for metric in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1_macro",
                                       "roc_auc", "pr_auc")}})
    display(readable(pd.DataFrame(rows)))
    display(Markdown(f"**Per-class report, seed {merged[0].seed}**"))
    display(readable(compare.classification_report(merged[0]).reset_index().rename(columns={"index": "class"})))
    return merged


def figures_section(runs: list[compare.Run]) -> None:
    """Confusion matrix and ROC curve of the first replicate at its threshold."""
    display(plots.plot_confusion_matrices(runs[:1]))
    display(plots.plot_roc_curves(runs[:1]))


def examples_section(setup: TrainingSetup, run: compare.Run) -> None:
    """Random test images of each class with the model's prediction."""
    display(plots.plot_sample_predictions(run, n=2 * setup.params["n_examples"], image_size=setup.params["image_size"],
                                  seed=run.seed))


def gradcam_section(setup: TrainingSetup, run: compare.Run) -> None:
    """Heatmaps of test images of each class from the saved best model (the reports' method, ``explain.explainer``),
    each for the class the model chose, named, with the chest box, the warning and the method's resolution."""
    model = models.load_model(run.run_dir / MODEL_FILE)
    examples = run.test.groupby("label").sample(n=setup.params["n_examples"], random_state=run.seed)
    gradcam = explain.explainer(model)
    grid = gradcam.features(np.zeros((1, *model.input_shape[1:]), "float32")).shape[1:3]
    display(Markdown(f"Method: {explain.method_words(gradcam)}, signed (both classes): "
                     f"{heatmaps.resolution(*grid, setup.params['image_size'])}. {heatmaps.NORMALISATION}"))
    maps = explain.gradcam_maps({setup.title: model}, list(examples["path"]), {setup.title: run.threshold})
    heatmaps.show_examples(maps, examples, {setup.title: run.threshold})
    records = replicate_dir(Path(setup.params["report_dir"]) / RECORDS_DIR, setup.arch, run.seed)
    display(Markdown(heatmaps.warned_examples(maps, examples) + " The sanity check and the share outside the chest "
                     "box over every test image are in notebook 04 (from the run's records written by "
                     f"`{heatmaps.regenerate_command(records, run.run_dir / MODEL_FILE)}`)."))


def run_dirs_section(runs: list[compare.Run]) -> None:
    """The files of each replicate's run directory (paths relative to the repository)."""
    rows = [{"run directory": repo_relative(run.run_dir), "file": path.name + ("/" if path.is_dir() else ""),
             "size (KB)": path.stat().st_size / 1024 if path.is_file() else None}
            for run in runs for path in sorted(run.run_dir.iterdir())]
    display(readable(pd.DataFrame(rows), digits=1))
