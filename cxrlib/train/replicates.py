"""The replicates of a notebook's profile: train (or resume, or reuse) each one, copy its records next to the
reports, and the size of the model the profile trains.

Each replicate of ``seeds`` trains into ``runs_dir/<arch>/seed-<k>/``; its small records (``RECORD_FILES``) are
copied to ``report_dir/runs/<arch>/seed-<k>/``, where the comparison notebook and the committed study read them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import keras
import pandas as pd

from .. import models
from ..contract import OPTIONAL_RECORD_FILES, RECORD_FILES, RECORDS_DIR, replicate_dir
from ..files import write_atomic
from ..params import train_config_values
from .config import TrainConfig
from .run import train


def copy_records(run_dir: Path, destination: Path) -> None:
    """Copy a finished run's small records (no model files) into ``destination``, each file atomically; an optional
    record the run lacks (trained before it existed) is removed from ``destination``, so no older run's copy stays."""
    for name in RECORD_FILES:
        if name in OPTIONAL_RECORD_FILES and not (run_dir / name).is_file():
            (destination / name).unlink(missing_ok=True)
            continue
        write_atomic(destination / name, lambda partial, source=run_dir / name: shutil.copyfile(source, partial))


def replicate_config(arch: str, params: dict, seed: int, split_seed: int) -> TrainConfig:
    """The TrainConfig of ``arch`` for one replicate of the profile ``params``: what its run.json records."""
    return TrainConfig(arch=arch, name=arch, **train_config_values(params, seed, split_seed, arch))


def train_replicate(arch: str, params: dict, seed: int, split_seed: int, frame: pd.DataFrame,
                    data_fingerprint: str) -> tuple[Path, dict]:
    """Train, resume or reuse the run of ``arch`` for one replicate (training seed ``seed``, patient split
    ``split_seed``) and copy its records next to the reports; returns its run directory and run.json record."""
    run_dir = replicate_dir(params["runs_dir"], arch, seed)
    record = train(frame, run_dir, replicate_config(arch, params, seed, split_seed), data_fingerprint=data_fingerprint)
    copy_records(run_dir, replicate_dir(Path(params["report_dir"]) / RECORDS_DIR, arch, seed))
    return run_dir, record


def model_size(arch: str, params: dict) -> pd.DataFrame:
    """The weights of the model ``params`` train for ``arch`` and of its Adam state (``models.parameter_summary``)."""
    model = models.build_model(arch, params["image_size"], weights=params["weights"], train_base=params["train_base"],
                               head_units=params["head_units"], dropout=params["dropout"])
    return models.parameter_summary(model, keras.optimizers.Adam(params["learning_rate"]))
