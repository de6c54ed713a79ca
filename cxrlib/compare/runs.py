"""A trained model's results as a ``Run``: reading run directories, checking they form one comparison,
lining up their rows and re-choosing a run's threshold on its validation rows."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cxrlib import evaluate
from cxrlib.data.index import relpath_from_path
from cxrlib.params import RECIPE_PARAMETERS
from cxrlib.contract import (ADDED_RESULT_FIELDS, ARCHS, HISTORY_COLUMNS, HISTORY_FILE, PREDICTION_COLUMNS, PREDICTIONS_FILE,
                             REPLICATE_PREFIX, RUN_RECORD_FILE, targets_of)


@dataclass
class Run:
    """One model's results as saved by the trainer (or built here, for the ensemble)."""

    name: str
    arch: str
    info: dict
    predictions: pd.DataFrame
    threshold: float
    history: pd.DataFrame | None = None
    run_dir: Path | None = None
    threshold_info: dict = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        """The replicate's training seed (run.json 'seed'); None for runs built here without one."""
        return self.info.get("seed")

    def threshold_policy(self) -> tuple[str | None, dict]:
        """The recorded threshold policy and its ``evaluate.choose_threshold`` keywords: run.json's youden_delta is
        ``delta``, and a fixed policy's threshold is the run's own value unless the record names another."""
        recorded = self.threshold_info
        fixed = self.threshold if recorded.get("policy") == "fixed" else None
        keywords = {"target_sensitivity": recorded.get("target_sensitivity"),
                    "delta": recorded.get("delta", recorded.get("youden_delta")),
                    "fixed_threshold": recorded.get("fixed_threshold", fixed)}
        return recorded.get("policy"), {key: value for key, value in keywords.items() if value is not None}

    @property
    def cpu(self) -> str:
        """The CPU the run trained on as its run.json names it (``recorded_cpu``)."""
        return recorded_cpu(self.info.get("device", {}))

    @property
    def val(self) -> pd.DataFrame:
        """Validation rows (used only to choose the threshold)."""
        return self.predictions[self.predictions["subset"] == "val"].reset_index(drop=True)

    @property
    def test(self) -> pd.DataFrame:
        """Test rows, with ``pred`` (0/1 at the chosen threshold) and ``correct`` columns."""
        test = self.predictions[self.predictions["subset"] == "test"].reset_index(drop=True)
        pred = evaluate.predict_labels(test["prob"], self.threshold)
        return test.assign(pred=pred, correct=pred == test["target"].to_numpy())


# ---------------------------------------------------------------- loading

