"""python -m cxrlib.stress.acquisition_check RECORDS_DIR --out FILE: the acquisition check (``acquisition``) measured
on one run's patient split, training and validation images only.

RECORDS_DIR is a run's records folder (run.json, predictions.csv; e.g. reports/stress-cpu/runs/resnet50/seed-1):
its split seed and image size say which split to rebuild (only the data set's train folder is read; never a test
image), and its validation rows must be the rebuilt ones. The training images' statistics fit the reference and the
threshold (at --rate, default 1%); the validation images are then measured unshifted and under every shift of
stress/shifts.yaml (``apply.shift_batch``, image i's noise seeded (seed, i) as the stress test does). Writes FILE
(``acquisition.RECORD_COLUMNS``: a training row, the unshifted validation row, one row per shift and strength).
Exit status: 0 written, 1 the records, the declaration or the data cannot be used.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib import data, runtime
from cxrlib.contract import OOD_FLAG_RATE, PREDICTIONS_FILE, RUN_RECORD_FILE, STRESS_SHIFTS_FILE
from cxrlib.data.index import relpath_from_path
from cxrlib.files import write_atomic
from cxrlib.quiet import tensorflow_quietly

from .acquisition import RECORD_COLUMNS, AcquisitionError, condition_row, fit_reference, image_statistics
from .shifts import REFERENCE, Declaration, Shift, StressError, load_declaration

FLOAT_FORMAT = "%.6g"


def run_split(records_dir: Path) -> tuple[dict, pd.DataFrame]:
    """The run's run.json and its validation rows of predictions.csv, or AcquisitionError naming the file."""
    record_path, predictions_path = records_dir / RUN_RECORD_FILE, records_dir / PREDICTIONS_FILE
    for path in (record_path, predictions_path):
        if not path.is_file():
            raise AcquisitionError(f"{path} is missing; pass a run's records folder (run.json and predictions.csv, "
                                   "e.g. reports/stress-cpu/runs/resnet50/seed-1)")
    record = json.loads(record_path.read_text())
    if "seed" not in record or "image_size" not in record.get("config", {}):
        raise AcquisitionError(f"{record_path} records no seed or config.image_size; pass a finished run's run.json")
    predictions = pd.read_csv(predictions_path)
    if not {"path", "subset"} <= set(predictions.columns):
        raise AcquisitionError(f"{predictions_path} lacks path and subset columns; pass a finished run's records")
    return record, predictions[predictions["subset"] == "val"]


def split_rows(records_dir: Path, data_root: Path, val_fraction: float,
               subsample_per_class: int | None) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """The run's training and validation rows rebuilt from the data set's train folder (absolute ``path``,
    ``target``), checked against its predictions.csv; with the image size and split seed."""
    record, recorded_val = run_split(records_dir)
    split_seed = record["config"].get("split_seed")
    split_seed = record["seed"] if split_seed is None else split_seed
    index = data.scan_dataset(data_root, splits=("train",))  # the split draws from train only; test is never read
    frame = data.replicate_frame(index.images, {"val_fraction": val_fraction,
                                                "subsample_per_class": subsample_per_class}, split_seed)
    train, val = (frame[frame["subset"] == name].reset_index(drop=True) for name in ("train", "val"))
    rebuilt = sorted(map(relpath_from_path, val["path"]))
    if rebuilt != sorted(map(relpath_from_path, recorded_val["path"])):
        raise AcquisitionError(f"split seed {split_seed} with val_fraction={val_fraction} and subsample_per_class="
                               f"{subsample_per_class} gives {len(val)} validation images of {data_root}, not the "
                               f"{len(recorded_val)} of {records_dir / PREDICTIONS_FILE}; pass the run's data set "
                               "(--data-dir) and its profile's --val-fraction and --subsample-per-class")
    return train, val, int(record["config"]["image_size"]), int(split_seed)


