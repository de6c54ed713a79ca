"""The exploratory study's committed records (reports/cpu/runs) stay exactly as the study produced them.

Format migrations are allowed (e.g. image paths made relative to the data root on 2026-12-06); the
probabilities, labels, patients and subsets of every row are not. The digests were taken from the records as the
study committed them, with each image named by its ``split/label/file``.
"""
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from cxrlib.contract import PREDICTION_COLUMNS, REPO_ROOT
from cxrlib.data.index import relpath_from_path

RECORDS = REPO_ROOT / "reports" / "cpu" / "runs"
DIGESTS = json.loads((Path(__file__).parent / "data" / "exploratory_study_predictions.json").read_text())


def canonical_digest(path: Path) -> str:
    """sha256 of predictions.csv with images named by ``split/label/file`` and probabilities written exactly."""
    frame = pd.read_csv(path)
    frame["path"] = frame["path"].map(relpath_from_path)
    return hashlib.sha256(frame.to_csv(index=False, float_format="%.17g").encode()).hexdigest()


def test_every_replicate_record_is_present():
    found = sorted(path.relative_to(RECORDS).as_posix() for path in RECORDS.glob("*/seed-*/predictions.csv"))
    assert found == sorted(DIGESTS)


@pytest.mark.parametrize("record", sorted(DIGESTS))
def test_predictions_are_unchanged(record):
    assert canonical_digest(RECORDS / record) == DIGESTS[record]


@pytest.mark.parametrize("record", sorted(DIGESTS))
def test_records_name_images_relative_to_the_data_root(record):
    frame = pd.read_csv(RECORDS / record)
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert (frame["path"] == frame["path"].map(relpath_from_path)).all(), "absolute or machine-specific paths"


def test_runner_records_hold_no_machine_paths():
    for path in [*RECORDS.glob("runner-seed-*.json"), REPO_ROOT / "reports" / "seed43" / "cpu" / "runner.json"]:
        assert not json.loads(path.read_text())["profile_file"].startswith("/"), path
