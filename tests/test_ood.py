"""OOD detector and calibration: the multi-layer detector's math and file, the calibration's shape, and a tiny trained
run whose flag fires on foreign images, rarely on fresh in-distribution ones, and that `python -m cxrlib.ood fit`
refits."""
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import blob_image, run_module, write_tree
from PIL import Image

from cxrlib import data
from cxrlib.calibration import calibrated_probability, fit_platt
from cxrlib.backbones import BACKBONES
from cxrlib.contract import MODEL_FILE, OOD_FILE, OOD_FLAG_RATE, RUN_RECORD_FILE
from cxrlib.ood import OodFileError, fit_detector, load_detector
from cxrlib.ood.detector import FILE_FORMAT, LayerGaussian, MahalanobisDetector
from cxrlib.ood.fit import fit_safeguards
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


def two_layers(rng, count, early_shift=0.0, late_shift=0.0):
    """({"early": [N, 12], "late": [N, 20]}, targets): per layer, two classes of correlated Gaussian features."""
    early, targets = gaussian_features(rng, count, early_shift, dims=12)
    late, _ = gaussian_features(rng, count, late_shift, dims=20)
    return {"early": early, "late": late}, targets


def fitted(seed=0, rate=0.05, count=2000, layers=None):
    """A two-layer detector fitted on `count` training and `count` validation rows, and the random generator."""
    rng = np.random.default_rng(seed)
    train_features, train_targets = two_layers(rng, count)
    val_features, _ = two_layers(rng, count)
    return fit_detector(train_features, train_targets, val_features, rate=rate, layers=layers), rng


def test_detector_flags_about_the_declared_rate_in_distribution_and_far_points_always():
    detector, rng = fitted()
    fresh, _ = two_layers(rng, 4000)
    assert 0.03 <= detector.flags(detector.scores(fresh)).mean() <= 0.07
    for shifts in ({"early_shift": 6.0}, {"late_shift": 6.0}):
        shifted, _ = two_layers(rng, 200, **shifts)
        assert detector.flags(detector.scores(shifted)).all()


def test_a_shift_only_a_shallow_layer_sees_is_missed_by_the_deep_layer_alone_and_caught_by_both():
    both, rng = fitted(layers=("early", "late"))
    deep_only, _ = fitted(layers=("late",))
    shifted, _ = two_layers(rng, 200, early_shift=6.0)
    assert deep_only.flags(deep_only.scores(shifted)).mean() <= 0.15
    assert both.flags(both.scores(shifted)).all()


def test_layer_distances_are_standardised_on_validation_and_the_score_is_their_maximum():
    detector, rng = fitted()
    val, _ = two_layers(rng, 3000)
    standardised = (detector.layer_distances(val) - detector.centers) / detector.scales
    assert np.median(standardised, axis=0) == pytest.approx([0, 0], abs=0.1)
    np.testing.assert_allclose(detector.scores(val), standardised.max(axis=1))


def test_one_layer_flags_exactly_the_images_the_previous_detector_flagged():
    """With one layer the standardisation is monotone: the flags are the previous detector's (distance above the
    validation quantile of the distance)."""
    rng = np.random.default_rng(7)
    train_features, train_targets = two_layers(rng, 1500)
    val_features, _ = two_layers(rng, 500)
    detector = fit_detector(train_features, train_targets, val_features, rate=0.01, layers=("late",))
    fresh, _ = two_layers(rng, 3000, late_shift=0.5)
    distances = detector.layer_distances(fresh)[:, 0]
    threshold = np.quantile(detector.layer_distances(val_features)[:, 0], 0.99)
    np.testing.assert_array_equal(detector.flags(detector.scores(fresh)), distances > threshold)


def test_distance_is_to_the_nearest_class_mean_and_features_must_fit():
    detector, _ = fitted(count=1000)
    means = {layer: gaussian.class_means for layer, gaussian in zip(detector.layers, detector.gaussians)}
    assert detector.layer_distances(means) == pytest.approx(np.zeros((2, 2)), abs=1e-9)
    assert detector.dims == {"early": 12, "late": 20}
    with pytest.raises(ValueError, match="shape \\(2, 5\\) from layer 'late' do not fit a detector of 20 features"):
        detector.scores({"early": means["early"], "late": means["late"][:, :5]})
    with pytest.raises(ValueError, match="hold layers \\['early'\\], not 'late'"):
        detector.scores({"early": means["early"]})


