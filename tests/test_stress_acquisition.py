"""The acquisition check (cxrlib.stress.acquisition, acquisition_check): each statistic moves the way its shift moves
it on generated chest-like images, the threshold flags about the declared share of reference-like images, bad input
is refused with a message that says what to fix, the command line measures a generated data set's training and
validation images (never test), and the stress note renders the record."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import write_tree

from cxrlib import data
from cxrlib.contract import PREDICTIONS_FILE, REPO_ROOT, RUN_RECORD_FILE
from cxrlib.report import stress as stress_report
from cxrlib.stress import acquisition
from cxrlib.stress.acquisition import (RECORD_COLUMNS, STATISTICS, AcquisitionError, condition_row, fit_reference,
                                       image_statistics, read_acquisition_record)
from cxrlib.stress.shifts import Shift

SIZE = 64


def chest(rng, size: int = SIZE, framed: bool = False) -> np.ndarray:
    """[S, S] grey chest-like image: a bright body with two dark lungs, fine texture, optionally a black frame."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = rng.uniform(140, 200)
    image = np.full((size, size), body)
    for centre in (0.33, 0.67):
        lung = ((x - centre) / rng.uniform(0.1, 0.14)) ** 2 + ((y - 0.5) / rng.uniform(0.25, 0.32)) ** 2 < 1
        image[lung] = body - rng.uniform(60, 90)
    image += rng.normal(0, rng.uniform(3, 6), (size, size))
    if framed:
        width = int(rng.integers(4, 8))
        image[:width], image[-width:], image[:, :width], image[:, -width:] = 0, 0, 0, 0
    return np.clip(image, 0, 255)


def batch(count: int, seed: int = 0, framed: float = 0.0) -> np.ndarray:
    """[B, S, S, 3] float32 decoded-like images, about the share ``framed`` of them on a black frame."""
    rng = np.random.default_rng(seed)
    images = [chest(rng, framed=bool(rng.random() < framed)) for _ in range(count)]
    return np.repeat(np.stack(images)[..., None], 3, axis=3).astype(np.float32)


def shifted_statistics(images, kind: str, strength: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """image_statistics of the images as they are and under one shift."""
    from cxrlib.stress.apply import shift_batch
    seeds = np.stack([np.full(len(images), 36), np.arange(len(images))], axis=1)
    return image_statistics(images), image_statistics(shift_batch(images, Shift(kind, strength), seeds).numpy())


# --- the statistics under each shift -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, strength, lower, higher", [
    ("exposure", 0.8, ["mean", "sd", "p50", "p98"], []),
    ("exposure", 1.3, [], ["mean", "sd", "p50", "p98"]),
    ("contrast", 0.7, ["sd", "p98"], ["p02"]),
    ("gamma", 0.6, [], ["mean", "p02", "p50"]),
    ("gamma", 2.0, ["mean", "p50"], []),
    ("blur", 0.02, ["sharpness", "noise"], []),
    ("noise", 16, [], ["noise", "sharpness"]),
    ("pad", 0.8, [], ["black_band", "frame"]),
    ("crop", 0.8, [], ["dark_columns"]),
])
def test_each_statistic_moves_the_way_its_shift_moves_it(kind, strength, lower, higher):
    before, after = shifted_statistics(batch(12, seed=1), kind, strength)
    for name in lower:
        assert (after[name] < before[name]).all(), (kind, name, before[name].to_numpy(), after[name].to_numpy())
    for name in higher:
        assert (after[name] > before[name]).all(), (kind, name, before[name].to_numpy(), after[name].to_numpy())


def test_a_tighter_field_of_view_removes_black_frame_and_pad_adds_it():
    before, cropped = shifted_statistics(batch(8, seed=2, framed=1.0), "crop", 0.8)
    assert (before["black_band"] > 0.2).all() and (before["frame"] > 0.1).all()
    assert (cropped["black_band"] < before["black_band"]).all() and (cropped["frame"] < before["frame"]).all()
    unframed = image_statistics(batch(8, seed=2))
    assert (unframed["black_band"] == 0).all() and (unframed["frame"] == 0).all()


