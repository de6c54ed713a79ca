"""train(): one resumable run -> a self-describing run directory (docs/ARCHITECTURE.md).

Every epoch commits the weights, optimizer state and progress (cxrlib.train.rundir); calling train()
again on the same run directory continues from there, or returns the finished run's record.
"""
from pathlib import Path

import pandas as pd

from .. import features, runtime
from ..contract import LAST_WEIGHTS_FILE, RUN_RECORD_FILE, STATE_FILE
from ..data import split_fingerprint
from . import cluster, phases, record, rundir
from .config import TrainConfig


def split_subsets(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """train / val (/ test) rows of an assign_subsets frame, checked for what training needs.

    A frame without test rows (a hyperparameter search indexes train only) gives no `test` entry: the run
    then predicts validation alone.
    """
    required = {"path", "subset", "label", "target", "patient_id"}
    missing = required - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks columns {sorted(missing)}; pass the output of cxrlib.data.assign_subsets")
    subsets = {name: frame[frame["subset"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    for name in ("train", "val"):
        if subsets[name].empty:
            raise ValueError(f"frame has no `{name}` rows; assign_subsets must give train and val")
    if subsets["test"].empty:
        del subsets["test"]
    for name in ("train", "val"):
        if subsets[name]["target"].nunique() < 2:
            raise ValueError(f"the {name} subset holds one class only; ROC-AUC and class weights need both")
    return subsets


def train(frame: pd.DataFrame, run_dir: str | Path, config: TrainConfig, data_fingerprint: str | None = None,
          overwrite: bool = False, callbacks: list | tuple = ()) -> dict:
    """Train (or continue, or just return) the run in `run_dir`; returns the run.json content.

    `frame` is an assign_subsets frame; `callbacks` are extra Keras callbacks appended after the run's own.
    With strategy='multiworker' every worker process calls train() alike (see cxrlib.train.cluster).
    """
    subsets = split_subsets(frame)
    strategy = cluster.make_strategy(config.strategy)  # before anything starts TensorFlow's runtime
    run_dir = Path(run_dir)
    fingerprints = {"data_fingerprint": data_fingerprint, "split_fingerprint": split_fingerprint(frame)}
    with cluster.worker_directory(run_dir, strategy) as directory:
        directory.mkdir(parents=True, exist_ok=True)
        if directory != run_dir and not overwrite:
            rundir.copy_progress(run_dir, directory)
        finished = None if overwrite else rundir.finished_record(directory, config, fingerprints)
        state = None if finished else rundir.start_state(directory, config, fingerprints, overwrite)
        cluster.check_workers_agree(strategy, -1 if finished else state.epoch)
        if finished:
            return finished
        return _train_and_record(directory, run_dir, config, subsets, state, strategy, list(callbacks))


def _train_and_record(directory: Path, run_dir: Path, config: TrainConfig, subsets: dict, state: rundir.RunState,
                      strategy, extra_callbacks: list) -> dict:
    """Run the phases still to do, predict with the best epoch, and write run.json into `directory`."""
    state.starts += 1
    precision = runtime.apply_precision(runtime.choose_precision(config.precision))
    pooled = features.SubsetFeatures(subsets, arch=config.arch, image_size=config.image_size, precision=precision,
                                     weights=config.weights, seed=config.seed, cache_dir=config.feature_cache_dir,
                                     batch_size=config.batch_size)
    run = phases.TrainingRun(directory, config, subsets, state, strategy, precision, phases.cpu_only(), pooled,
                             extra_callbacks)
    first, model = phases.first_phase(config), None
    if first.name not in state.phases_done:
        model = phases.run_phase(run, first)
    if config.finetune_epochs and "finetune" not in state.phases_done:
        model = phases.run_phase(run, phases.finetune_phase(config, state.phase_end_epoch[first.name]))
    content = record.predict_and_record(run, model or phases.build(config, run.cpu_speedups), run_dir)
    state.save(directory / STATE_FILE)
    rundir.write_json(directory / RUN_RECORD_FILE, content)
    (directory / LAST_WEIGHTS_FILE).unlink(missing_ok=True)
    return content
