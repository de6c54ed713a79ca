"""A search worker: the search's data (the train folder only), one trial's training with pruning, the work loop.

Test images are never listed, opened or predicted here: the data set is indexed with ``splits=("train",)``,
validation patients are drawn from it with the search's own split seed, and `tuning_frame` refuses any
row from another folder. Each trial trains with cxrlib.train like a study run and is scored on validation.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import keras
import optuna
import pandas as pd

from cxrlib import data, evaluate, runtime
from cxrlib.contract import PREDICTIONS_FILE, RECORD_FILES, RUNS_DIR
from cxrlib.params import train_config_values
from cxrlib.train import TrainConfig, train

from . import ledger
from .spec import SearchSpec

VAL_OBJECTIVE = "val_balanced_log_loss"  # the Keras log of the objective (cxrlib.train.phases.BalancedLogLoss)
# Facts each finished or pruned trial stores (user attributes), besides its worker, heartbeat and kind.
COST_ATTRIBUTES = ("cpu", "code", "cpu_seconds", "wall_seconds", "epochs_run")


def tuning_frame(spec: SearchSpec) -> tuple[pd.DataFrame, str]:
    """The search's train/val frame (train folder only, split with split_seed) and the indexed data's fingerprint."""
    params = spec.base_params
    index = data.scan_dataset(data.locate_data(params["data_dir"]), splits=("train",))
    frame = data.replicate_frame(index.images, params, spec.split_seed)
    outside = sorted(set(frame["split"]) - {"train"})
    if outside:
        raise RuntimeError(f"the search's frame holds rows of {outside}; a search may only read the train folder")
    return frame, index.fingerprint


class TrialReporter(keras.callbacks.Callback):
    """After each epoch: the validation objective to the trial (pruning on it before the last epoch), and a heartbeat."""

    def __init__(self, trial: optuna.Trial, prune: bool, epochs: int):
        super().__init__()
        self.trial, self.prune, self.epochs, self.epochs_reported = trial, prune, epochs, 0

    def on_epoch_end(self, epoch, logs=None):
        value, step = float(logs[VAL_OBJECTIVE]), epoch + 1
        self.epochs_reported = step
        self.trial.report(value, step)
        self.trial.set_user_attr(ledger.HEARTBEAT, time.time())
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"diverged: validation {VAL_OBJECTIVE} is {value} after epoch {step}")
        if self.prune and step < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {step}")


def train_configuration(spec: SearchSpec, arch: str, values: dict, training_seed: int, frame: pd.DataFrame,
                        fingerprint: str, run_dir: Path, callbacks: list) -> tuple[float, dict]:
    """Train one configuration on the search's split; (validation objective of the kept epoch, run.json content)."""
    settings = train_config_values(spec.training_params(values), training_seed, spec.split_seed)
    config = TrainConfig(arch=arch, name=f"{spec.study_name(arch)}/{run_dir.name}", fit_safeguards=False,
                         stress_test=False, **settings)
    record = train(frame, run_dir, config, data_fingerprint=fingerprint, overwrite=True, callbacks=callbacks)
    predictions = pd.read_csv(run_dir / PREDICTIONS_FILE)
    val = predictions[predictions["subset"] == "val"]
    value = evaluate.balanced_log_loss(val["target"].to_numpy(), val["prob"].to_numpy())
    if not math.isfinite(value):
        raise optuna.TrialPruned(f"diverged: validation {spec.objective} is {value}")
    return value, record


def _ask(spec: SearchSpec, storage, task: ledger.Task) -> tuple[optuna.Study, optuna.Trial | None]:
    """The study and the trial to run for `task`; None (the trial marked FAIL) when it must not run."""
    if task.kind == ledger.SEARCH:
        study = ledger.load(spec, storage, task.arch)
        # Reseeded by the number of trials so far: a resumed search asks what an uninterrupted one would.
        study.sampler = optuna.samplers.TPESampler(
            seed=spec.sampler_seed + len(study.get_trials(deepcopy=False)), n_startup_trials=spec.startup_trials,
            multivariate=True, constant_liar=True)
        study.pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.min_epochs, reduction_factor=spec.reduction_factor, min_early_stopping_rate=0)
        trial = study.ask(spec.distributions())
        refused = "over budget" if ledger.beyond_budget(study, trial.number, spec.trials_per_arch) else None
    else:
        study = ledger.load(spec, storage, task.arch, reruns=True)
        trial = study.ask()
        refused = "duplicate rerun" if ledger.duplicate_rerun(study, study._storage.get_trial(trial._trial_id)) else None
    if refused:
        trial.set_user_attr(ledger.FAILURE, refused)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return study, None
    return study, trial