def test_the_noise_statistic_estimates_the_noise_sd_of_a_flat_image():
    rng = np.random.default_rng(0)
    images = np.clip(128 + rng.normal(0, 10, (4, SIZE, SIZE)), 0, 255)
    assert np.allclose(np.exp(image_statistics(images)["noise"]), 10, rtol=0.1)


# --- the reference and its threshold -------------------------------------------------------------------------------

def correlated_statistics(count: int, seed: int, offset: float = 0.0) -> pd.DataFrame:
    """Reference-like statistics: correlated, one heavy-tailed, shifted by ``offset`` SDs on the first two."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(len(STATISTICS), len(STATISTICS)))
    values = rng.normal(size=(count, len(STATISTICS))) @ mixing
    values[:, 2] = rng.standard_t(4, count)
    values[:, :2] += offset * values[:, :2].std(axis=0) if count else 0
    return pd.DataFrame(values, columns=list(STATISTICS))


def test_the_threshold_flags_about_the_declared_share_of_fresh_reference_like_images():
    reference = fit_reference(correlated_statistics(4000, seed=1), rate=0.01)
    fresh = reference.flags(correlated_statistics(40_000, seed=2)).mean()
    assert 0.006 <= fresh <= 0.016, fresh
    assert reference.flags(correlated_statistics(4000, seed=1)).mean() == pytest.approx(0.01, abs=0.001)
    assert fit_reference(correlated_statistics(4000, seed=1), rate=0.05).flags(
        correlated_statistics(40_000, seed=2)).mean() == pytest.approx(0.05, abs=0.01)


def test_a_shift_in_a_direction_the_reference_does_not_vary_in_is_flagged():
    reference = fit_reference(correlated_statistics(4000, seed=1))
    assert reference.flags(correlated_statistics(2000, seed=3, offset=3.0)).mean() > 0.5


def test_the_reference_fitted_on_images_flags_their_shifted_versions():
    images = batch(300, seed=4, framed=0.3)
    reference = fit_reference(image_statistics(images))
    row = condition_row(reference, image_statistics(images), np.arange(300) % 2)
    assert row["flagged"] == pytest.approx(0.01, abs=0.005) and row["reference_images"] == 300
    assert abs(row["z_mean"]) < 0.5 and abs(row["z_p50"]) < 0.5  # medians: skewed statistics sit off 0
    _, darker = shifted_statistics(images[:50], "exposure", 0.5)
    shifted = condition_row(reference, darker, np.zeros(50))
    assert shifted["flagged"] == shifted["flagged_normal"] == 1.0 and np.isnan(shifted["flagged_pneumonia"])
    assert shifted["z_mean"] < -2


# --- refusals ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("images, problem", [
    (np.zeros((0, 16, 16, 3)), "not a non-empty batch"),
    (np.zeros((2, 16, 20, 3)), "not a non-empty batch"),
    (np.zeros((2, 4, 4, 3)), "not a non-empty batch"),
    (np.zeros((16, 16)), "not a non-empty batch"),
    (np.full((2, 16, 16, 3), 300.0), "grey levels from 300 to 300"),
    (np.full((2, 16, 16, 3), -1.0), "clip shifted images first"),
    (np.full((2, 16, 16, 3), np.nan), "NaN or infinite grey levels"),
])
def test_bad_images_are_refused(images, problem):
    with pytest.raises(AcquisitionError, match="pass") as error:
        image_statistics(images)
    assert problem in str(error.value)


def test_a_bad_reference_is_refused():
    good = correlated_statistics(200, seed=1)
    with pytest.raises(AcquisitionError, match=r"flag rate 1.5 is outside \(0, 1\)"):
        fit_reference(good, rate=1.5)
    with pytest.raises(AcquisitionError, match="10 reference images are too few"):
        fit_reference(good.head(10))
    with pytest.raises(AcquisitionError, match=r"\['frame'\] do not vary"):
        fit_reference(good.assign(frame=0.0))
    with pytest.raises(AcquisitionError, match=r"lack \['noise'\]"):
        fit_reference(good.drop(columns="noise"))
    with pytest.raises(AcquisitionError, match="NaN or infinite"):
        fit_reference(good.assign(sd=np.inf))
    with pytest.raises(AcquisitionError, match="3 targets for 200 images"):
        condition_row(fit_reference(good), good, [0, 1, 0])


def test_a_bad_record_is_refused(tmp_path):
    with pytest.raises(AcquisitionError, match="does not exist; write it again with python -m"):
        read_acquisition_record(tmp_path / "acquisition.csv")
    row = {column: 0.0 for column in RECORD_COLUMNS} | {"subset": "val", "shift": "none", "cpu": "x"}
    pd.DataFrame([row]).drop(columns="z_noise").to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(AcquisitionError, match=r"lacks columns \['z_noise'\]"):
        read_acquisition_record(tmp_path / "a.csv")
    pd.DataFrame([row | {"shift": "crop"}]).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(AcquisitionError, match="exactly one unshifted validation row"):
        read_acquisition_record(tmp_path / "b.csv")
    pd.DataFrame([row | {"flagged": 1.5}]).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(AcquisitionError, match="outside 0..1"):
        read_acquisition_record(tmp_path / "c.csv")


def test_the_statistics_module_imports_no_tensorflow():
    code = ("import sys, cxrlib.stress.acquisition, cxrlib.stress.frame; "
            "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "[]"


# --- the command line on a generated data set ----------------------------------------------------------------------

def chest_uint8(rng, target):
    """A stored chest-like image (PNEUMONIA a little brighter), for write_tree."""
    return chest(rng, 48, framed=bool(rng.random() < 0.3)).astype(np.uint8)


@pytest.fixture(scope="module")
def split_records(tmp_path_factory):
    """A generated data set without a test folder, and a run's records folder (run.json, predictions.csv with
    the split's validation rows) whose split seed is 3."""
    root = write_tree(tmp_path_factory.mktemp("data") / "chest_xray", per_class={"train": 40, "val": 1, "test": 1},
                      image_of=chest_uint8)
    shutil.rmtree(root / "test")  # scanning the test folder would fail: the check never reads it
    frame = data.replicate_frame(data.scan_dataset(root, splits=("train",)).images,
                                 {"val_fraction": 0.1, "subsample_per_class": None}, 3)
    records = tmp_path_factory.mktemp("records")
    (records / RUN_RECORD_FILE).write_text(json.dumps({"seed": 7, "config": {"image_size": 32, "split_seed": 3}}))
    frame.assign(prob=0.5)[["relpath", "subset", "target", "prob"]].rename(columns={"relpath": "path"}).to_csv(
        records / PREDICTIONS_FILE, index=False)
    return root, records, frame


