"""The training phases of a run: build and compile the model, feed it, and fit it (continuing an interrupted phase).

- `head` (frozen backbone, BatchNorm in inference mode) or `train` (whole network, e.g. from scratch);
  with a frozen base, no augmentation and `use_feature_cache`, the head trains on cached pooled features;
- `finetune` (optional): the best head-phase model with the top blocks unfrozen, at a lower rate.
On a CPU-only machine the model uses cxrlib.fastops' layers (same function, faster kernels).
"""
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from .. import fastops, features, models
from ..contract import LAST_WEIGHTS_FILE, MODEL_FILE
from ..data import class_weights, make_dataset
from .callbacks import phase_callbacks
from .config import TrainConfig
from .rundir import RunState


@dataclass
class Phase:
    """One model.fit: its name, the global epoch range and the learning rate it starts with."""

    name: str
    start_epoch: int
    end_epoch: int
    learning_rate: float
    fast: bool = False  # trains the head alone on cached pooled features


@dataclass
class TrainingRun:
    """One run in progress: where this process writes, the settings, the data, the progress and the execution."""

    directory: Path  # this worker's run directory (a temporary one on non-chief workers)
    config: TrainConfig
    subsets: dict[str, pd.DataFrame]  # train / val / test rows of the frame
    state: RunState
    strategy: tf.distribute.Strategy
    precision: str  # the Keras dtype policy in effect
    cpu_speedups: bool  # whether models use fastops' CPU layers
    pooled: features.SubsetFeatures  # pooled backbone features of the subsets (frozen-base fast path)
    extra_callbacks: list = field(default_factory=list)

    def subset_features(self, model: keras.Model, subset: str, timed: bool = True) -> np.ndarray:
        """Cached pooled features of one subset, noting cache hits (and, if `timed`, the time in timing['features'])."""
        started = time.perf_counter()
        values, hit = self.pooled.get(model, subset)
        if timed:
            self.state.timing["features"] = self.state.timing.get("features", 0.0) + time.perf_counter() - started
        self.state.feature_cache_hits[subset] = hit
        return values


def cpu_only() -> bool:
    """Whether TensorFlow sees no GPU, so training runs on the CPU (listing does not start the runtime)."""
    return not tf.config.list_physical_devices("GPU")


def first_phase(config: TrainConfig) -> Phase:
    """`head` (frozen base; on cached features when possible) or `train` (whole network)."""
    return Phase("train" if config.train_base else "head", 0, config.epochs, config.learning_rate,
                 fast=config.fast_head)


def finetune_phase(config: TrainConfig, start_epoch: int) -> Phase:
    """Fine-tuning continues the epoch count where the head phase ended (early stopping may end it sooner)."""
    return Phase("finetune", start_epoch, start_epoch + config.finetune_epochs, config.finetune_learning_rate)


def build(config: TrainConfig, cpu_speedups: bool) -> keras.Model:
    """The full model for this config, seeded, with fastops' CPU layers when `cpu_speedups`."""
    keras.utils.set_random_seed(config.seed)  # init, dropout, shuffling, augmentation
    if config.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    model = models.build_model(config.arch, config.image_size, weights=config.weights,
                               train_base=config.train_base, head_units=config.head_units, dropout=config.dropout)
    return fastops.optimize_for_cpu(model) if cpu_speedups else model