def test_fit_refuses_a_rate_outside_0_1_one_class_and_no_layers():
    rng = np.random.default_rng(8)
    features, targets = two_layers(rng, 100)
    with pytest.raises(ValueError, match="rate 1.5 is outside"):
        fit_detector(features, targets, features, rate=1.5)
    with pytest.raises(ValueError, match="both 0 and 1 are needed"):
        fit_detector(features, np.zeros(100), features, rate=0.01)
    with pytest.raises(ValueError, match="no layers"):
        fit_detector(features, targets, features, rate=0.01, layers=())


def test_detector_file_round_trips(tmp_path):
    detector, rng = fitted(count=500, rate=0.01)
    features, _ = two_layers(rng, 50)
    detector.save(tmp_path / OOD_FILE)
    loaded = load_detector(tmp_path / OOD_FILE)
    np.testing.assert_array_equal(loaded.scores(features), detector.scores(features))
    assert (loaded.threshold, loaded.rate, loaded.layers) == (detector.threshold, 0.01, ("early", "late"))
    assert not list(tmp_path.glob("*partial*"))


def detector_arrays(format_name=FILE_FORMAT):
    """The arrays of a valid two-layer ood.npz of `format_name`."""
    return {"format": format_name, "layers": np.array(["early", "late"]), "centers": np.zeros(2), "scales": np.ones(2),
            "threshold": 1.0, "rate": 0.01, "class_means_0": np.zeros((2, 4)), "precision_0": np.eye(4),
            "class_means_1": np.zeros((2, 3)), "precision_1": np.eye(3)}


@pytest.mark.parametrize("content, problem", [
    ("absent", "is missing"),
    (b"not a zip", "is not a readable OOD file"),
    ("previous format", "has format 'mahalanobis-v1' (an older cxrlib's detector: one layer, the pooled features), "
                        f"this cxrlib reads '{FILE_FORMAT}'"),
    ("other format", "has format 'other'"),
    ("missing keys", "lacks class_means_1, precision_1"),
    ("bad shapes", "late: class means (2, 3), precision (4, 4)"),
    ("zero scale", "scales [1. 0.]"),
])
def test_unusable_detector_files_name_the_file_and_the_refit_command(tmp_path, content, problem):
    path = tmp_path / OOD_FILE
    arrays = detector_arrays()
    if content == "previous format":  # what cxrlib wrote before the multi-layer detector
        arrays = {"format": "mahalanobis-v1", "layer": "pool", "class_means": np.zeros((2, 4)),
                  "precision": np.eye(4), "threshold": 1.0, "rate": 0.01}
    elif content == "other format":
        arrays["format"] = "other"
    elif content == "missing keys":
        del arrays["class_means_1"], arrays["precision_1"]
    elif content == "bad shapes":
        arrays["precision_1"] = np.eye(4)
    elif content == "zero scale":
        arrays["scales"] = np.array([1.0, 0.0])
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content != "absent":
        np.savez(path, **arrays)
    with pytest.raises(OodFileError, match=f"^{path}.*{re.escape(problem)}.*refit it with: python -m cxrlib.ood fit {tmp_path}$"):
        load_detector(path)


