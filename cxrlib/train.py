"""train(): one resumable training run -> a self-describing run directory (docs/ARCHITECTURE.md).

A run has up to two training phases, then a prediction step:
- `head` (frozen backbone, BatchNorm in inference mode) or `train` (whole network, e.g. from scratch);
  with a frozen base, no augmentation and `use_feature_cache`, the head trains on cached pooled features;
- `finetune` (optional): the best head-phase model with the top blocks unfrozen, at a lower rate;
- `predict`: the best epoch (validation ROC-AUC) predicts val, the threshold is chosen on val, then test.

Every epoch ends by saving the weights and optimizer state (`last.weights.h5`) and the progress
(`state.json`); calling train() again on the same run directory continues from there.
"""
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from . import evaluate, fastops, features, models, runtime
from .data import class_weights, make_dataset

LR_SCHEDULES = ("plateau", "cosine")
STRATEGIES = ("auto", "mirrored", "multiworker", "none")
# Fields that change how a run is shown or cached, not its result: they may differ when resuming.
PRESENTATION_FIELDS = ("verbose", "feature_cache_dir", "data_cache", "latency_repeats", "name")
RUN_FILES = ("model.keras", "last.weights.h5", "state.json", "run.json", "history.csv", "predictions.csv")
PREDICTION_COLUMNS = ["path", "subset", "label", "target", "patient_id", "prob"]


@dataclass
class TrainConfig:
    """Every parameter of a run; notebooks map their papermill parameters onto these names."""

    arch: str
    image_size: int
    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weights: str | None = None
    train_base: bool = True
    finetune_from: str | None = None
    finetune_epochs: int = 0
    finetune_learning_rate: float = 1e-5
    augment: bool = True
    label_smoothing: float = 0.0
    lr_schedule: str = "plateau"
    early_stopping_patience: int | None = 5
    threshold_policy: str = "youden"
    target_sensitivity: float = 0.95
    seed: int = 42
    precision: str = "auto"
    strategy: str = "auto"
    use_feature_cache: bool = True
    verbose: int = 2
    head_units: int = 1024
    dropout: float = 0.5
    plateau_factor: float = 0.2
    plateau_patience: int = 2
    min_learning_rate: float = 1e-7
    deterministic_ops: bool = True
    feature_cache_dir: str | None = None
    data_cache: str | None = "memory"
    latency_repeats: int = 20
    name: str | None = None

    def __post_init__(self):
        for field in ("weights", "feature_cache_dir", "data_cache"):  # paths are kept as str (JSON, comparisons)
            if isinstance(getattr(self, field), os.PathLike):
                setattr(self, field, os.fspath(getattr(self, field)))
        if self.arch not in models.ARCHS:
            raise ValueError(f"arch must be one of {models.ARCHS}, got {self.arch!r}")
        if self.epochs < 1 or self.finetune_epochs < 0:
            raise ValueError(f"epochs must be >= 1 and finetune_epochs >= 0, got {self.epochs}, {self.finetune_epochs}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.finetune_epochs and self.train_base:
            raise ValueError("finetune_epochs > 0 needs train_base=False: fine-tuning follows a frozen-base phase")
        runtime.choose_precision(self.precision)  # validates the name
        if self.threshold_policy not in evaluate.THRESHOLD_POLICIES:
            raise ValueError(f"threshold_policy must be one of {evaluate.THRESHOLD_POLICIES}")

    @property
    def fast_head(self) -> bool:
        """Whether the first phase trains the head on cached features (frozen base, no augmentation)."""
        return self.use_feature_cache and not self.train_base and not self.augment

    def result_fields(self) -> dict:
        """The fields that determine the result (everything but presentation and caching)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in PRESENTATION_FIELDS}


@dataclass
class Phase:
    """One model.fit: its name, the global epoch range and the learning rate it starts with."""

    name: str
    start_epoch: int
    end_epoch: int
    learning_rate: float
    fast: bool = False


# ----------------------------------------------------------------------------- run directory state

def _write_json(path: Path, content: dict) -> None:
    """Write JSON atomically (a kill never leaves half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2, default=_json_default))
    os.replace(partial, path)