def test_the_command_line_measures_training_and_validation_images_of_the_run_split(split_records, tmp_path, capsys):
    from cxrlib.stress.acquisition_check import main
    root, records, frame = split_records
    shifts = tmp_path / "shifts.yaml"
    shifts.write_text("seed: 36\nshifts: {exposure: [0.5], pad: [0.6], noise: [8]}\n")
    out = tmp_path / "acquisition.csv"
    assert main([str(records), "--out", str(out), "--data-dir", str(root), "--shifts", str(shifts), "--rate", "0.05"]) == 0
    record = read_acquisition_record(out)
    assert list(record.columns) == list(RECORD_COLUMNS)
    assert list(zip(record["subset"], record["shift"])) == [("train", "none"), ("val", "none"), ("val", "exposure"),
                                                            ("val", "pad"), ("val", "noise")]
    counts = frame["subset"].value_counts()
    assert record["images"].tolist() == [counts["train"]] + [counts["val"]] * 4
    assert record.loc[0, "flagged"] == pytest.approx(0.05, abs=1 / counts["train"] + 1e-9)
    assert (record["split_seed"] == 3).all() and (record["image_size"] == 32).all() and (record["rate"] == 0.05).all()
    assert record.set_index("shift").loc["pad", "flagged"] == 1.0
    assert "wrote" in capsys.readouterr().out
    again = tmp_path / "again.csv"
    assert main([str(records), "--out", str(again), "--data-dir", str(root), "--shifts", str(shifts),
                 "--rate", "0.05", "--batch-size", "7"]) == 0
    assert again.read_text() == out.read_text()  # independent of the batch size, noise included