def test_safeguards_record_the_layers_they_were_fitted_on(tmp_path):
    rng = np.random.default_rng(9)
    rows = {name: pd.DataFrame({"target": np.arange(count) % 2}) for name, count in (("train", 400), ("val", 200))}
    pooled = {name: {"pool": gaussian_features(rng, len(frame))[0]} for name, frame in rows.items()}
    entries = fit_safeguards(lambda name, _rows: pooled[name], rows, rng.uniform(0.1, 0.9, 200), tmp_path)
    assert entries["ood"]["layers"] == ["pool"] and load_detector(tmp_path / OOD_FILE).layers == ("pool",)
    assert entries["ood"]["images"] == {"train": 400, "val": 200} and 0 < entries["ood"]["val_flagged"] <= 0.02


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
    """(run dir, data root): a frozen ResNet-50 at 32 px, one epoch on 300 generated training images (~80 s); without
    the feature cache, so its detector is fitted on images, at the registry's layers."""
    root = write_tree(tmp_path_factory.mktemp("data") / "chest_xray", per_class={"train": 150, "val": 2, "test": 2})
    index = data.scan_dataset(root)
    frame = data.replicate_frame(index.images, {"val_fraction": 0.1, "subsample_per_class": None}, 0)
    config = TrainConfig(arch="resnet50", image_size=SIZE, epochs=1, batch_size=16, weights=None, train_base=False,
                         finetune_epochs=0, augment=False,
                         head_units=8, precision="float32", latency_repeats=1, verbose=0, split_seed=0,
                         use_feature_cache=False)
    run_dir = tmp_path_factory.mktemp("runs") / "resnet50" / "seed-42"
    train(frame, run_dir, config, data_fingerprint=index.fingerprint)
    return run_dir, root


def old_run_copy(run_dir, destination):
    """A copy of the run as it would be had it been trained before OOD models and calibration existed."""
    shutil.copytree(run_dir, destination)
    (destination / OOD_FILE).unlink()
    record = json.loads((destination / RUN_RECORD_FILE).read_text())
    del record["ood"], record["calibration"]
    (destination / RUN_RECORD_FILE).write_text(json.dumps(record))
    return destination


@pytest.mark.slow
def test_training_records_the_declared_rate_threshold_and_calibration(trained):
    run_dir, _ = trained
    record = json.loads((run_dir / RUN_RECORD_FILE).read_text())
    detector = load_detector(run_dir / OOD_FILE)
    assert record["ood"]["flag_rate"] == detector.rate == OOD_FLAG_RATE
    assert record["ood"]["threshold"] == detector.threshold and record["ood"]["images"] == {"train": 270, "val": 30}
    assert record["ood"]["layers"] == list(detector.layers) == list(BACKBONES["resnet50"].ood_layers)
    assert record["ood"]["method"] == "mahalanobis-layers"
    val = pd.read_csv(run_dir / "predictions.csv").query("subset == 'val'")
    assert record["calibration"]["prevalence"] == pytest.approx(val["target"].mean())
    assert record["calibration"]["images"] == len(val) and record["calibration"]["fitted_on"] == "val"


@pytest.mark.slow
def test_flag_fires_on_foreign_images_and_rarely_on_fresh_in_distribution_ones(trained, tmp_path):
    run_dir, _ = trained
    foreign = predict(run_dir, [write_foreign_images(tmp_path / "foreign")])
    fresh = predict(run_dir, [write_fresh_images(tmp_path / "fresh")])
    assert foreign["ood_flag"].all()
    assert fresh["ood_flag"].mean() <= 0.15
    assert foreign["ood_score"].min() > 2 * max(fresh["ood_score"].max(), foreign["ood_threshold"].iloc[0])


@pytest.mark.slow
def test_predictions_carry_every_column_and_the_calibration_of_run_json(trained, tmp_path):
    run_dir, _ = trained
    frame = predict(run_dir, [write_fresh_images(tmp_path / "fresh", count=4)])
    assert list(frame.columns) == list(COLUMNS) and frame.notna().all().all()
    calibration = json.loads((run_dir / RUN_RECORD_FILE).read_text())["calibration"]
    np.testing.assert_allclose(frame["probability"], calibrated_probability(frame["score"], calibration))
    assert frame["probability"].between(0, 1).all()
    assert (frame["probability_prevalence"] == calibration["prevalence"]).all()