def _json_default(value):
    """numpy scalars and paths in JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _new_state(config: TrainConfig, data_fingerprint: str | None) -> dict:
    """Progress of a run that has not trained yet."""
    return {"config": config.result_fields(), "data_fingerprint": data_fingerprint, "phase": None,
            "epoch": 0, "phases_done": [], "phase_end_epoch": {}, "best_val_auc": None, "best_epoch": None,
            "callbacks": {}, "timing": {}, "train_images_seen": 0, "params": None, "starts": 0,
            "feature_cache_hits": {}}


def _check_same_run(saved: dict, config: TrainConfig, data_fingerprint: str | None, run_dir: Path) -> None:
    """Refuse to resume or reuse a run directory made with other parameters or other data."""
    current = config.result_fields()
    changed = {k: (saved["config"].get(k), v) for k, v in current.items() if saved["config"].get(k) != v}
    if changed or saved.get("data_fingerprint") != data_fingerprint:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        if saved.get("data_fingerprint") != data_fingerprint:
            detail += f"{', ' if detail else ''}data_fingerprint differs"
        raise ValueError(f"{run_dir} holds a run with other settings ({detail}); pass overwrite=True "
                         f"to replace it or choose another run directory")


def _clear_run_dir(run_dir: Path) -> None:
    """Remove every file a run writes (and nothing else)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "logs", ignore_errors=True)


def _truncate_history(run_dir: Path, epochs_done: int) -> None:
    """Drop history rows of epochs that were not checkpointed (a kill between CSVLogger and the state)."""
    path = run_dir / "history.csv"
    if path.exists() and path.stat().st_size:
        history = pd.read_csv(path)
        history[history["epoch"] < epochs_done].to_csv(path, index=False)


# ----------------------------------------------------------------------------- callbacks

