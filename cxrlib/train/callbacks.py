"""The callbacks of every phase: learning-rate log, early stopping, LR reduction, logs, and the run checkpoint.

The checkpoint is this project's own rather than Keras' ModelCheckpoint + BackupAndRestore because:
- on the feature-cache path fit trains the head model alone, while model.keras must hold the full model;
- the best epoch (by validation ROC-AUC) is tracked over two phases and restarts, together with the state;
- BackupAndRestore saves weights and epoch as two files written one after the other (a kill between them
  pairs weights with the wrong epoch) and keeps neither EarlyStopping / ReduceLROnPlateau counters nor
  the timing and phase bookkeeping a resumed run needs to continue exactly as an uninterrupted one.
"""
import time
from pathlib import Path

import keras
import numpy as np

from .. import fastops, models
from ..contract import HISTORY_FILE, LAST_WEIGHTS_FILE, LOGS_DIR, MODEL_FILE
from .config import TrainConfig
from .rundir import RunState, commit_epoch

# The attributes of EarlyStopping / ReduceLROnPlateau that decide their next action (Keras documents them
# nowhere; tests/test_train.py fails if a Keras upgrade renames them).
COUNTER_ATTRIBUTES = ("wait", "best", "cooldown_counter", "stopped_epoch", "best_epoch")


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate used in the epoch to the logs (for history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class RunCheckpoint(keras.callbacks.Callback):
    """Per epoch: best full model by val_auc -> model.keras; weights + optimizer -> last.weights.h5; -> state.json.

    Runs after EarlyStopping / ReduceLROnPlateau / CSVLogger so the state it saves includes their updates,
    and restores their counters when the phase resumes.
    """

    def __init__(self, run_dir: Path, state: RunState, phase_name: str, phase_end_epoch: int,
                 export_model: keras.Model, watched: dict[str, keras.callbacks.Callback], images_per_epoch: int):
        super().__init__()
        self.run_dir, self.state, self.phase_name, self.phase_end_epoch = run_dir, state, phase_name, phase_end_epoch
        self.export_model, self.watched, self.images_per_epoch = export_model, watched, images_per_epoch
        self.epoch_started = 0.0

    def on_train_begin(self, logs=None):
        saved = self.state.callbacks if self.state.phase == self.phase_name else {}
        for name, callback in self.watched.items():
            for attribute, value in saved.get(name, {}).items():
                setattr(callback, attribute, value)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        state, val_auc = self.state, float(logs["val_auc"])
        writers = {LAST_WEIGHTS_FILE: self._save_weights}
        if state.best_val_auc is None or val_auc > state.best_val_auc:
            writers[MODEL_FILE] = self._save_export_model
            state.best_val_auc, state.best_epoch = val_auc, epoch
        seconds = time.perf_counter() - self.epoch_started
        state.timing[self.phase_name] = state.timing.get(self.phase_name, 0.0) + seconds
        state.train_images_seen += self.images_per_epoch
        state.phase, state.epoch = self.phase_name, epoch + 1
        state.callbacks = {name: counters(callback) for name, callback in self.watched.items()}
        if self.model.stop_training or epoch + 1 >= self.phase_end_epoch:
            state.phases_done.append(self.phase_name)
            state.phase_end_epoch[self.phase_name] = epoch + 1
            summary = models.parameter_summary(self.export_model, self.model.optimizer)
            state.params = {kind: int(count) for kind, count in summary["params"].items()}
            state.params_mb = {kind: round(float(mb), 3) for kind, mb in summary["mb"].items()}
        commit_epoch(self.run_dir, state, writers)

    def _save_weights(self, path: Path) -> None:
        """Save the fitted model's weights and optimizer state, named after Keras' own layer classes."""
        with fastops.standard_layers(self.model):
            self.model.save_weights(path)

    def _save_export_model(self, path: Path) -> None:
        """Save the full model with Keras' own layer classes (loadable without cxrlib)."""
        with fastops.standard_layers(self.export_model):
            self.export_model.save(path)


def counters(callback: keras.callbacks.Callback) -> dict:
    """The counters of EarlyStopping / ReduceLROnPlateau that decide their next action (JSON-ready)."""
    values = {name: getattr(callback, name) for name in COUNTER_ATTRIBUTES if hasattr(callback, name)}
    return {name: float(value) if isinstance(value, np.generic) else value for name, value in values.items()}


def phase_callbacks(run_dir: Path, config: TrainConfig, state: RunState, phase_name: str, phase_end_epoch: int,
                    export_model: keras.Model, images_per_epoch: int, extra: list) -> list:
    """Learning-rate log, early stopping, LR reduction, CSV and TensorBoard logs, the run checkpoint, then `extra`."""
    watched = {}
    if config.early_stopping_patience:
        watched["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=config.early_stopping_patience, verbose=1)
    if config.lr_schedule == "plateau":
        watched["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor="val_auc", mode="max", factor=config.plateau_factor, patience=config.plateau_patience,
            min_lr=config.min_learning_rate, verbose=1)
    logs = [keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
            keras.callbacks.TensorBoard(log_dir=str(run_dir / LOGS_DIR), write_graph=False)]
    checkpoint = RunCheckpoint(run_dir, state, phase_name, phase_end_epoch, export_model, watched, images_per_epoch)
    return [LearningRateLogger(), *watched.values(), *logs, checkpoint, *extra]