@pytest.mark.slow
def test_an_old_run_keeps_working_says_so_once_and_refits_to_the_trained_detector(trained, tmp_path):
    run_dir, data_root = trained
    old = old_run_copy(run_dir, tmp_path / "old")
    images = write_fresh_images(tmp_path / "fresh", count=2)
    result = run_module("cxrlib.predict", old, images, "--out", tmp_path / "old.csv")
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "has no OOD model" in line]
    assert notices == [f"cxrlib.predict: {old} has no OOD model and no calibration (trained before cxrlib fitted "
                       f"them), so ood_score, ood_threshold, ood_flag, probability, probability_prevalence are "
                       f"empty; add them with: python -m cxrlib.ood fit {old}"]
    frame = pd.read_csv(tmp_path / "old.csv")
    assert list(frame.columns) == list(COLUMNS) and frame["score"].notna().all()
    assert frame[["probability", "probability_prevalence", "ood_score", "ood_threshold", "ood_flag"]].isna().all().all()

    result = run_module("cxrlib.ood", "fit", old, data_dir=data_root)
    assert result.returncode == 0, result.stderr
    assert f"wrote {old / OOD_FILE}" in result.stdout and "oneDNN" not in result.stderr
    refit, trained_record = (json.loads((d / RUN_RECORD_FILE).read_text()) for d in (old, run_dir))
    assert refit["ood"]["threshold"] == pytest.approx(trained_record["ood"]["threshold"], rel=1e-3)
    assert refit["calibration"]["slope"] == pytest.approx(trained_record["calibration"]["slope"], abs=1e-3)
    assert predict(old, [images])["ood_flag"].notna().all()


@pytest.mark.slow
def test_refit_refuses_another_split_and_names_the_options(trained, tmp_path):
    run_dir, data_root = trained
    old = old_run_copy(run_dir, tmp_path / "old")
    result = run_module("cxrlib.ood", "fit", old, "--val-fraction", "0.2", data_dir=data_root)
    assert result.returncode == 1
    assert "not the split" in result.stderr and "--val-fraction and --subsample-per-class" in result.stderr
    assert not (old / OOD_FILE).exists()


@pytest.mark.slow
def test_refit_of_a_folder_without_a_run_names_the_missing_file(tmp_path):
    result = run_module("cxrlib.ood", "fit", tmp_path)
    assert result.returncode == 1 and f"{tmp_path / RUN_RECORD_FILE} is missing" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("corrupt", "is not a readable OOD file"),
    ("missing", f"{OOD_FILE} is missing although {RUN_RECORD_FILE} records an OOD model; copy it from where the "
                "run was trained, or refit it with: python -m cxrlib.ood fit "),
    ("previous format", re.escape(f"{OOD_FILE} has format 'mahalanobis-v1' (an older cxrlib's detector: one layer, "
                                  f"the pooled features), this cxrlib reads '{FILE_FORMAT}' (several layers); refit "
                                  "it with: python -m cxrlib.ood fit ")),
    ("unknown layer", f"{OOD_FILE} was fitted on layers \\['conv9_block1_out'\\], which .*{MODEL_FILE} cannot give "
                      "\\(.* has no layer 'conv9_block1_out'\\); refit it with: python -m cxrlib.ood fit "),
    ("other width", f"{OOD_FILE} expects features per layer {{'pool': 7}}, .*{MODEL_FILE} gives {{'pool': 2048}}; "
                    "refit it with"),
])
def test_a_damaged_lost_or_outdated_ood_file_is_named_with_the_refit_command(trained, tmp_path, damage, message):
    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    gaussian = LayerGaussian(np.zeros((2, 7)), np.eye(7))
    if damage == "corrupt":
        (copy / OOD_FILE).write_bytes(b"half a file")
    elif damage == "missing":
        (copy / OOD_FILE).unlink()
    elif damage == "previous format":  # a run fitted by cxrlib before the multi-layer detector
        np.savez(copy / OOD_FILE, format="mahalanobis-v1", layer="pool", class_means=np.zeros((2, 2048)),
                 precision=np.eye(2048), threshold=24.5, rate=0.01)
    else:
        layer = "conv9_block1_out" if damage == "unknown layer" else "pool"
        MahalanobisDetector((layer,), (gaussian,), np.zeros(1), np.ones(1), 1.0, 0.01).save(copy / OOD_FILE)
    with pytest.raises(PredictError, match=message):
        predict(copy, [write_fresh_images(tmp_path / "fresh", count=1)])