class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate used in the epoch to the logs (for history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class RunCheckpoint(keras.callbacks.Callback):
    """Per epoch: best model by val_auc -> model.keras; weights + optimizer -> last.weights.h5; -> state.json.

    Runs after EarlyStopping / ReduceLROnPlateau / CSVLogger so the state it saves includes their updates,
    and restores their counters when a phase resumes.
    """

    def __init__(self, run_dir: Path, state: dict, phase: Phase, export_model: keras.Model,
                 watched: dict[str, keras.callbacks.Callback], images_per_epoch: int):
        super().__init__()
        self.run_dir, self.state, self.phase = run_dir, state, phase
        self.export_model, self.watched, self.images_per_epoch = export_model, watched, images_per_epoch
        self.epoch_started = 0.0

    def on_train_begin(self, logs=None):
        saved = self.state["callbacks"] if self.state["phase"] == self.phase.name else {}
        for name, callback in self.watched.items():
            for attribute, value in saved.get(name, {}).items():
                setattr(callback, attribute, value)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        state, val_auc = self.state, float(logs["val_auc"])
        if state["best_val_auc"] is None or val_auc > state["best_val_auc"]:
            self.export_model.save(self.run_dir / "model.partial.keras")
            os.replace(self.run_dir / "model.partial.keras", self.run_dir / "model.keras")
            state["best_val_auc"], state["best_epoch"] = val_auc, epoch
        self.model.save_weights(self.run_dir / "last.partial.weights.h5")
        os.replace(self.run_dir / "last.partial.weights.h5", self.run_dir / "last.weights.h5")
        seconds = time.perf_counter() - self.epoch_started
        state["timing"][self.phase.name] = state["timing"].get(self.phase.name, 0.0) + seconds
        state["train_images_seen"] += self.images_per_epoch
        state["phase"], state["epoch"] = self.phase.name, epoch + 1
        state["callbacks"] = {name: _counters(callback) for name, callback in self.watched.items()}
        if self.model.stop_training or epoch + 1 >= self.phase.end_epoch:
            state["phases_done"].append(self.phase.name)
            state["phase_end_epoch"][self.phase.name] = epoch + 1
            summary = models.parameter_summary(self.export_model, self.model.optimizer)
            state["params"] = {kind: int(count) for kind, count in summary["params"].items()}
            state["params_mb"] = {kind: round(float(mb), 3) for kind, mb in summary["mb"].items()}
        _write_json(self.run_dir / "state.json", state)


def _counters(callback: keras.callbacks.Callback) -> dict:
    """The counters of EarlyStopping / ReduceLROnPlateau that decide their next action."""
    names = ("wait", "best", "cooldown_counter", "stopped_epoch", "best_epoch")
    return {name: float(getattr(callback, name)) if isinstance(getattr(callback, name), np.generic)
            else getattr(callback, name) for name in names if hasattr(callback, name)}


def _callbacks(run_dir: Path, config: TrainConfig, state: dict, phase: Phase, export_model: keras.Model,
               images_per_epoch: int, extra: list) -> list:
    """Learning-rate log, early stopping, LR reduction, CSV and TensorBoard logs, then the run checkpoint."""
    watched = {}
    if config.early_stopping_patience:
        watched["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=config.early_stopping_patience, verbose=1)
    if config.lr_schedule == "plateau":
        watched["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor="val_auc", mode="max", factor=config.plateau_factor, patience=config.plateau_patience,
            min_lr=config.min_learning_rate, verbose=1)
    logs = [keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False)]
    checkpoint = RunCheckpoint(run_dir, state, phase, export_model, watched, images_per_epoch)
    return [LearningRateLogger(), *watched.values(), *logs, checkpoint, *extra]


# ----------------------------------------------------------------------------- strategy, model, data

def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """`auto`: MirroredStrategy with several GPUs, else the default; `mirrored` on CPUs uses every logical CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def _seed_everything(config: TrainConfig) -> None:
    """Fix Python/NumPy/TF/Keras seeds (init, dropout, shuffling, augmentation) and, if asked, op determinism."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def _build(config: TrainConfig) -> keras.Model:
    """The full model for this config, seeded, with the CPU speed fixes applied."""
    _seed_everything(config)
    model = models.build_model(config.arch, config.image_size, weights=config.weights,
                               train_base=config.train_base, head_units=config.head_units, dropout=config.dropout)
    return fastops.optimize_for_cpu(model)


def _compile(model: keras.Model, config: TrainConfig, phase: Phase, steps_per_epoch: int) -> None:
    """Optimizer (fastops), class-weighted BCE with optional label smoothing, accuracy and ROC-AUC."""
    learning_rate = phase.learning_rate
    if config.lr_schedule == "cosine":
        decay_steps = max(1, (phase.end_epoch - phase.start_epoch) * steps_per_epoch)
        learning_rate = keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps)
    model.compile(optimizer=fastops.make_optimizer(config.optimizer, learning_rate),
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                           keras.metrics.AUC(name="auc", num_thresholds=1000)])