def decoded_statistics(rows: pd.DataFrame, image_size: int, batch_size: int,
                       shifts: tuple[Shift, ...] = (Shift(REFERENCE, 0.0),), seed: int = 0) -> dict[Shift, pd.DataFrame]:
    """image_statistics of the rows' images decoded as training decodes them, under each of ``shifts``; image i's
    noise is seeded (seed, i)."""
    from cxrlib.data.pipeline import make_dataset  # TensorFlow starts here

    from .apply import shift_batch

    decoded = make_dataset(rows[["path", "target"]], image_size, batch_size, cache="memory")
    parts = {shift: [] for shift in shifts}
    for shift in shifts:
        offset = 0
        for images, _ in decoded:
            seeds = np.stack([np.full(len(images), seed), offset + np.arange(len(images))], axis=1)
            parts[shift].append(image_statistics(shift_batch(images, shift, seeds).numpy()))
            offset += len(images)
    return {shift: pd.concat(frames, ignore_index=True) for shift, frames in parts.items()}


def acquisition_record(train: pd.DataFrame, val: pd.DataFrame, declaration: Declaration, image_size: int,
                       batch_size: int = 64, rate: float = OOD_FLAG_RATE) -> pd.DataFrame:
    """RECORD_COLUMNS except the provenance ones (image_size, split_seed, cpu): the reference fitted on ``train``,
    measured on ``train`` itself and on ``val`` under every condition of ``declaration``."""
    reference_statistics = decoded_statistics(train, image_size, batch_size)[Shift(REFERENCE, 0.0)]
    reference = fit_reference(reference_statistics, rate)
    rows = [{"subset": "train", "shift": REFERENCE, "strength": 0.0,
             **condition_row(reference, reference_statistics, train["target"])}]
    measured = decoded_statistics(val, image_size, batch_size, declaration.conditions, declaration.seed)
    rows += [{"subset": "val", "shift": shift.kind, "strength": shift.strength,
              **condition_row(reference, statistics, val["target"])} for shift, statistics in measured.items()]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.stress.acquisition_check",
                                     description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("records_dir", type=Path, metavar="RECORDS_DIR", help="a run's records folder (run.json, "
                                                                               "predictions.csv)")
    parser.add_argument("--out", type=Path, required=True, help="the record to write, e.g. "
                                                                "reports/stress-cpu/acquisition.csv")
    parser.add_argument("--data-dir", help="the data set the run was trained on (default: $CXR_DATA_DIR, "
                                           "data/chest_xray, the shared copy)")
    parser.add_argument("--shifts", type=Path, default=STRESS_SHIFTS_FILE, help="the declaration (default "
                                                                                "stress/shifts.yaml)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="the run's profile's (default 0.1)")
    parser.add_argument("--subsample-per-class", type=int, help="the run's profile's (default none)")
    parser.add_argument("--rate", type=float, default=OOD_FLAG_RATE, help="declared false-flag rate (default 0.01)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        declaration = load_declaration(args.shifts)
        data_root = data.locate_data(args.data_dir, download=False)
        train, val, image_size, split_seed = split_rows(args.records_dir, data_root, args.val_fraction,
                                                        args.subsample_per_class)
        with tensorflow_quietly():
            record = acquisition_record(train, val, declaration, image_size, args.batch_size, args.rate)
    except (AcquisitionError, StressError, data.DataNotFoundError, data.DataLayoutError) as error:
        print(f"cxrlib.stress.acquisition_check: error: {error}", file=sys.stderr)
        return 1
    record = record.assign(image_size=image_size, split_seed=split_seed, cpu=runtime.cpu_model())[list(RECORD_COLUMNS)]
    write_atomic(args.out, lambda partial: record.to_csv(partial, index=False, float_format=FLOAT_FORMAT))
    shown = record[["subset", "shift", "strength", "images", "flagged", "flagged_normal"]]
    print(f"cxrlib.stress.acquisition_check: wrote {args.out} ({len(train)} training, {len(val)} validation images, "
          f"{time.perf_counter() - started:.0f} s)")
    print(shown.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
