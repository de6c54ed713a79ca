"""Write a run's Grad-CAM record while its model file exists:

    python -m cxrlib.explain RECORDS_DIR MODEL_FILE [--data-dir DIR]

RECORDS_DIR holds the run's predictions.csv (e.g. reports/<profile>/runs/<arch>/seed-<k>); MODEL_FILE is that run's
model.keras. Every test image's heatmap goes to RECORDS_DIR/gradcam.csv, after checking that the model reproduces the
recorded test probabilities (another run's model is refused). Exit status 1 with the reason on any error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from cxrlib.contract import PREDICTIONS_FILE
from cxrlib.data import locate_data
from cxrlib.quiet import tensorflow_quietly


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, write the record, print where it went."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("records_dir", type=Path, help="the run's records folder (holds predictions.csv)")
    parser.add_argument("model_file", type=Path, help="the run's model.keras")
    parser.add_argument("--data-dir", default=None, help="the data root (default: found as the notebooks find it)")
    args = parser.parse_args(argv)
    predictions_file = args.records_dir / PREDICTIONS_FILE
    for path, what in ((predictions_file, "the run's predictions"), (args.model_file, "the run's model file")):
        if not path.is_file():
            print(f"error: {path} ({what}) does not exist; give the records folder of a finished run and its "
                  "model.keras", file=sys.stderr)
            return 1
    with tensorflow_quietly():
        from cxrlib import explain, models
        model = models.load_model(args.model_file)
        predictions = pd.read_csv(predictions_file)
        try:
            record = explain.gradcam_record(model, predictions, locate_data(args.data_dir))
            explain.check_against_predictions(record, predictions, args.model_file, args.records_dir)
        except (explain.GradcamRecordError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    written = explain.write_gradcam_record(record, args.records_dir)
    print(f"{written}: Grad-CAM of {len(record)} test images ({record['height'].iloc[0]}×{record['width'].iloc[0]} "
          "maps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