def test_the_command_line_refuses_a_split_that_is_not_the_run_one(split_records, tmp_path, capsys):
    from cxrlib.stress.acquisition_check import main
    root, records, _ = split_records
    other = tmp_path / "other"
    shutil.copytree(records, other)
    (other / RUN_RECORD_FILE).write_text(json.dumps({"seed": 7, "config": {"image_size": 32, "split_seed": 4}}))
    assert main([str(other), "--out", str(tmp_path / "x.csv"), "--data-dir", str(root)]) == 1
    message = capsys.readouterr().err
    assert "split seed 4" in message and str(other / PREDICTIONS_FILE) in message and "--val-fraction" in message
    (other / PREDICTIONS_FILE).unlink()
    assert main([str(other), "--out", str(tmp_path / "x.csv"), "--data-dir", str(root)]) == 1
    assert f"{other / PREDICTIONS_FILE} is missing" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


# --- the note ------------------------------------------------------------------------------------------------------

def hand_made_record(tmp_path):
    """An acquisition record with known shares: crop 0.9 missed, exposure 0.8 flagged."""
    rows = [("train", "none", 0.0, 0.01), ("val", "none", 0.0, 0.012), ("val", "crop", 0.9, 0.05),
            ("val", "exposure", 0.8, 0.97), ("val", "blur", 0.01, 0.5)]
    record = pd.DataFrame([{column: 0.0 for column in RECORD_COLUMNS} | {
        "subset": subset, "shift": shift, "strength": strength, "images": 100, "flagged": flagged,
        "flagged_normal": flagged, "flagged_pneumonia": flagged, "rate": 0.01, "threshold": 5.0,
        "reference_images": 1000, "image_size": 96, "split_seed": 1, "cpu": "Test CPU"}
        for subset, shift, strength, flagged in rows])
    record.to_csv(tmp_path / "acquisition.csv", index=False)
    return tmp_path / "acquisition.csv"


def test_the_note_section_states_the_record(tmp_path):
    section = stress_report.acquisition_note(hand_made_record(tmp_path))
    assert section.startswith("## What would catch these shifts? (training and validation images only)")
    assert re.search(r"\| exposure +\| 0.8 +\| 97.0% +\|", section) and re.search(r"\| none +\| – +\| 1.2% +\|", section)
    assert "CPU: Test CPU" in section and "1.2% of the unshifted validation images (declared: 1.0%)" in section
    assert "flags at least 50% of the validation images under exposure 0.8 (97.0%), blur 0.01 (50.0%)" in section
    assert "fewer than 50% under crop 0.9 (5.0%)" in section
    assert "it flags at least 50% under exposure 0.8 (97.0%), blur 0.01 (50.0%)." in section  # NORMAL images
    assert "cxrlib.predict" in section


def test_the_committed_note_states_the_committed_acquisition_record():
    path = REPO_ROOT / "reports" / "stress-cpu" / acquisition.RECORD_FILE
    note = (REPO_ROOT / "docs" / "STRESS.md").read_text()
    assert stress_report.acquisition_conclusion(read_acquisition_record(path)) in note


def test_the_comparison_with_the_ood_flag_names_the_unflagged_flips_the_check_catches(tmp_path):
    record = read_acquisition_record(hand_made_record(tmp_path))
    summary = pd.DataFrame({"arch": "resnet50", "metric": "flipped_unflagged", "shift": ["none", "crop", "exposure", "blur"],
                            "strength": [0.0, 0.9, 0.8, 0.01], "mean": [0.0, 0.10, 0.08, 0.02]})
    text = stress_report.ood_comparison(summary, record)
    assert "measured on the test images, this check on the validation images: different images" in text
    assert text.endswith("of the 2 shifts that flipped at least 5% of a model's test decisions without an OOD flag, "
                         "the acquisition check flags at least 50% of the validation images under exposure 0.8 (97.0%); "
                         "it misses crop 0.9 (5.0%).")
    assert stress_report.ood_comparison(None, record) == ""


def test_the_note_script_refuses_a_missing_acquisition_record(tmp_path):
    records = [REPO_ROOT / "reports" / "stress-cpu" / "runs" / arch / "seed-1" for arch in ("resnet50", "densenet121")]
    result = subprocess.run([sys.executable, "scripts/stress_note.py", *map(str, records), "--acquisition",
                             str(tmp_path / "missing.csv"), "--out", str(tmp_path / "note.md")],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and not (tmp_path / "note.md").exists()
    assert f"{tmp_path / 'missing.csv'} does not exist; write it again with python -m" in result.stderr
