"""python -m cxrlib.ood fit RUN_DIR: add the OOD detector and the calibration to a run trained before they existed.

Rebuilds the run's training and validation images from the data set (its data and split fingerprints must match
run.json), fits the detector on the best model's pooled features of the training images at the backbone registry's
OOD layers, standardises its distances and sets its flag threshold on the validation images and calibrates the score
on them. Writes RUN_DIR/ood.npz and adds `ood` and
`calibration` to RUN_DIR/run.json. Exit status: 0 fitted, 1 the run or the data cannot be used.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from cxrlib import data
from cxrlib.contract import MODEL_FILE, OOD_FILE, RUN_RECORD_FILE
from cxrlib.files import write_atomic
from cxrlib.quiet import tensorflow_quietly

SUBSETS = ("train", "val")


class FitError(ValueError):
    """The run directory or the data cannot be used; the message names the file or value and the fix."""


def read_record(run_dir: Path) -> dict:
    """The finished run's run.json, after checking that its model file exists."""
    record_path, model_path = run_dir / RUN_RECORD_FILE, run_dir / MODEL_FILE
    for path in (record_path, model_path):
        if not path.is_file():
            raise FitError(f"{path} is missing; pass a finished run directory (runs/<profile>/<arch>/seed-<k>/), "
                           "or train it first (./run_all.sh)")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as error:
        raise FitError(f"{record_path} is not JSON ({error}); train the run again") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "seed" not in record:
        raise FitError(f"{record_path} is not a run record (it needs `config` and `seed`); train the run again")
    return record


def split_seed_of(record: dict) -> int:
    """The seed of the run's patient split: config `split_seed`, else (older runs) the training seed."""
    split_seed = record["config"].get("split_seed")
    return record["seed"] if split_seed is None else split_seed


def run_subsets(record: dict, run_dir: Path, data_dir, val_fraction: float, subsample_per_class) -> dict[str, pd.DataFrame]:
    """The run's train and val rows rebuilt from the data set, checked against run.json's fingerprints and counts."""
    index = data.scan_dataset(data.locate_data(data_dir))
    record_path = run_dir / RUN_RECORD_FILE
    if record.get("data_fingerprint") not in (None, index.fingerprint):
        raise FitError(f"the data in {index.root} (fingerprint {index.fingerprint[:12]}) is not the data {record_path} "
                       f"was trained on ({record['data_fingerprint'][:12]}); pass that data set with --data-dir")
    split = {"val_fraction": val_fraction, "subsample_per_class": subsample_per_class}
    frame = data.replicate_frame(index.images, split, split_seed_of(record))
    subsets = {name: frame[frame["subset"] == name].reset_index(drop=True) for name in SUBSETS}
    counts = {name: len(rows) for name, rows in subsets.items()}
    recorded_counts = {name: record.get("counts", {}).get(name, counts[name]) for name in SUBSETS}
    fingerprint = data.split_fingerprint(frame)
    if record.get("split_fingerprint", fingerprint) != fingerprint or recorded_counts != counts:
        raise FitError(f"val_fraction={val_fraction}, subsample_per_class={subsample_per_class} and split seed "
                       f"{split_seed_of(record)} give {counts} images, not the split {record_path} records; pass "
                       "the --val-fraction and --subsample-per-class of the run's profile")
    return subsets


def fit_run(run_dir: Path, data_dir=None, val_fraction: float = 0.1, subsample_per_class=None,
            batch_size: int = 32) -> dict:
    """Fit and write the run's OOD detector and calibration; returns the updated run.json content."""
    from cxrlib import models  # TensorFlow starts here
    from cxrlib.data.pipeline import make_dataset
    from .fit import fit_safeguards, image_features

    record = read_record(run_dir)
    subsets = run_subsets(record, run_dir, data_dir, val_fraction, subsample_per_class)
    model = models.load_model(run_dir / MODEL_FILE)
    image_size = model.input_shape[1]
    val_scores = model.predict(make_dataset(subsets["val"], image_size, batch_size, cache=None), verbose=0).ravel()
    safeguards = fit_safeguards(image_features(model, image_size, batch_size), subsets, val_scores, run_dir)
    content = record | safeguards
    write_atomic(run_dir / RUN_RECORD_FILE, json.dumps(content, indent=2))
    return content


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.ood", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("command", choices=("fit",))
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=f"a finished run directory ({MODEL_FILE}, "
                                                                       f"{RUN_RECORD_FILE})")
    parser.add_argument("--data-dir", help="the data set the run was trained on (default: $CXR_DATA_DIR, "
                                           "data/chest_xray)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="the run profile's val_fraction (default 0.1)")
    parser.add_argument("--subsample-per-class", type=int, help="the run profile's subsample_per_class (default none)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    args = parser.parse_args(argv)
    try:
        with tensorflow_quietly():
            content = fit_run(args.run_dir, args.data_dir, args.val_fraction, args.subsample_per_class,
                              args.batch_size)
    except (FitError, data.DataNotFoundError, data.DataLayoutError) as error:
        print(f"cxrlib.ood: error: {error}", file=sys.stderr)
        return 1
    ood, platt = content["ood"], content["calibration"]
    print(f"cxrlib.ood: wrote {args.run_dir / OOD_FILE} ({len(ood['layers'])} layers; flag threshold "
          f"{ood['threshold']:.2f} flags {ood['val_flagged']:.1%} of {ood['images']['val']} validation images) and "
          f"the calibration (at PNEUMONIA prevalence {platt['prevalence']:.3f}) into {args.run_dir / RUN_RECORD_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
