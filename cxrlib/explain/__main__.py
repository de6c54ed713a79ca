"""Write a run's heatmap records while its model file exists:

    python -m cxrlib.explain RECORDS_DIR MODEL_FILE [--data-dir DIR] [--random-seed K]

RECORDS_DIR holds the run's predictions.csv (e.g. reports/<profile>/runs/<arch>/seed-<k>); MODEL_FILE is that run's
model.keras. Every test image's signed HiResCAM map (the reports' method, cxrlib.explain.gradcam) goes to
RECORDS_DIR/gradcam.csv, after checking that the model reproduces the recorded test probabilities (another run's model
is refused); the model-randomisation sanity check (the rank correlation of each map with the map of the same
architecture with random weights, seed K, default 2018) goes to RECORDS_DIR/gradcam_sanity.csv. Exit status 1 with
the reason on any error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from cxrlib.contract import PREDICTIONS_FILE
from cxrlib.data import locate_data
from cxrlib.quiet import tensorflow_quietly

DEFAULT_RANDOM_SEED = 2018  # explain.sanity.RANDOM_SEED, repeated so --help needs no TensorFlow (a test checks it)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, write both records, print where they went."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("records_dir", type=Path, help="the run's records folder (holds predictions.csv)")
    parser.add_argument("model_file", type=Path, help="the run's model.keras")
    parser.add_argument("--data-dir", default=None, help="the data root (default: found as the notebooks find it)")
    parser.add_argument("--random-seed", type=int, default=DEFAULT_RANDOM_SEED,
                        help="the randomised model's weights seed for the sanity check (default: %(default)s)")
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
            data_root = locate_data(args.data_dir)
            record = explain.gradcam_record(model, predictions, data_root)
            explain.check_against_predictions(record, predictions, args.model_file, args.records_dir)
            sanity = explain.sanity_record(model, record, data_root, seed=args.random_seed)
        except (explain.GradcamRecordError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    written = explain.write_gradcam_record(record, args.records_dir)
    checked = explain.write_sanity_record(sanity, args.records_dir)
    summary = explain.sanity_summary(sanity)
    print(f"{written}: {record['method'].iloc[0]} of {len(record)} test images ({record['height'].iloc[0]}×"
          f"{record['width'].iloc[0]} maps)")
    print(f"{checked}: rank correlation with a random model's maps (seed {args.random_seed}): median "
          f"{summary['spearman_median']:.2f}, above {explain.PASS_BELOW} in {summary['spearman_above']:.1%} of images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