def recorded_cpu(device: dict) -> str:
    """The CPU a run.json ``device`` entry names, as ``cpu_kind`` would: its ``cpu_kind`` ('AMD EPYC (avx2)');
    in records from before that key, the model with its bf16 extensions, or the model alone when it lists none."""
    if device.get("cpu_kind"):
        return str(device["cpu_kind"])
    bf16 = device.get("cpu_bf16") or []
    return f"{device.get('cpu', 'unknown CPU')} ({', '.join(bf16)})" if bf16 else str(device.get("cpu", "unknown CPU"))


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; errors say which run file is missing or broken."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {path.parent} a finished run directory from cxrlib.train?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run training or fix the file") from error


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """The CSV table in ``path``; error if it is missing or lacks one of the ``required`` columns."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {path.parent} a finished run directory from cxrlib.train?")
    frame = pd.read_csv(path)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected at least {list(required)}")
    return frame


def _check_predictions(predictions: pd.DataFrame, source: Path | str) -> pd.DataFrame:
    """Validate the predictions contract: subsets, 0/1 targets matching labels, probabilities in [0, 1]."""
    subsets = set(predictions["subset"])
    if not {"val", "test"} <= subsets:
        raise ValueError(f"{source} needs both 'val' and 'test' rows in column 'subset', found {sorted(subsets)}")
    probs = predictions["prob"].to_numpy(dtype=float)
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{source}: column 'prob' must hold finite probabilities in [0, 1]")
    expected_target = targets_of(predictions["label"])
    if not (predictions["target"].astype(int) == expected_target).all():
        raise ValueError(f"{source}: 'target' must be 1 exactly where 'label' is PNEUMONIA")
    duplicated = predictions.duplicated(["subset", "path"])
    if duplicated.any():
        raise ValueError(f"{source}: {duplicated.sum()} duplicated (subset, path) rows, "
                         f"e.g. {predictions.loc[duplicated, 'path'].iloc[0]}")
    return predictions.assign(target=predictions["target"].astype(int), path=predictions["path"].map(relpath_from_path))


def load_run(run_dir: str | Path, data_root: str | Path | None = None) -> Run:
    """Read a run directory (run.json, predictions.csv, history.csv) into a ``Run``.

    Prediction ``path``s name images relative to the data root (``split/label/file``, whatever machine wrote the
    record); with ``data_root`` they are joined to it, so the images can be opened. A setting the record's
    ``config`` lacks had the value it had before run.json recorded it (``contract.ADDED_RESULT_FIELDS``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; train the model first (cxrlib.train)")
    info = _read_json(run_dir / RUN_RECORD_FILE)
    if isinstance(info.get("config"), dict):
        info["config"] = {**ADDED_RESULT_FIELDS, **info["config"]}
    threshold_info = info.get("threshold")
    if not isinstance(threshold_info, dict) or not isinstance(threshold_info.get("value"), (int, float)):
        raise ValueError(f"{run_dir / RUN_RECORD_FILE} needs 'threshold': {{'policy': ..., 'value': <float>}} "
                         "chosen on the validation rows")
    predictions = _check_predictions(_read_csv(run_dir / PREDICTIONS_FILE, PREDICTION_COLUMNS),
                                     run_dir / PREDICTIONS_FILE)
    if data_root is not None:
        predictions["path"] = [str(Path(data_root) / relpath) for relpath in predictions["path"]]
    history = _read_csv(run_dir / HISTORY_FILE, HISTORY_COLUMNS)
    return Run(name=info.get("name", run_dir.name), arch=info.get("arch", run_dir.name), info=info,
               predictions=predictions, threshold=float(threshold_info["value"]), history=history,
               run_dir=run_dir, threshold_info=threshold_info)


# Run settings that may differ between runs that belong in one comparison: the replicate's seeds, the model,
# the threshold policy (every report recomputes each policy on validation) and how a run was shown or cached.
PER_RUN_SETTINGS = ("arch", "seed", "split_seed", "name", "threshold_policy", "target_sensitivity", "youden_delta",
                    "verbose", "feature_cache_dir", "data_cache", "latency_repeats", "fit_safeguards", "stress_test",
                    "strategy")


def find_run_dirs(runs_dir: str | Path) -> list[Path]:
    """Every finished run directory under ``runs_dir``: ``<arch>/seed-<k>/`` (and older ``<arch>/``) with run.json."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir} does not exist; train the models first (notebooks 02 and 03, e.g. "
                                "./run_all.sh --profile smoke) or point runs_dir at a folder of run directories")
    found = sorted(path.parent for path in runs_dir.glob(f"*/{RUN_RECORD_FILE}"))
    found += sorted(path.parent for path in runs_dir.glob(f"*/{REPLICATE_PREFIX}*/{RUN_RECORD_FILE}"))
    return found


def _settings_that_differ(runs: Sequence[Run], ignored: Sequence[str] = PER_RUN_SETTINGS) -> dict[str, set]:
    """Training settings (run.json 'config') whose values differ between runs, apart from the `ignored` ones."""
    keys = set().union(*(run.info.get("config", {}) for run in runs)) - set(ignored)
    values = {key: {json.dumps(run.info.get("config", {}).get(key), sort_keys=True) for run in runs} for key in keys}
    return {key: seen for key, seen in values.items() if len(seen) > 1}


def _protocol_differences(runs: Sequence[Run]) -> dict[str, set]:
    """Settings that break one protocol: any difference within an architecture, or across architectures
    outside their recipes (a tuned profile gives each architecture its own RECIPE_PARAMETERS)."""
    differ = {}
    for arch in {run.arch for run in runs}:
        differ.update(_settings_that_differ([run for run in runs if run.arch == arch]))
    differ.update(_settings_that_differ(runs, (*PER_RUN_SETTINGS, *RECIPE_PARAMETERS)))
    return differ


def load_runs(runs_dir: str | Path, data_root: str | Path | None = None) -> list[Run]:
    """Every finished run under ``runs_dir``, ordered by seed then model, checked to form one comparison.

    All runs must come from the same data (data_fingerprint) and the same training settings apart from the seeds
    (and, across architectures, their per-architecture recipes: cxrlib.params.RECIPE_PARAMETERS);
    the runs of one seed must share their validation split: the same validation images in predictions.csv, and
    the same split_fingerprint where run.json records one (records from before it was added have none).
    ``data_root``: as in ``load_run``.
    """
    run_dirs = find_run_dirs(runs_dir)
    if not run_dirs:
        raise FileNotFoundError(f"no finished run ({RUN_RECORD_FILE}) under {runs_dir}; train the models first, e.g. "
                                "./run_all.sh --profile smoke --only 02 --only 03")
    runs = [load_run(run_dir, data_root) for run_dir in run_dirs]
    fingerprints = {run.info.get("data_fingerprint") for run in runs}
    if len(fingerprints) > 1:
        raise ValueError(f"the runs under {runs_dir} were trained on different data (data fingerprints "
                         f"{sorted(map(str, fingerprints))}); retrain them on one copy of the data or move the odd ones out")
    differ = _protocol_differences(runs)
    if differ:
        detail = "; ".join(f"{key}: {sorted(values)}" for key, values in sorted(differ.items()))
        raise ValueError(f"the runs under {runs_dir} differ in training settings ({detail}); a comparison needs one "
                         "protocol: retrain them with one profile or move the odd ones to another folder")
    for seed in sorted({run.seed for run in runs}):
        seed_runs = [run for run in runs if run.seed == seed]
        splits = {run.info.get("split_fingerprint") for run in seed_runs} - {None}
        validation = {frozenset(run.val["path"].map(relpath_from_path)) for run in seed_runs}
        if len(splits) > 1 or len(validation) > 1:
            raise ValueError(f"the runs of seed {seed} under {runs_dir} used different validation splits "
                             f"({'split fingerprints' if len(splits) > 1 else 'validation images'} differ); "
                             "retrain them with the same split_seed")
    return sorted(runs, key=lambda run: (run.seed, ARCHS.index(run.arch) if run.arch in ARCHS else len(ARCHS), run.name))


# ---------------------------------------------------------------- alignment and thresholds

def aligned_subset(runs: Sequence[Run], subset: str = "test") -> list[pd.DataFrame]:
    """The ``subset`` rows of every run in the first run's order; error if the runs saw different images."""
    reference = runs[0].predictions[runs[0].predictions["subset"] == subset].reset_index(drop=True)
    aligned = [reference]
    for run in runs[1:]:
        frame = run.predictions[run.predictions["subset"] == subset].set_index("path")
        only_reference = set(reference["path"]) - set(frame.index)
        only_other = set(frame.index) - set(reference["path"])
        if only_reference or only_other:
            examples = sorted(only_reference | only_other)[:3]
            raise ValueError(
                f"runs {runs[0].name!r} and {run.name!r} were evaluated on different {subset} images "
                f"({len(only_reference)} only in the first, {len(only_other)} only in the second, e.g. {examples}); "
                "compare runs made from the same data (same data_fingerprint and split seed)")
        frame = frame.loc[reference["path"]].reset_index()
        if not (frame["target"].to_numpy() == reference["target"].to_numpy()).all():
            raise ValueError(f"runs {runs[0].name!r} and {run.name!r} disagree on the labels of the same {subset} "
                             "images; their predictions.csv files come from different data")
        aligned.append(frame[reference.columns])
    return aligned


def with_policy(run: Run, policy: str, **policy_kwargs) -> Run:
    """The run with its threshold set by ``policy`` on its own validation rows (``evaluate.choose_threshold``)."""
    val = run.val
    threshold = evaluate.choose_threshold(val["target"], val["prob"], policy, **policy_kwargs)
    threshold_info = {"policy": policy, "value": threshold, **policy_kwargs, "chosen_on": "val"}
    return dataclasses.replace(run, threshold=threshold, threshold_info=threshold_info)
