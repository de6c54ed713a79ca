"""OOD detector and calibration: the detector's math and file, the calibration's shape, and a tiny trained run whose
flag fires on foreign images, rarely on fresh in-distribution ones, and that `python -m cxrlib.ood fit` refits."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import blob_image, write_tree
from PIL import Image

from cxrlib import data
from cxrlib.calibration import calibrated_probability, fit_platt
from cxrlib.contract import OOD_FILE, OOD_FLAG_RATE, REPO_ROOT, RUN_RECORD_FILE
from cxrlib.ood import OodFileError, fit_detector, load_detector
from cxrlib.predict import COLUMNS, PredictError, predict
from cxrlib.quiet import NATIVE_LOG_LINE, shown
from cxrlib.train import TrainConfig, train

SIZE = 32


def gaussian_features(rng, count, shift=0.0, dims=20):
    """Two classes of correlated Gaussian features (class 1 shifted along the first axis); returns (features, targets)."""
    targets = np.arange(count) % 2
    mixing = np.eye(dims) + 0.3 * np.tri(dims, k=-1)
    features = rng.normal(size=(count, dims)) @ mixing + shift
    features[:, 0] += 3 * targets
    return features, targets


def test_detector_flags_about_the_declared_rate_in_distribution_and_far_points_always():
    rng = np.random.default_rng(0)
    train_features, train_targets = gaussian_features(rng, 2000)
    val_features, _ = gaussian_features(rng, 2000)
    detector = fit_detector(train_features, train_targets, val_features, rate=0.05, layer="pool")
    fresh, _ = gaussian_features(rng, 4000)
    assert 0.03 <= detector.flags(detector.distances(fresh)).mean() <= 0.07
    shifted, _ = gaussian_features(rng, 200, shift=6.0)
    assert detector.flags(detector.distances(shifted)).all()


def test_distance_is_to_the_nearest_class_mean():
    rng = np.random.default_rng(1)
    features, targets = gaussian_features(rng, 1000)
    detector = fit_detector(features, targets, features, rate=0.01, layer="pool")
    assert detector.distances(detector.class_means) == pytest.approx([0, 0], abs=1e-9)
    with pytest.raises(ValueError, match="do not fit a detector of 20 features"):
        detector.distances(features[:, :5])


def test_detector_file_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    features, targets = gaussian_features(rng, 500)
    detector = fit_detector(features, targets, features, rate=0.01, layer="pool")
    detector.save(tmp_path / OOD_FILE)
    loaded = load_detector(tmp_path / OOD_FILE)
    np.testing.assert_array_equal(loaded.distances(features), detector.distances(features))
    assert (loaded.threshold, loaded.rate, loaded.layer) == (detector.threshold, 0.01, "pool")
    assert not list(tmp_path.glob("*partial*"))


@pytest.mark.parametrize("content, problem", [
    (b"not a zip", "is not a readable OOD file"),
    ("missing keys", "lacks class_means, precision"),
    ("other format", "has format 'other'"),
    ("bad shapes", "a precision of shape (3, 3)"),
])
def test_unusable_detector_files_name_the_file_and_the_refit_command(tmp_path, content, problem):
    path = tmp_path / OOD_FILE
    arrays = {"format": "mahalanobis-v1", "layer": "pool", "class_means": np.zeros((2, 4)),
              "precision": np.eye(4), "threshold": 1.0, "rate": 0.01}
    if content == "missing keys":
        arrays = {key: arrays[key] for key in ("format", "layer", "threshold", "rate")}
    elif content == "other format":
        arrays["format"] = "other"
    elif content == "bad shapes":
        arrays["precision"] = np.eye(3)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, **arrays)
    with pytest.raises(OodFileError, match=f"^{path}.*{re.escape(problem)}.*refit it with: python -m cxrlib.ood fit {tmp_path}$"):
        load_detector(path)


def test_calibrated_probability_is_monotone_in_the_score_and_within_0_and_1():
    rng = np.random.default_rng(3)
    targets = (rng.uniform(size=2000) < 0.7).astype(int)
    scores = 1 / (1 + np.exp(-(2.5 * targets - 1.25 + rng.normal(0, 1.5, 2000))))
    calibration = fit_platt(targets, scores)
    grid = np.linspace(0, 1, 1001)  # the ends are saturated scores, which stay finite
    probabilities = calibrated_probability(grid, calibration)
    assert calibration["slope"] > 0 and np.all(np.diff(probabilities) > 0)
    assert 0 < probabilities.min() and probabilities.max() < 1
    assert calibration["prevalence"] == pytest.approx(targets.mean())


def test_calibration_of_an_uninformative_score_gives_the_prevalence():
    rng = np.random.default_rng(4)
    targets = (rng.uniform(size=4000) < 0.75).astype(int)
    calibration = fit_platt(targets, rng.uniform(0.2, 0.8, 4000))
    assert calibrated_probability([0.2, 0.5, 0.8], calibration) == pytest.approx([0.75] * 3, abs=0.03)


def test_native_log_lines_are_dropped_and_everything_else_kept():
    lines = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796525415.682532    5973 port.cc:153] oneDNN custom operations are on.\n",
             b"E0000 00:00:1796525421.821364    5973 cuda_platform.cc:52] failed call to cuInit\n",
             b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find\n",
             b"F0000 00:00:1796525421.821364    5973 check.cc:1] Check failed\n",
             b"cxrlib.predict: skipped x.jpeg: zero-byte file\n", b"features:  50%|#####     | 1/2\r"]
    assert shown(lines) == b"".join(lines[4:])
    assert not NATIVE_LOG_LINE.match(b"I0000 is how a user could name a file\n")


# ------------------------------------------------------------------ a tiny trained run


def write_foreign_images(folder):
    """Images no chest X-ray looks like: uniform gray, uniform black, colour noise, gray noise over the full range."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    Image.fromarray(np.full((40, 44), 128, np.uint8)).save(folder / "gray.png")
    Image.fromarray(np.zeros((40, 44), np.uint8)).save(folder / "black.png")
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(folder / "colour-noise.png")
    Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8)).save(folder / "full-range-noise.png")
    return folder


