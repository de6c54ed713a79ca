"""python -m cxrlib.stress RUN_DIR: the stress test of a finished run that still has its model file.

Scores the run's test images (its predictions.csv) under every shift declared in stress/shifts.yaml with the run's
model and OOD detector, checks that the unshifted scores reproduce predictions.csv, writes stress.csv into RUN_DIR
(or --out-dir, e.g. the run's records folder reports/<profile>/runs/<arch>/seed-<k>) and prints per shift and strength
the share of each class called PNEUMONIA at the run's threshold, the ROC-AUC and the share flagged. With
--border-check it also scores the run's validation images (never test) with their black border masked or cropped
(border.csv beside stress.csv). Exit status: 0 written, 1 the run, the declaration or the data cannot be used.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from cxrlib import data
from cxrlib.contract import STRESS_SHIFTS_FILE
from cxrlib.quiet import tensorflow_quietly

from .shifts import StressError
from .summary import METRICS, run_stress_metrics


def table_text(metrics: pd.DataFrame) -> str:
    """The per-condition metrics as a console table, shares in percent."""
    shown = metrics[["shift", "strength", *METRICS]].copy()
    for column in METRICS:
        shown[column] = shown[column].map(lambda value, name=column: f"{value:.3f}" if name == "roc_auc"
                                          else f"{100 * value:.1f}%")
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.stress", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run directory with model.keras, "
                                                                       "ood.npz, run.json and predictions.csv")
    parser.add_argument("--data-dir", help="the data set the run was trained on (default: $CXR_DATA_DIR, "
                                           "data/chest_xray, the shared copy)")
    parser.add_argument("--shifts", type=Path, default=STRESS_SHIFTS_FILE, help="the declaration (default "
                                                                                "stress/shifts.yaml)")
    parser.add_argument("--out-dir", type=Path, help="where stress.csv (and border.csv) go (default RUN_DIR)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--border-check", action="store_true", help="also write border.csv: the validation images "
                                                                      "scored with their black border masked or cropped")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        with tensorflow_quietly():
            from .border import border_check_run  # TensorFlow starts here
            from .record import record_run
            data_root = data.locate_data(args.data_dir)
            written = record_run(args.run_dir, data_root, args.shifts, args.batch_size, args.out_dir)
            if args.border_check:
                print(f"cxrlib.stress: wrote {border_check_run(args.run_dir, data_root, args.batch_size, args.out_dir)}")
    except (StressError, data.DataNotFoundError, data.DataLayoutError) as error:
        print(f"cxrlib.stress: error: {error}", file=sys.stderr)
        return 1
    metrics = run_stress_metrics(args.run_dir, written.parent)
    print(f"cxrlib.stress: wrote {written} ({len(metrics)} conditions, {time.perf_counter() - started:.0f} s)")
    print(table_text(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
