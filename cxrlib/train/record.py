"""The prediction step and the run record: predictions.csv, the validation-only threshold, the safeguards
(OOD detector, calibration), the stress test (stress.csv), latency, run.json.

The best epoch (validation ROC-AUC) predicts val, the threshold is chosen on val, then test is predicted.
"""
import dataclasses
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .. import evaluate, fastops, models, runtime
from ..contract import HISTORY_FILE, MODEL_FILE, OOD_FILE, PREDICTION_COLUMNS, PREDICTIONS_FILE
from ..data import make_dataset
from ..data.index import relpath_from_path
from ..ood.detector import load_detector
from ..ood.fit import fit_safeguards, image_features
from ..stress.record import stress_record, write_stress_record
from ..stress.shifts import load_declaration
from . import cluster
from .phases import TrainingRun


def _predict_subset(run: TrainingRun, model: keras.Model, subset: str, from_features: bool) -> np.ndarray:
    """Probabilities for one subset in row order, from the best model (or its head on cached features)."""
    batch_size = run.config.batch_size
    if from_features:
        pooled = run.subset_features(model, subset, timed=False)
        return models.head_of(model).predict(pooled, batch_size=batch_size, verbose=0).ravel()
    dataset = make_dataset(run.subsets[subset], run.config.image_size, batch_size, cache=None)
    return model.predict(dataset, verbose=0).ravel()


def prediction_rows(rows: pd.DataFrame, subset: str, probs: np.ndarray) -> pd.DataFrame:
    """predictions.csv rows of one subset; `path` is relative to the data root (``split/label/file``), so records
    name the same image on every machine."""
    out = rows[["path", "label", "target", "patient_id"]].copy()
    out["path"] = out["path"].map(relpath_from_path)
    out.insert(1, "subset", subset)
    out["prob"] = probs.astype(np.float64)
    return out[list(PREDICTION_COLUMNS)]


def latency_ms(model: keras.Model, image_size: int, repeats: int) -> float:
    """Median wall time of one single-image forward pass after warm-up, in milliseconds."""
    image = np.zeros((1, image_size, image_size, 3), np.float32)
    for _ in range(3):
        model.predict_on_batch(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_on_batch(image)
        times.append(time.perf_counter() - started)
    return round(1000 * float(np.median(times)), 3)


def record_stress_test(run: TrainingRun, model: keras.Model) -> None:
    """The best model and the run's OOD detector on the test images under every declared shift: stress.csv."""
    started = time.perf_counter()
    record = stress_record(model, load_detector(run.directory / OOD_FILE), run.subsets["test"], load_declaration(),
                           run.config.batch_size)
    write_stress_record(record, run.directory)
    run.state.timing["stress"] = time.perf_counter() - started


def predict_and_record(run: TrainingRun, model: keras.Model, run_dir: Path) -> dict:
    """Best epoch's weights -> val predictions -> threshold (val only) -> test predictions -> OOD detector (fitted on
    train, threshold on val) and calibration (val) -> stress test (test images under the declared shifts) -> run.json
    content.

    `model` is a full model of the run (its layers receive the best weights); `run_dir` is the run
    directory the record names (the chief's, also on workers that write elsewhere).
    """
    config, state = run.config, run.state
    started = time.perf_counter()
    best = keras.Model(model.input, model.output, name=model.name)  # uncompiled view sharing the layers
    fastops.load_weights(best, run.directory / MODEL_FILE)
    from_features = config.fast_head and not config.finetune_epochs
    val_probs = _predict_subset(run, best, "val", from_features)
    threshold = evaluate.choose_threshold(run.subsets["val"]["target"].to_numpy(), val_probs,
                                          policy=config.threshold_policy, target_sensitivity=config.target_sensitivity,
                                          delta=config.youden_delta)
    predicted = [prediction_rows(run.subsets["val"], "val", val_probs)]
    if "test" in run.subsets:  # absent when the run belongs to a search, which never reads test images
        predicted.append(prediction_rows(run.subsets["test"], "test", _predict_subset(run, best, "test", from_features)))
    predictions = pd.concat(predicted, ignore_index=True)
    predictions.to_csv(run.directory / PREDICTIONS_FILE, index=False)
    state.timing["predict"] = time.perf_counter() - started
    safeguards = {}
    if config.fit_safeguards:
        started = time.perf_counter()
        # the detector reads several backbone layers, so it sees images even when the head was fitted on cached features
        safeguards = fit_safeguards(image_features(best, config.image_size, config.batch_size), run.subsets, val_probs,
                                    run.directory)
        state.timing["safeguards"] = time.perf_counter() - started
    if config.stress_test and "test" in run.subsets:
        record_stress_test(run, best)
    latency = latency_ms(best, config.image_size, config.latency_repeats)
    return {**run_record(run, run_dir, threshold, latency, from_features), **safeguards}


def run_record(run: TrainingRun, run_dir: Path, threshold: float, latency: float, from_features: bool) -> dict:
    """The run.json content (contract in docs/ARCHITECTURE.md).

    `images_per_sec` is training throughput: train images x epochs over the training seconds (feature
    extraction included); `best_epoch` is 0-based like history.csv's `epoch`.
    """
    config, state = run.config, run.state
    environment = runtime.describe_environment()
    training_seconds = sum(state.timing.get(k, 0.0) for k in ("features", "head", "train", "finetune"))
    history = pd.read_csv(run.directory / HISTORY_FILE)
    return {
        "name": config.name or f"{run_dir.parent.name}/{run_dir.name}",
        "arch": config.arch,
        "config": dataclasses.asdict(config),
        "versions": environment["versions"],
        "data_fingerprint": state.data_fingerprint,
        "split_fingerprint": state.split_fingerprint,
        "seed": config.seed,
        "split_seed": config.split_seed,
        "precision": run.precision,
        "strategy": cluster.describe(run.strategy, config.strategy),
        "cpu_speedups": run.cpu_speedups,
        "device": environment["device"],
        "timing": {**{k: round(v, 3) for k, v in state.timing.items()}, "training": round(training_seconds, 3)},
        "images_per_sec": round(state.train_images_seen / training_seconds, 2) if training_seconds else None,
        "peak_memory_mb": environment["peak_memory_mb"],
        "params": state.params,
        "params_mb": state.params_mb,
        "model_size_mb": round((run.directory / MODEL_FILE).stat().st_size / 2**20, 3),
        "latency_ms": latency,
        "best_epoch": state.best_epoch,
        "best_val_auc": state.best_val_auc,
        "epochs_run": int(history["epoch"].max()) + 1,
        "phase_end_epoch": state.phase_end_epoch,
        "fast_head": config.fast_head,
        "predicted_from": "cached_features" if from_features else "images",
        "feature_cache_hits": state.feature_cache_hits,
        "starts": state.starts,
        "counts": {name: int(len(rows)) for name, rows in run.subsets.items()},
        "threshold": {"policy": config.threshold_policy, "value": threshold,
                      "target_sensitivity": config.target_sensitivity, "youden_delta": config.youden_delta,
                      "chosen_on": "val"},
    }