def run_task(spec: SearchSpec, storage, task: ledger.Task, frame: pd.DataFrame, fingerprint: str, log=print,
             train_fn=train_configuration) -> None:
    """Run one trial of `task` to its end (COMPLETE or PRUNED) and record its cost; a trial that errs is marked FAIL.

    `train_fn` has train_configuration's signature and result (tests pass a fast stand-in).
    """
    study, trial = _ask(spec, storage, task)
    if trial is None:
        return
    if task.kind == ledger.SEARCH:
        values, training_seed = trial.params, spec.training_seed
        trial.set_user_attr(ledger.KIND, ledger.SEARCH)
        trial.set_user_attr(ledger.TRAINING_SEED, training_seed)
    else:
        values, training_seed = trial.user_attrs[ledger.VALUES], trial.user_attrs[ledger.TRAINING_SEED]
    version = runtime.code_version()
    trial.set_user_attr(ledger.WORKER, ledger.worker_id())
    trial.set_user_attr("cpu", runtime.cpu_kind())
    trial.set_user_attr("code", runtime.version_text(version))
    run_dir = RUNS_DIR / f"tune-{spec.name}" / task.arch / f"{task.kind}-{trial.number}"
    log(f"{study.study_name}: trial {trial.number} starts ({task.kind}, seed {training_seed}): {values}")
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    state, value, epochs_run = optuna.trial.TrialState.COMPLETE, None, None
    reporter = TrialReporter(trial, prune=task.kind == ledger.SEARCH,
                             epochs=spec.training_params(values)["epochs"])
    try:
        value, record = train_fn(spec, task.arch, values, training_seed, frame, fingerprint, run_dir, [reporter])
        epochs_run = record["epochs_run"]
        trial.set_user_attr("best_epoch", record["best_epoch"])
        trial.set_user_attr("val_auc", record["best_val_auc"])
    except optuna.TrialPruned as pruned:
        state = optuna.trial.TrialState.PRUNED
        trial.set_user_attr("pruned", str(pruned))
        epochs_run = reporter.epochs_reported
    except optuna.exceptions.UpdateFinishedTrialError:
        log(f"{study.study_name}: trial {trial.number} was taken as lost by another worker; its result is discarded")
        return
    except Exception as error:
        trial.set_user_attr(ledger.FAILURE, f"error: {type(error).__name__}: {error}"[:500])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finally:
        _keep_records_only(run_dir)
    costs = {"cpu_seconds": round(time.process_time() - cpu_started, 1),
             "wall_seconds": round(time.perf_counter() - wall_started, 1), "epochs_run": epochs_run}
    for name, amount in costs.items():
        trial.set_user_attr(name, amount)
    study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    outcome = f"{spec.objective} {value:.4f}" if value is not None else trial.user_attrs.get("pruned", "pruned")
    log(f"{study.study_name}: trial {trial.number} {state.name.lower()}: {outcome}; {costs}")


def _keep_records_only(run_dir: Path) -> None:
    """Delete a trial's model files and logs; its small records stay for inspection."""
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.name not in RECORD_FILES:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def work(spec: SearchSpec, storage, max_trials: int | None = None, log=print, train_fn=train_configuration) -> int:
    """Run trials until nothing is left to start (or `max_trials` ran); returns how many ran."""
    frame = fingerprint = None
    ran = 0
    while max_trials is None or ran < max_trials:
        task = ledger.next_task(spec, storage, log)
        if task is None:
            break
        if frame is None:
            frame, fingerprint = tuning_frame(spec)
        run_task(spec, storage, task, frame, fingerprint, log, train_fn)
        ran += 1
    return ran