class BalancedLogLoss(keras.metrics.Metric):
    """Log-loss of each class averaged with equal weight, on the true 0/1 labels (no smoothing).

    The models are trained with balanced class weights, so their score targets P(PNEUMONIA) at 50%
    prevalence; this is the proper score for that target (it punishes over-confidence, which ROC-AUC
    cannot see) and the objective of cxrlib.tune.
    """

    def __init__(self, name: str = "balanced_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sums = self.add_variable((2,), initializer="zeros", name="sums")
        self.counts = self.add_variable((2,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.reshape(keras.ops.cast(y_true, "float32"), (-1,))
        y_pred = keras.ops.clip(keras.ops.reshape(keras.ops.cast(y_pred, "float32"), (-1,)), 1e-7, 1 - 1e-7)
        losses = -(y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred))
        masks = keras.ops.stack([1 - y_true, y_true])  # [class, image]
        self.sums.assign_add(keras.ops.sum(masks * losses, axis=1))
        self.counts.assign_add(keras.ops.sum(masks, axis=1))

    def result(self):
        present = keras.ops.cast(self.counts > 0, "float32")
        per_class = keras.ops.divide_no_nan(self.sums, self.counts)
        return keras.ops.divide_no_nan(keras.ops.sum(per_class), keras.ops.sum(present))


def compile_model(model: keras.Model, config: TrainConfig, phase: Phase, steps_per_epoch: int) -> None:
    """Optimizer (fastops, optional weight decay), class-weighted BCE with optional label smoothing, and metrics.

    Metrics: accuracy, ROC-AUC (selects the best epoch) and the balanced log-loss (calibration; a search's
    objective).
    """
    learning_rate = phase.learning_rate
    if config.lr_schedule == "cosine":
        decay_steps = max(1, (phase.end_epoch - phase.start_epoch) * steps_per_epoch)
        learning_rate = keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps)
    model.compile(optimizer=fastops.make_optimizer(config.optimizer, learning_rate, config.weight_decay),
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                           keras.metrics.AUC(name="auc", num_thresholds=1000), BalancedLogLoss()])


def _phase_data(run: TrainingRun, model: keras.Model, phase: Phase):
    """(fit_model, train_ds, val_ds): the head on cached features, or the full model on images."""
    config, subsets = run.config, run.subsets
    if phase.fast:
        train_ds = features.feature_dataset(run.subset_features(model, "train"), subsets["train"]["target"].to_numpy(),
                                            config.batch_size, training=True, seed=config.seed)
        val_ds = features.feature_dataset(run.subset_features(model, "val"), subsets["val"]["target"].to_numpy(),
                                          config.batch_size)
        return models.head_of(model), train_ds, val_ds
    train_ds = make_dataset(subsets["train"], config.image_size, config.batch_size, training=True,
                            augment=config.augment, seed=config.seed, cache=config.data_cache,
                            augment_strength=config.augment_strength)
    val_ds = make_dataset(subsets["val"], config.image_size, config.batch_size, cache=config.data_cache)
    return model, train_ds, val_ds


def _prepare(run: TrainingRun, phase: Phase, resuming: bool) -> keras.Model:
    """The full model as the phase starts: fresh, from the best earlier epoch (fine-tuning), or as last saved."""
    model = build(run.config, run.cpu_speedups)
    if phase.name == "finetune":
        if not resuming:
            fastops.load_weights(model, run.directory / MODEL_FILE)
        models.unfreeze_from(model, run.config.finetune_from)
    return model


def run_phase(run: TrainingRun, phase: Phase) -> keras.Model:
    """Train one phase (continuing it if the state says it was interrupted); returns the full model."""
    config, state = run.config, run.state
    resuming = state.phase == phase.name and state.epoch > phase.start_epoch
    with run.strategy.scope():
        model = _prepare(run, phase, resuming)
        fit_model, train_ds, val_ds = _phase_data(run, model, phase)
        compile_model(fit_model, config, phase, math.ceil(len(run.subsets["train"]) / config.batch_size))
        if resuming:
            fit_model.optimizer.build(fit_model.trainable_variables)
            fastops.load_weights(fit_model, run.directory / LAST_WEIGHTS_FILE)
    export_model = keras.Model(model.input, model.output, name=model.name)
    callbacks = phase_callbacks(run.directory, config, state, phase.name, phase.end_epoch, export_model,
                                len(run.subsets["train"]), run.extra_callbacks)
    # The datasets shuffle themselves (seeded); shuffle=False only stops Keras warning that it would ignore it.
    fit_model.fit(train_ds, validation_data=val_ds, epochs=phase.end_epoch,
                  initial_epoch=state.epoch if resuming else phase.start_epoch,
                  class_weight=class_weights(run.subsets["train"]), callbacks=callbacks, verbose=config.verbose,
                  shuffle=False)
    return model
