"""The run directory's saved progress (state.json), its checks and its files (layout: cxrlib.contract).

Every epoch commits the weights and optimizer state (last.weights.h5), the best model so far
(model.keras, when the epoch is the best) and the progress (state.json) together: the files are written
under partial names, state.json records their stamps (size and mtime) and is replaced atomically (the
commit point), then the partial files are renamed. Wherever a run is killed, the next start finds a
state.json and files that belong together (`settle_files`).
"""
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..contract import (ADDED_RESULT_FIELDS, HISTORY_FILE, LAST_WEIGHTS_FILE, LOGS_DIR, MODEL_FILE, RUN_FILES,
                        RUN_RECORD_FILE, STATE_FILE)
from ..files import write_atomic
from .config import TrainConfig

# The files an epoch commits -> the partial name each is written under first.
PARTIAL_FILES = {LAST_WEIGHTS_FILE: "last.partial.weights.h5", MODEL_FILE: "model.partial.keras"}
# What identifies the data a run was trained and validated on; a run is continued only with the same values.
FINGERPRINTS = ("data_fingerprint", "split_fingerprint")


@dataclass
class RunState:
    """Progress of a run as state.json holds it after each epoch: enough to continue it exactly."""

    config: dict  # TrainConfig.result_fields() of the run
    data_fingerprint: str | None = None
    split_fingerprint: str | None = None
    phase: str | None = None  # the phase of the last completed epoch
    epoch: int = 0  # epochs completed, counted over all phases
    phases_done: list = field(default_factory=list)
    phase_end_epoch: dict = field(default_factory=dict)
    best_val_auc: float | None = None
    best_epoch: int | None = None
    callbacks: dict = field(default_factory=dict)  # EarlyStopping / ReduceLROnPlateau counters after `epoch`
    timing: dict = field(default_factory=dict)  # seconds per phase (and feature extraction, prediction)
    train_images_seen: int = 0
    params: dict | None = None
    params_mb: dict | None = None
    starts: int = 0
    feature_cache_hits: dict = field(default_factory=dict)
    file_stamps: dict = field(default_factory=dict)  # {file name: stamp} of the committed files of PARTIAL_FILES

    @classmethod
    def load(cls, path: Path) -> "RunState":
        """The state saved in `path` (keys of other versions are ignored, missing ones take their defaults)."""
        saved = json.loads(path.read_text())
        return cls(**{name: saved[name] for name in (f.name for f in dataclasses.fields(cls)) if name in saved})

    def save(self, path: Path) -> None:
        """Write state.json atomically."""
        write_json(path, dataclasses.asdict(self))


def write_json(path: Path, content: dict) -> None:
    """Write JSON (numpy scalars and paths included) atomically."""
    write_atomic(path, json.dumps(content, indent=2, default=_json_default))


def _json_default(value):
    """numpy scalars and paths in JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_same_run(saved_config: dict, saved_fingerprints: dict, config: TrainConfig, fingerprints: dict,
                   run_dir: Path) -> None:
    """Refuse to resume or reuse a run directory made with other parameters, other data or another split.

    Only result fields are compared (`saved_config` may hold presentation fields too); a result field the
    saved run lacks has the value runs had before it was added (``ADDED_RESULT_FIELDS``); a saved run without a
    split fingerprint predates it and is accepted.
    """
    saved_config = {**ADDED_RESULT_FIELDS, **saved_config}
    changed = [f"{k}: {saved_config.get(k)!r} -> {v!r}" for k, v in config.result_fields().items()
               if saved_config.get(k) != v]
    changed += [f"{name} differs ({saved_fingerprints.get(name)} -> {fingerprints[name]})" for name in FINGERPRINTS
                if saved_fingerprints.get(name) != fingerprints[name]
                and not (name == "split_fingerprint" and saved_fingerprints.get(name) is None)]
    if changed:
        raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(changed)}); pass overwrite=True "
                         f"to replace it or choose another run directory")


def finished_record(run_dir: Path, config: TrainConfig, fingerprints: dict) -> dict | None:
    """The run.json content when `run_dir` holds this finished run, None when it holds no finished run."""
    path = run_dir / RUN_RECORD_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    check_same_run(record["config"], record, config, fingerprints, run_dir)
    return record


def start_state(run_dir: Path, config: TrainConfig, fingerprints: dict, overwrite: bool) -> RunState:
    """The saved progress to continue from (a fresh state when there is none or `overwrite`)."""
    if overwrite:
        clear_run_dir(run_dir)
    state_path = run_dir / STATE_FILE
    if not state_path.exists():
        clear_run_dir(run_dir)  # leftovers of a run killed before its first epoch ended
        return RunState(config=config.result_fields(), **fingerprints)
    state = RunState.load(state_path)
    check_same_run(state.config, dataclasses.asdict(state), config, fingerprints, run_dir)
    settle_files(run_dir, state)
    truncate_history(run_dir, state.epoch)
    return state


def clear_run_dir(run_dir: Path) -> None:
    """Remove every file a run writes (and nothing else)."""
    for name in (*RUN_FILES, *PARTIAL_FILES.values()):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / LOGS_DIR, ignore_errors=True)


def truncate_history(run_dir: Path, epochs_done: int) -> None:
    """Drop history rows of epochs that were not checkpointed (a kill between CSVLogger and the state)."""
    path = run_dir / HISTORY_FILE
    if path.exists() and path.stat().st_size:
        history = pd.read_csv(path)
        write_atomic(path, lambda partial: history[history["epoch"] < epochs_done].to_csv(partial, index=False))


def file_stamp(path: Path) -> str:
    """Size and modification time of a file (a rename keeps both)."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def commit_epoch(run_dir: Path, state: RunState, writers: dict) -> None:
    """Write each {file name: function(path)} of `writers` under its partial name, commit `state`, rename them."""
    for name, write in writers.items():
        write(run_dir / PARTIAL_FILES[name])
        state.file_stamps[name] = file_stamp(run_dir / PARTIAL_FILES[name])
    state.save(run_dir / STATE_FILE)  # the commit point
    for name in writers:
        os.replace(run_dir / PARTIAL_FILES[name], run_dir / name)


def settle_files(run_dir: Path, state: RunState) -> None:
    """Finish the renames of a commit a kill interrupted after state.json was written; discard uncommitted files."""
    for name, partial_name in PARTIAL_FILES.items():
        partial = run_dir / partial_name
        if partial.exists():
            if file_stamp(partial) == state.file_stamps.get(name):
                os.replace(partial, run_dir / name)
            else:
                partial.unlink()


def copy_progress(source_dir: Path, target_dir: Path) -> None:
    """Copy the chief's saved progress into a non-chief worker's own directory, so both continue alike.

    Reads only; the chief may be renaming committed partial files meanwhile, so each file is looked for
    under both names by the stamp state.json gives it.
    """
    for name in (RUN_RECORD_FILE, STATE_FILE, HISTORY_FILE):
        if (source_dir / name).exists():
            shutil.copyfile(source_dir / name, target_dir / name)
    if not (target_dir / STATE_FILE).exists():
        return
    stamps = RunState.load(target_dir / STATE_FILE).file_stamps
    for name, partial_name in PARTIAL_FILES.items():
        for candidate in (name, partial_name, name):
            try:
                if name not in stamps or file_stamp(source_dir / candidate) == stamps[name]:  # absent: older state
                    shutil.copyfile(source_dir / candidate, target_dir / name)
                    break
            except FileNotFoundError:
                continue