def _subsets(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """train / val / test rows of an assign_subsets frame, checked for what training needs."""
    required = {"path", "subset", "label", "target", "patient_id"}
    missing = required - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks columns {sorted(missing)}; pass the output of cxrlib.data.assign_subsets")
    subsets = {name: frame[frame["subset"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    for name, rows in subsets.items():
        if rows.empty:
            raise ValueError(f"frame has no `{name}` rows; assign_subsets must give train, val and test")
    for name in ("train", "val"):
        if subsets[name]["target"].nunique() < 2:
            raise ValueError(f"the {name} subset holds one class only; ROC-AUC and class weights need both")
    return subsets


def _first_phase(config: TrainConfig) -> Phase:
    """`head` (frozen base; on cached features when possible) or `train` (whole network)."""
    return Phase("train" if config.train_base else "head", 0, config.epochs, config.learning_rate,
                 fast=config.fast_head)


def _finetune_phase(config: TrainConfig, start_epoch: int) -> Phase:
    """Fine-tuning continues the epoch count where the head phase ended (early stopping may end it sooner)."""
    return Phase("finetune", start_epoch, start_epoch + config.finetune_epochs, config.finetune_learning_rate)


# ----------------------------------------------------------------------------- training

class _Context:
    """What every phase needs: run dir, config, subsets, state, strategy, extra callbacks."""

    def __init__(self, run_dir, config, subsets, state, strategy, precision, extra_callbacks):
        self.run_dir, self.config, self.subsets, self.state = run_dir, config, subsets, state
        self.strategy, self.precision, self.extra_callbacks = strategy, precision, list(extra_callbacks)
        self._extractor = None

    def extractor(self, model: keras.Model) -> keras.Model:
        """feature_model(model), reused while the layers are the same (one predict trace per run, not per subset)."""
        if self._extractor is None or self._extractor.get_layer("pool") is not model.get_layer("pool"):
            self._extractor = features.feature_model(model)
        return self._extractor

    def features(self, model: keras.Model, subset: str, timed: bool = True) -> np.ndarray:
        """Cached pooled features of one subset (`timed`: add the time to timing['features'])."""
        started = time.perf_counter()
        config = self.config
        values, hit = features.cached_features(
            self.extractor(model), self.subsets[subset], arch=config.arch, image_size=config.image_size,
            precision=self.precision, weights=config.weights, seed=config.seed, cache_dir=config.feature_cache_dir,
            batch_size=config.batch_size, desc=f"{config.arch} {subset} features")
        if timed:
            timing = self.state["timing"]
            timing["features"] = timing.get("features", 0.0) + time.perf_counter() - started
        self.state["feature_cache_hits"][subset] = hit
        return values


def _phase_data(ctx: _Context, model: keras.Model, phase: Phase):
    """(fit_model, train_ds, val_ds): the head on cached features, or the full model on images."""
    config, subsets = ctx.config, ctx.subsets
    if phase.fast:
        head = models.head_of(model)
        train_ds = features.feature_dataset(ctx.features(model, "train"), subsets["train"]["target"].to_numpy(),
                                            config.batch_size, training=True, seed=config.seed)
        val_ds = features.feature_dataset(ctx.features(model, "val"), subsets["val"]["target"].to_numpy(),
                                          config.batch_size)
        return head, train_ds, val_ds
    train_ds = make_dataset(subsets["train"], config.image_size, config.batch_size, training=True,
                            augment=config.augment, seed=config.seed, cache=config.data_cache)
    val_ds = make_dataset(subsets["val"], config.image_size, config.batch_size, cache=config.data_cache)
    return model, train_ds, val_ds


def _prepare_phase(ctx: _Context, phase: Phase, resuming: bool) -> keras.Model:
    """The full model as the phase starts: fresh, from the best earlier epoch (fine-tuning), or as last saved."""
    model = _build(ctx.config)
    if phase.name == "finetune":
        if not resuming:
            model.load_weights(ctx.run_dir / "model.keras")
        models.unfreeze_from(model, ctx.config.finetune_from)
    return model


def _run_phase(ctx: _Context, phase: Phase) -> keras.Model:
    """Train one phase (continuing it if state.json says it was interrupted); returns the full model."""
    config, state, run_dir = ctx.config, ctx.state, ctx.run_dir
    resuming = state["phase"] == phase.name and state["epoch"] > phase.start_epoch
    with ctx.strategy.scope():
        model = _prepare_phase(ctx, phase, resuming)
        fit_model, train_ds, val_ds = _phase_data(ctx, model, phase)
        steps_per_epoch = math.ceil(len(ctx.subsets["train"]) / config.batch_size)
        _compile(fit_model, config, phase, steps_per_epoch)
        if resuming:
            fit_model.optimizer.build(fit_model.trainable_variables)
            fit_model.load_weights(run_dir / "last.weights.h5")
    export_model = keras.Model(model.input, model.output, name=model.name)
    initial_epoch = state["epoch"] if resuming else phase.start_epoch
    callbacks = _callbacks(run_dir, config, state, phase, export_model, len(ctx.subsets["train"]),
                           ctx.extra_callbacks)
    # The datasets shuffle themselves (seeded); shuffle=False only stops Keras warning that it would ignore it.
    fit_model.fit(train_ds, validation_data=val_ds, epochs=phase.end_epoch, initial_epoch=initial_epoch,
                  class_weight=class_weights(ctx.subsets["train"]), callbacks=callbacks, verbose=config.verbose,
                  shuffle=False)
    return model


# ----------------------------------------------------------------------------- prediction and report

def _predict_subset(ctx: _Context, model: keras.Model, subset: str, from_features: bool) -> np.ndarray:
    """Probabilities for one subset in row order, from the saved best model (or its head on cached features)."""
    config = ctx.config
    if from_features:
        return models.head_of(model).predict(ctx.features(model, subset, timed=False), batch_size=config.batch_size,
                                             verbose=0).ravel()
    dataset = make_dataset(ctx.subsets[subset], config.image_size, config.batch_size, cache=None)
    return model.predict(dataset, verbose=0).ravel()


def _prediction_rows(rows: pd.DataFrame, subset: str, probs: np.ndarray) -> pd.DataFrame:
    """predictions.csv rows of one subset."""
    out = rows[["path", "label", "target", "patient_id"]].copy()
    out.insert(1, "subset", subset)
    out["prob"] = probs.astype(np.float64)
    return out[PREDICTION_COLUMNS]


def _latency_ms(model: keras.Model, image_size: int, repeats: int) -> float:
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


def _predict_and_report(ctx: _Context, model: keras.Model, data_fingerprint: str | None) -> dict:
    """Best epoch's weights (model.keras) -> val predictions -> threshold (val only) -> test predictions -> run.json."""
    config, state, run_dir = ctx.config, ctx.state, ctx.run_dir
    started = time.perf_counter()
    best = keras.Model(model.input, model.output, name=model.name)  # uncompiled view sharing the layers
    best.load_weights(run_dir / "model.keras")
    from_features = config.fast_head and not config.finetune_epochs
    val_probs = _predict_subset(ctx, best, "val", from_features)
    val_targets = ctx.subsets["val"]["target"].to_numpy()
    threshold = evaluate.choose_threshold(val_targets, val_probs, policy=config.threshold_policy,
                                          target_sensitivity=config.target_sensitivity)
    test_probs = _predict_subset(ctx, best, "test", from_features)
    predictions = pd.concat([_prediction_rows(ctx.subsets["val"], "val", val_probs),
                             _prediction_rows(ctx.subsets["test"], "test", test_probs)], ignore_index=True)
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    state["timing"]["predict"] = time.perf_counter() - started
    latency = _latency_ms(best, config.image_size, config.latency_repeats)
    return _run_record(ctx, data_fingerprint, threshold, latency, from_features)


def _run_record(ctx: _Context, data_fingerprint, threshold: float, latency_ms: float, from_features: bool) -> dict:
    """The run.json content (contract in docs/ARCHITECTURE.md).

    `images_per_sec` is training throughput: train images x epochs over the training seconds (feature
    extraction included); `best_epoch` is 0-based like history.csv's `epoch`.
    """
    config, state, run_dir = ctx.config, ctx.state, ctx.run_dir
    environment = runtime.describe_environment()
    training_seconds = sum(state["timing"].get(k, 0.0) for k in ("features", "head", "train", "finetune"))
    history = pd.read_csv(run_dir / "history.csv")
    return {
        "name": config.name or f"{run_dir.parent.name}/{run_dir.name}",
        "arch": config.arch,
        "config": dataclasses.asdict(config),
        "versions": environment["versions"],
        "data_fingerprint": data_fingerprint,
        "seed": config.seed,
        "precision": ctx.precision,
        "strategy": {"name": config.strategy, "replicas": ctx.strategy.num_replicas_in_sync},
        "device": environment["device"],
        "timing": {**{k: round(v, 3) for k, v in state["timing"].items()}, "training": round(training_seconds, 3)},
        "images_per_sec": round(state["train_images_seen"] / training_seconds, 2) if training_seconds else None,
        "peak_memory_mb": environment["peak_memory_mb"],
        "params": state["params"],
        "params_mb": state["params_mb"],
        "model_size_mb": round((run_dir / "model.keras").stat().st_size / 2**20, 3),
        "latency_ms": latency_ms,
        "best_epoch": state["best_epoch"],
        "best_val_auc": state["best_val_auc"],
        "epochs_run": int(history["epoch"].max()) + 1,
        "phase_end_epoch": state["phase_end_epoch"],
        "fast_head": config.fast_head,
        "predicted_from": "cached_features" if from_features else "images",
        "feature_cache_hits": state["feature_cache_hits"],
        "starts": state["starts"],
        "counts": {name: int(len(rows)) for name, rows in ctx.subsets.items()},
        "threshold": {"policy": config.threshold_policy, "value": threshold,
                      "target_sensitivity": config.target_sensitivity, "chosen_on": "val"},
    }


def _start_state(run_dir: Path, config: TrainConfig, data_fingerprint, overwrite: bool) -> dict | None:
    """The saved progress to continue from (None when the run is finished and can be returned as is)."""
    if overwrite:
        _clear_run_dir(run_dir)
    state_path = run_dir / "state.json"
    if not state_path.exists():
        _clear_run_dir(run_dir)  # leftovers of a run killed before its first epoch ended
        return _new_state(config, data_fingerprint)
    state = json.loads(state_path.read_text())
    _check_same_run(state, config, data_fingerprint, run_dir)
    _truncate_history(run_dir, state["epoch"])
    return state


def train(frame: pd.DataFrame, run_dir: str | Path, config: TrainConfig, data_fingerprint: str | None = None,
          overwrite: bool = False, callbacks: list | tuple = ()) -> dict:
    """Train (or continue, or just return) the run in `run_dir`; returns the run.json content.

    `frame` is an assign_subsets frame; `callbacks` are extra Keras callbacks appended after the run's own.
    """
    run_dir = Path(run_dir)
    run_json = run_dir / "run.json"
    if run_json.exists() and not overwrite:
        record = json.loads(run_json.read_text())
        _check_same_run({"config": TrainConfig(**record["config"]).result_fields(),
                         "data_fingerprint": record["data_fingerprint"]}, config, data_fingerprint, run_dir)
        return record
    run_dir.mkdir(parents=True, exist_ok=True)
    subsets = _subsets(frame)
    state = _start_state(run_dir, config, data_fingerprint, overwrite)
    state["starts"] += 1
    precision = runtime.apply_precision(runtime.choose_precision(config.precision))
    ctx = _Context(run_dir, config, subsets, state, make_strategy(config.strategy), precision, callbacks)
    first, model = _first_phase(config), None
    if first.name not in state["phases_done"]:
        model = _run_phase(ctx, first)
    if config.finetune_epochs and "finetune" not in state["phases_done"]:
        model = _run_phase(ctx, _finetune_phase(config, state["phase_end_epoch"][first.name]))
    record = _predict_and_report(ctx, model or _build(config), data_fingerprint)
    _write_json(run_dir / "state.json", state)
    _write_json(run_json, record)
    (run_dir / "last.weights.h5").unlink(missing_ok=True)
    return record