def write_fresh_images(folder, count=40):
    """New images drawn like the training tree's (conftest.blob_image), from another seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    for i in range(count):
        Image.fromarray(blob_image(rng, i % 2)).save(folder / f"fresh{i}.jpeg", quality=90)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, data root): a frozen ResNet-50 at 32 px, one epoch on 300 generated training images (~80 s)."""
    root = write_tree(tmp_path_factory.mktemp("data") / "chest_xray", per_class={"train": 150, "val": 2, "test": 2})
    index = data.scan_dataset(root)
    frame = data.replicate_frame(index.images, {"val_fraction": 0.1, "subsample_per_class": None}, 0)
    config = TrainConfig(arch="resnet50", image_size=SIZE, epochs=1, batch_size=16, train_base=False, augment=False,
                         head_units=8, precision="float32", latency_repeats=1, verbose=0, split_seed=0,
                         feature_cache_dir=str(tmp_path_factory.mktemp("cache")))
    run_dir = tmp_path_factory.mktemp("runs") / "resnet50" / "seed-42"
    train(frame, run_dir, config, data_fingerprint=index.fingerprint)
    return run_dir, root


def cli(module, *args, data_dir=None):
    """Run `python -m <module> ARGS` from the repository root (CXR_DATA_DIR set when data_dir is given)."""
    env = {**os.environ, **({"CXR_DATA_DIR": str(data_dir)} if data_dir else {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)


def old_run_copy(run_dir, destination):
    """A copy of the run as it would be had it been trained before OOD models and calibration existed."""
    shutil.copytree(run_dir, destination)
    (destination / OOD_FILE).unlink()
    record = json.loads((destination / RUN_RECORD_FILE).read_text())
    del record["ood"], record["calibration"]
    (destination / RUN_RECORD_FILE).write_text(json.dumps(record))
    return destination


def test_training_records_the_declared_rate_threshold_and_calibration(trained):
    run_dir, _ = trained
    record = json.loads((run_dir / RUN_RECORD_FILE).read_text())
    detector = load_detector(run_dir / OOD_FILE)
    assert record["ood"]["flag_rate"] == detector.rate == OOD_FLAG_RATE
    assert record["ood"]["threshold"] == detector.threshold and record["ood"]["images"] == {"train": 270, "val": 30}
    val = pd.read_csv(run_dir / "predictions.csv").query("subset == 'val'")
    assert record["calibration"]["prevalence"] == pytest.approx(val["target"].mean())
    assert record["calibration"]["images"] == len(val) and record["calibration"]["fitted_on"] == "val"


def test_flag_fires_on_foreign_images_and_rarely_on_fresh_in_distribution_ones(trained, tmp_path):
    run_dir, _ = trained
    foreign = predict(run_dir, [write_foreign_images(tmp_path / "foreign")])
    fresh = predict(run_dir, [write_fresh_images(tmp_path / "fresh")])
    assert foreign["ood_flag"].all()
    assert fresh["ood_flag"].mean() <= 0.15
    assert foreign["ood_distance"].min() > 2 * fresh["ood_distance"].max()


def test_predictions_carry_every_column_and_the_calibration_of_run_json(trained, tmp_path):
    run_dir, _ = trained
    frame = predict(run_dir, [write_fresh_images(tmp_path / "fresh", count=4)])
    assert list(frame.columns) == list(COLUMNS) and frame.notna().all().all()
    calibration = json.loads((run_dir / RUN_RECORD_FILE).read_text())["calibration"]
    np.testing.assert_allclose(frame["probability"], calibrated_probability(frame["score"], calibration))
    assert frame["probability"].between(0, 1).all()
    assert (frame["probability_prevalence"] == calibration["prevalence"]).all()


def test_an_old_run_keeps_working_says_so_once_and_refits_to_the_trained_detector(trained, tmp_path):
    run_dir, data_root = trained
    old = old_run_copy(run_dir, tmp_path / "old")
    images = write_fresh_images(tmp_path / "fresh", count=2)
    result = cli("cxrlib.predict", old, images, "--out", tmp_path / "old.csv")
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "has no OOD model" in line]
    assert notices == [f"cxrlib.predict: {old} has no OOD model and no calibration (trained before cxrlib fitted "
                       f"them), so ood_distance, ood_threshold, ood_flag, probability, probability_prevalence are "
                       f"empty; add them with: python -m cxrlib.ood fit {old}"]
    frame = pd.read_csv(tmp_path / "old.csv")
    assert list(frame.columns) == list(COLUMNS) and frame["score"].notna().all()
    assert frame[["probability", "probability_prevalence", "ood_distance", "ood_threshold", "ood_flag"]].isna().all().all()

    result = cli("cxrlib.ood", "fit", old, data_dir=data_root)
    assert result.returncode == 0, result.stderr
    assert f"wrote {old / OOD_FILE}" in result.stdout and "oneDNN" not in result.stderr
    refit, trained_record = (json.loads((d / RUN_RECORD_FILE).read_text()) for d in (old, run_dir))
    assert refit["ood"]["threshold"] == pytest.approx(trained_record["ood"]["threshold"], rel=1e-3)
    assert refit["calibration"]["slope"] == pytest.approx(trained_record["calibration"]["slope"], abs=1e-3)
    assert predict(old, [images])["ood_flag"].notna().all()


def test_refit_refuses_another_split_and_names_the_options(trained, tmp_path):
    run_dir, data_root = trained
    old = old_run_copy(run_dir, tmp_path / "old")
    result = cli("cxrlib.ood", "fit", old, "--val-fraction", "0.2", data_dir=data_root)
    assert result.returncode == 1
    assert "not the split" in result.stderr and "--val-fraction and --subsample-per-class" in result.stderr
    assert not (old / OOD_FILE).exists()


def test_refit_of_a_folder_without_a_run_names_the_missing_file(tmp_path):
    result = cli("cxrlib.ood", "fit", tmp_path)
    assert result.returncode == 1 and f"{tmp_path / RUN_RECORD_FILE} is missing" in result.stderr


@pytest.mark.parametrize("damage, message", [
    ("corrupt", "is not a readable OOD file"),
    ("missing", f"{OOD_FILE} is missing although {RUN_RECORD_FILE} records an OOD model; copy it from where the "
                "run was trained, or refit it with: python -m cxrlib.ood fit "),
])
def test_a_damaged_or_lost_ood_file_is_named_with_the_refit_command(trained, tmp_path, damage, message):
    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    if damage == "corrupt":
        (copy / OOD_FILE).write_bytes(b"half a file")
    else:
        (copy / OOD_FILE).unlink()
    with pytest.raises(PredictError, match=message):
        predict(copy, [write_fresh_images(tmp_path / "fresh", count=1)])
