"""The studies' committed records: the exploratory study's (reports/cpu/runs) stay exactly as the study produced
them; each replicate of the confirmatory study (reports/cpu-confirmatory/runs) ran its plan's code, as planned.

Format migrations are allowed (e.g. image paths made relative to the data root on 2026-12-06); the
probabilities, labels, patients and subsets of every row are not. The digests were taken from the records as the
study committed them, with each image named by its ``split/label/file``.
"""
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from cxrlib import plan, runtime
from cxrlib.contract import PREDICTION_COLUMNS, REPO_ROOT
from cxrlib.data.index import relpath_from_path

RECORDS = REPO_ROOT / "reports" / "cpu" / "runs"
DIGESTS = json.loads((Path(__file__).parent / "data" / "exploratory_study_predictions.json").read_text())
CONFIRMATORY = plan.load_plan("confirmatory-cpu")
CONFIRMATORY_RECORDS = REPO_ROOT / CONFIRMATORY.records
# Every committed predictions.csv of both studies (the confirmatory one has as many as have finished).
PREDICTIONS = [*(RECORDS / record for record in sorted(DIGESTS)),
               *sorted(CONFIRMATORY_RECORDS.glob("*/seed-*/predictions.csv"))]


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


@pytest.mark.parametrize("predictions", PREDICTIONS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_records_name_images_relative_to_the_data_root(predictions):
    frame = pd.read_csv(predictions)
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert (frame["path"] == frame["path"].map(relpath_from_path)).all(), "absolute or machine-specific paths"


def confirmatory_runners() -> list[Path]:
    """The confirmatory study's committed replicates (their runner records), as many as have finished."""
    return sorted(CONFIRMATORY_RECORDS.glob("runner-seed-*.json"))


def test_runner_records_hold_no_machine_paths():
    for path in [*RECORDS.glob("runner-seed-*.json"), *confirmatory_runners(),
                 REPO_ROOT / "reports" / "seed43" / "cpu" / "runner.json"]:
        assert not json.loads(path.read_text())["profile_file"].startswith("/"), path


def test_confirmatory_replicates_ran_the_plans_code_in_float32_with_planned_seeds():
    """Each committed replicate started from the commit that added the plan, unmodified, and trained float32."""
    added = runtime.adding_commit(CONFIRMATORY.document)
    if added is None:
        pytest.skip("no git history here (shallow clone): the plan's commit cannot be looked up")
    for runner in confirmatory_runners():
        seed = int(runner.stem.removeprefix("runner-seed-"))
        assert seed in CONFIRMATORY.seeds, runner
        assert json.loads(runner.read_text())["code_version"] == {"commit": added["commit"], "modified": False}, runner
        for arch in (CONFIRMATORY.reference, CONFIRMATORY.compared):
            run = json.loads((CONFIRMATORY_RECORDS / arch / f"seed-{seed}" / "run.json").read_text())
            assert (run["seed"], run["precision"], run["config"]["split_seed"]) == (seed, "float32", seed), runner
            assert run["device"]["cpu_kind"], f"{runner}: the replicate's CPU is not recorded"

