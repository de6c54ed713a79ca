"""The stress test: its declaration and every bad entry, each shift on generated images, the record of an untrained
32 px ResNet-50 and its fitted OOD detector (deterministic, independent of the batch size, reproducing
predictions.csv), the command line and its refusals, the per-condition metrics, their summary across replicates and
notebook 04's section."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import write_tree

from cxrlib import data, models
from cxrlib.contract import (BORDER_FILE, MODEL_FILE, REPO_ROOT, OOD_FILE, PREDICTIONS_FILE, RUN_RECORD_FILE, STRESS_COLUMNS,
                             STRESS_FILE, STRESS_SHIFTS_FILE)
from cxrlib.data.pipeline import make_dataset
from cxrlib.ood.detector import load_detector
from cxrlib.ood.fit import fit_safeguards, image_features
from cxrlib.params import ParameterError
from cxrlib.report import stress as stress_report
from cxrlib.stress import apply, border
from cxrlib.stress.__main__ import main
from cxrlib.stress.record import check_reference, stress_record
from cxrlib.stress.shifts import KINDS, REFERENCE, Declaration, Shift, StressError, load_declaration
from cxrlib.stress.summary import (METRICS, border_summary, condition_metrics, read_stress_record,
                                   run_stress_metrics, summarise_runs)
from cxrlib.train import TrainConfig
from cxrlib.train.record import prediction_rows
from cxrlib.train.replicates import copy_records

SIZE = 32


# --- the declaration ----------------------------------------------------------------------------------------------

def test_the_committed_declaration_covers_every_kind_at_several_strengths():
    declaration = load_declaration(STRESS_SHIFTS_FILE)
    kinds = [shift.kind for shift in declaration.shifts]
    assert list(dict.fromkeys(kinds)) == list(KINDS) and all(kinds.count(kind) >= 3 for kind in KINDS)
    assert declaration.conditions[0] == Shift(REFERENCE, 0.0) and len(declaration.conditions) == len(kinds) + 1


@pytest.mark.parametrize("text, problem", [
    ("seed: [", "is not YAML"),
    ("- crop", "must hold exactly `seed` and `shifts`"),
    ("seed: 1\nshifts: {crop: [0.8]}\nextra: 1", "must hold exactly `seed` and `shifts`"),
    ("seed: -1\nshifts: {crop: [0.8]}", "seed -1 is not a non-negative integer"),
    ("seed: true\nshifts: {crop: [0.8]}", "seed True is not a non-negative integer"),
    ("seed: 1\nshifts: []", "`shifts` must map kinds"),
    ("seed: 1\nshifts: {zoom: [0.8]}", "unknown shift kind 'zoom'"),
    ("seed: 1\nshifts: {crop: []}", "crop needs a non-empty list of strengths"),
    ("seed: 1\nshifts: {crop: 0.8}", "crop needs a non-empty list of strengths"),
    ("seed: 1\nshifts: {crop: [1.2]}", "crop strength 1.2 is not a number in (0, 1)"),
    ("seed: 1\nshifts: {noise: [abc]}", "noise strength 'abc' is not a number"),
    ("seed: 1\nshifts: {gamma: [1.0]}", "gamma strength 1.0 leaves the image unchanged"),
    ("seed: 1\nshifts: {rotate: [0]}", "rotate strength 0 leaves the image unchanged"),
    ("seed: 1\nshifts: {blur: [0.01, 0.01]}", "blur lists a strength twice"),
])
def test_a_bad_declaration_is_refused_naming_the_file_and_the_fix(tmp_path, text, problem):
    path = tmp_path / "shifts.yaml"
    path.write_text(text)
    with pytest.raises(StressError, match=f"^{path}") as error:
        load_declaration(path)
    assert problem in str(error.value)


def test_a_missing_declaration_names_the_default(tmp_path):
    with pytest.raises(StressError, match="does not exist; pass the stress test's declaration"):
        load_declaration(tmp_path / "absent.yaml")


# --- the shifts -------------------------------------------------------------------------------------------------------

def ramp_images(count: int = 2, size: int = 16) -> np.ndarray:
    """Grey ramps (every pixel different), one per image, float32 [count, size, size, 3] in 0..255."""
    ramp = np.linspace(20, 235, size * size, dtype=np.float32).reshape(size, size, 1)
    return np.stack([np.repeat(ramp + 5 * i, 3, axis=2) for i in range(count)])


def shifted(images, kind, strength, seeds=None):
    seeds = np.stack([np.zeros(len(images)), np.arange(len(images))], axis=1) if seeds is None else seeds
    return apply.shift_batch(images, Shift(kind, strength), seeds).numpy()


def test_every_declared_shift_keeps_shape_and_grey_range_and_changes_the_image():
    images = np.random.default_rng(0).uniform(10, 245, (2, 64, 64, 3)).astype(np.float32)
    for shift in load_declaration().shifts:
        out = shifted(images, shift.kind, shift.strength)
        assert out.shape == images.shape and out.dtype == np.float32, shift
        assert out.min() >= 0 and out.max() <= 255 and not np.allclose(out, images), shift
    assert np.array_equal(shifted(images, REFERENCE, 0.0), images)


def test_crop_keeps_the_centre_and_pad_frames_it_in_black():
    images = ramp_images(size=20)
    cropped = shifted(images, "crop", 0.5)
    ramp = lambda y, x: 20 + (20 * y + x) * 215 / 399  # noqa: E731  the ramp's grey level between pixel centres
    assert cropped[0, 0, 0, 0] == pytest.approx(ramp(4.75, 4.75))  # the corners now show the central half's corners
    assert cropped[0, -1, -1, 0] == pytest.approx(ramp(14.25, 14.25))
    padded = shifted(images, "pad", 0.6)
    assert (padded[:, :4] == 0).all() and (padded[:, -4:] == 0).all() and (padded[:, :, :4] == 0).all()
    assert (padded[:, 4:16, 4:16] > 0).all()


def test_exposure_contrast_and_gamma_change_grey_levels_as_declared():
    images = ramp_images()
    assert np.allclose(shifted(images, "exposure", 0.5), images * 0.5, atol=1e-4)
    contrast = shifted(images, "contrast", 0.5)
    assert np.allclose(contrast.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=1e-3)
    assert np.allclose(contrast.std(axis=(1, 2)), images.std(axis=(1, 2)) / 2, rtol=1e-3)
    assert np.allclose(shifted(images, "gamma", 2.0), 255 * (images / 255) ** 2, atol=1e-3)


def test_blur_leaves_a_flat_image_flat_without_a_dark_rim():
    flat = np.full((1, 24, 24, 3), 100.0, np.float32)
    assert np.allclose(shifted(flat, "blur", 0.05), 100.0, atol=1e-3)
    edge = np.zeros((1, 24, 24, 3), np.float32)
    edge[:, :, 12:] = 200
    blurred = shifted(edge, "blur", 0.05)
    assert 0 < blurred[0, 5, 11, 0] < 100 < blurred[0, 5, 12, 0] < 200


def test_noise_is_the_images_own_whatever_the_batch_and_scales_with_its_strength():
    images = np.full((3, 16, 16, 3), 128.0, np.float32)  # mid-grey: 16 SDs from either clipping bound
    seeds = np.array([[36, 0], [36, 1], [36, 2]])
    together = shifted(images, "noise", 8.0, seeds)
    alone = shifted(images[2:], "noise", 8.0, seeds[2:])
    assert np.array_equal(together[2:], alone) and not np.allclose(together[0] - images[0], together[1] - images[1])
    assert np.array_equal(together[..., 0], together[..., 2])  # the same grey noise in every channel
    assert np.allclose(shifted(images, "noise", 4.0, seeds) - images, (together - images) / 2, atol=1e-3)
    assert (together - images).std() == pytest.approx(8.0, rel=0.15)


def test_rotation_turns_anticlockwise_with_mirrored_corners():
    images = ramp_images(count=1, size=9)
    assert np.allclose(shifted(images, "rotate", 90.0)[0, ..., 0], np.rot90(images[0, ..., 0]), atol=1e-3)
    assert shifted(images, "rotate", 15.0).min() > 0  # no black corners: pad is the shift that adds black


def test_an_unknown_kind_is_refused_naming_the_declaration():
    with pytest.raises(ValueError, match="unknown shift kind 'zoom'.*stress/shifts.yaml"):
        apply.shift_batch(ramp_images(), Shift("zoom", 0.5), np.zeros((2, 2)))


# --- the record of a run -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("data") / "chest_xray", per_class={"train": 12, "val": 4, "test": 4})


@pytest.fixture(scope="module")
def run_dir(tree, tmp_path_factory):
    """An untrained 32 px ResNet-50 as a finished run: model.keras, ood.npz fitted on its tree, run.json (threshold
    at the median test score, so both classes are called) and predictions.csv."""
    index = data.scan_dataset(tree)
    frame = data.replicate_frame(index.images, {"val_fraction": 0.3, "subsample_per_class": None}, 1)
    subsets = {name: frame[frame["subset"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    model = models.build_model("resnet50", SIZE, head_units=8)
    probs = {name: model.predict(make_dataset(rows, SIZE, 8, cache=None), verbose=0).ravel()
             for name, rows in subsets.items()}
    directory = tmp_path_factory.mktemp("runs") / "resnet50" / "seed-1"
    directory.mkdir(parents=True)
    fit_safeguards(image_features(model, SIZE, 8), subsets, probs["val"], directory)
    model.save(directory / MODEL_FILE)
    predictions = pd.concat([prediction_rows(subsets[name], name, probs[name]) for name in ("val", "test")])
    predictions.to_csv(directory / PREDICTIONS_FILE, index=False)
    record = {"arch": "resnet50", "seed": 1, "threshold": {"policy": "fixed", "value": float(np.median(probs["test"]))}}
    (directory / RUN_RECORD_FILE).write_text(json.dumps(record))
    return directory


def two_shifts() -> Declaration:
    return Declaration((Shift("noise", 8.0), Shift("crop", 0.8)), seed=36, source=STRESS_SHIFTS_FILE)


@pytest.mark.slow  # scores a trained model: the full suite runs it, the fast lane does not
def test_record_lists_every_test_image_under_every_condition_and_reproduces_predictions(tree, run_dir):
    predictions = pd.read_csv(run_dir / PREDICTIONS_FILE)
    rows = predictions[predictions["subset"] == "test"].assign(path=lambda frame: [str(tree / p) for p in frame["path"]])
    model, detector = models.load_model(run_dir / MODEL_FILE), load_detector(run_dir / OOD_FILE)
    record = stress_record(model, detector, rows, two_shifts(), batch_size=3)
    assert list(record.columns) == list(STRESS_COLUMNS) and len(record) == 3 * len(rows)
    assert list(dict.fromkeys(record["shift"])) == [REFERENCE, "noise", "crop"]
    assert list(record.loc[record["shift"] == "crop", "path"]) == list(predictions.query("subset == 'test'")["path"])
    reference = record[record["shift"] == REFERENCE].set_index("path")["prob"]
    check_reference(reference, predictions, run_dir / MODEL_FILE)
    assert (record["ood_flag"] == (record["ood_score"] > detector.threshold)).all()
    again = stress_record(model, detector, rows, two_shifts(), batch_size=8)
    assert np.allclose(again["prob"], record["prob"], atol=1e-5) and np.allclose(again["ood_score"], record["ood_score"],
                                                                                  atol=1e-3)
    with pytest.raises(StressError, match="does not reproduce the test probabilities"):
        check_reference(reference + 0.01, predictions, run_dir / MODEL_FILE)


@pytest.mark.slow  # scores a trained model: the full suite runs it, the fast lane does not
def test_the_command_writes_the_record_and_prints_each_condition(tree, run_dir, tmp_path, capsys):
    shifts = tmp_path / "shifts.yaml"
    shifts.write_text("seed: 36\nshifts: {exposure: [0.6], rotate: [10]}\n")
    assert main([str(run_dir), "--data-dir", str(tree), "--shifts", str(shifts), "--out-dir", str(tmp_path),
                 "--border-check"]) == 0
    record = read_stress_record(tmp_path)
    assert len(record) == 3 * 8 and not (run_dir / STRESS_FILE).exists() and (tmp_path / BORDER_FILE).is_file()
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / STRESS_FILE} (3 conditions" in printed and "exposure" in printed and "rotate" in printed


@pytest.mark.parametrize("breaks, problem", [
    (lambda run, tree: (run / MODEL_FILE).unlink(), "model.keras is missing; the stress test needs the run's model"),
    (lambda run, tree: (run / OOD_FILE).unlink(), "ood.npz is missing; refit it with: python -m cxrlib.ood fit"),
    (lambda run, tree: (run / PREDICTIONS_FILE).unlink(), "predictions.csv is missing; pass a finished run"),
    (lambda run, tree: pd.read_csv(run / PREDICTIONS_FILE).query("subset == 'val'").to_csv(run / PREDICTIONS_FILE),
     "holds no test rows"),
    (lambda run, tree: next((tree / "test" / "NORMAL").iterdir()).unlink(), "are not in"),
    (lambda run, tree: pd.read_csv(run / PREDICTIONS_FILE).assign(prob=0.5).to_csv(run / PREDICTIONS_FILE),
     "does not reproduce the test probabilities"),
])
@pytest.mark.slow  # scores a trained model: the full suite runs it, the fast lane does not
def test_the_command_refuses_a_run_it_cannot_use(tree, run_dir, tmp_path, capsys, breaks, problem):
    broken_run, broken_tree = tmp_path / "run", tmp_path / "chest_xray"
    shutil.copytree(run_dir, broken_run)
    shutil.copytree(tree, broken_tree)
    breaks(broken_run, broken_tree)
    shifts = tmp_path / "shifts.yaml"
    shifts.write_text("seed: 36\nshifts: {exposure: [0.6]}\n")
    assert main([str(broken_run), "--data-dir", str(broken_tree), "--shifts", str(shifts)]) == 1
    assert problem in capsys.readouterr().err and not (broken_run / STRESS_FILE).exists()


def test_stress_test_needs_the_ood_detector():
    with pytest.raises(ParameterError, match="stress_test=True needs fit_safeguards=True"):
        TrainConfig(arch="resnet50", fit_safeguards=False)
    assert TrainConfig(arch="resnet50", fit_safeguards=False, stress_test=False).stress_test is False


def test_copying_records_drops_an_older_stress_record_the_run_lacks(tmp_path):
    run, destination = tmp_path / "run", tmp_path / "records"
    for folder in (run, destination):
        folder.mkdir()
    for name in (RUN_RECORD_FILE, "history.csv", PREDICTIONS_FILE):
        (run / name).write_text(name)
    (destination / STRESS_FILE).write_text("an older run's record")
    copy_records(run, destination)
    assert sorted(path.name for path in destination.iterdir()) == sorted([RUN_RECORD_FILE, "history.csv",
                                                                           PREDICTIONS_FILE])


# --- the black border of validation images ---------------------------------------------------------------------------

def framed_image(size: int = 20, top: int = 3, left: int = 2) -> np.ndarray:
    """A mid-grey image [1, S, S, 3] with black rows on top, black columns on the left and one black pixel inside."""
    image = np.full((1, size, size, 3), 120.0, np.float32)
    image[:, :top], image[:, :, :left], image[:, size // 2, size // 2] = 0.0, 0.0, 0.0
    image[:, -1, -1] = 200.0  # the band's median stays 120
    return image


def test_masking_fills_black_band_pixels_with_the_median_inside_and_keeps_the_rest():
    image = framed_image(top=3)  # the band of a 20 px image is 2 px wide: the third black row lies inside it
    masked = border.mask_band(image)
    assert (masked[:, :2] == 120).all() and (masked[:, :, :2] == 120).all() and (masked[0, 2, 2:18, 0] == 0).all()
    assert masked[0, 10, 10, 0] == 0
    assert masked[0, -1, -1, 0] == 200 and np.array_equal(border.mask_band(np.full_like(image, 50.0)), image * 0 + 50)


def test_the_frame_is_cropped_away_and_a_frameless_or_mostly_black_image_is_left_whole():
    image = framed_image()
    assert np.allclose(border.frame_boxes(image), [[3 / 19, 2 / 19, 1.0, 1.0]])
    cropped = border.crop_frame(image)
    assert cropped.shape == image.shape and (cropped[0, 0, 5:, 0] > 100).all() and (cropped[0, 5:, 0, 0] > 100).all()
    plain = np.full_like(image, 90.0)
    assert np.array_equal(border.crop_frame(plain), plain)
    assert np.allclose(border.frame_boxes(framed_image(top=12)), [[0.0, 0.0, 1.0, 1.0]])


@pytest.mark.slow  # scores a trained model: the full suite runs it, the fast lane does not
def test_border_check_scores_validation_images_only_and_reproduces_predictions(tree, run_dir, tmp_path):
    written = border.border_check_run(run_dir, tree, batch_size=3, out_dir=tmp_path)
    record = pd.read_csv(written)
    val = pd.read_csv(run_dir / PREDICTIONS_FILE).query("subset == 'val'")
    assert written == tmp_path / BORDER_FILE and list(record.columns) == list(border.BORDER_COLUMNS)
    assert list(record["path"]) == list(val["path"]) and record["path"].str.startswith("train/").all()
    assert np.allclose(record["prob"], val["prob"], atol=1e-5)


def hand_border_record() -> pd.DataFrame:
    """Two NORMAL and two PNEUMONIA validation images; masking turns the first NORMAL one PNEUMONIA."""
    return pd.DataFrame({"path": list("abcd"), "target": [0, 0, 1, 1], "black_in_band": [0.3, 0.0, 0.02, 0.0],
                         "framed": [True, False, False, False], "prob": [0.2, 0.3, 0.7, 0.8],
                         "prob_masked": [0.75, 0.3, 0.7, 0.8], "prob_cropped": [0.4, 0.3, 0.6, 0.8]})


def test_border_summary_gives_each_class_its_calls_as_decoded_masked_and_cropped():
    summary = border_summary(hand_border_record(), 0.5).set_index("images")
    normal = summary.loc["NORMAL"]
    assert normal["count"] == 2 and normal["black_in_band"] == 0.5 and normal["framed"] == 0.5
    assert (normal["called"], normal["called_masked"], normal["called_cropped"]) == (0.0, 0.5, 0.0)
    assert normal["change_masked"] == pytest.approx(0.275) and np.isnan(normal["roc_auc"])
    assert summary.loc["all", "roc_auc"] == 1.0 and summary.loc["all", "roc_auc_masked"] == 0.75


# --- what a record says ------------------------------------------------------------------------------------------------

def hand_record(flip_normals: int = 2, flagged: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """Four NORMAL and four PNEUMONIA images; under `crop 0.8` the first ``flip_normals`` NORMAL images turn PNEUMONIA
    and the first ``flagged`` of them are flagged."""
    paths = [f"test/{'NORMAL' if i < 4 else 'PNEUMONIA'}/img{i}.jpeg" for i in range(8)]
    targets = pd.Series([0] * 4 + [1] * 4, index=paths)
    reference = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    crop = reference.copy()
    crop[:flip_normals] = 0.95
    flags = np.zeros(8, bool)
    flags[:flagged] = True
    record = pd.concat([
        pd.DataFrame({"shift": REFERENCE, "strength": 0.0, "path": paths, "prob": reference, "ood_score": 0.0,
                      "ood_flag": False}),
        pd.DataFrame({"shift": "crop", "strength": 0.8, "path": paths, "prob": crop, "ood_score": flags * 9.0,
                      "ood_flag": flags})], ignore_index=True)
    return record, targets


def test_condition_metrics_count_calls_flags_and_flips_per_class():
    record, targets = hand_record()
    metrics = condition_metrics(record, targets, threshold=0.5).set_index("shift")
    assert metrics.loc[REFERENCE, ["normal_called_pneumonia", "pneumonia_called_pneumonia", "roc_auc", "flipped"]] \
        .tolist() == [0.0, 1.0, 1.0, 0.0]
    crop = metrics.loc["crop"]
    assert crop["normal_called_pneumonia"] == 0.5 and crop["pneumonia_called_pneumonia"] == 1.0
    assert crop["flipped"] == 2 / 8 and crop["ood_flagged"] == 1 / 8 and crop["flipped_unflagged"] == 1 / 8
    assert crop["roc_auc"] == 8 / 16 and crop["n_normal"] == crop["n_pneumonia"] == 4


def test_a_record_naming_an_image_the_run_did_not_predict_is_refused():
    record, targets = hand_record()
    with pytest.raises(StressError, match="img0.jpeg, which is not among the run's test predictions"):
        condition_metrics(record, targets.iloc[1:], 0.5)


def write_records(folder, seed: int, record: pd.DataFrame | None, targets: pd.Series, arch: str = "resnet50"):
    """A run's records folder: run.json, predictions.csv and (unless None) stress.csv."""
    folder.mkdir(parents=True)
    (folder / RUN_RECORD_FILE).write_text(json.dumps({"arch": arch, "seed": seed, "threshold": {"value": 0.5}}))
    pd.DataFrame({"path": targets.index, "subset": "test", "label": np.where(targets, "PNEUMONIA", "NORMAL"),
                  "target": targets.to_numpy(), "patient_id": "p", "prob": 0.5}).to_csv(folder / PREDICTIONS_FILE,
                                                                                            index=False)
    if record is not None:
        record.to_csv(folder / STRESS_FILE, index=False)
    return folder


@pytest.mark.parametrize("change, problem", [
    (lambda record: record.drop(columns="ood_flag"), "lacks columns ['ood_flag']"),
    (lambda record: record[record["shift"] != REFERENCE], "has no 'none' rows"),
    (lambda record: record.assign(ood_flag="maybe"), "ood_flag holds ['maybe']"),
])
def test_a_bad_stress_record_is_refused_with_the_command_that_rewrites_it(tmp_path, change, problem):
    record, _ = hand_record()
    change(record).to_csv(tmp_path / STRESS_FILE, index=False)
    with pytest.raises(StressError, match=f"^{tmp_path / STRESS_FILE}.*python -m cxrlib.stress RUN_DIR$") as error:
        read_stress_record(tmp_path)
    assert problem in str(error.value)


def test_runs_without_a_record_give_none_and_several_replicates_give_intervals(tmp_path):
    record, targets = hand_record()
    assert run_stress_metrics(write_records(tmp_path / "bare", 1, None, targets)) is None
    per_run = [run_stress_metrics(write_records(tmp_path / f"seed-{seed}", seed, hand_record(flips)[0], targets))
               for seed, flips in ((1, 1), (2, 2), (3, 3))]
    summary = summarise_runs(per_run).set_index(["shift", "metric"])
    flipped = summary.loc[("crop", "flipped")]
    assert flipped["replicates"] == 3 and flipped["mean"] == pytest.approx(2 / 8)
    assert flipped["low"] == pytest.approx(2 / 8 - 4.302653 / 8 / np.sqrt(3), rel=1e-5)
    single = summarise_runs(per_run[:1]).set_index(["shift", "metric"]).loc[("crop", "flipped")]
    assert single["replicates"] == 1 and np.isnan(single["low"]) and set(summary.index.get_level_values(1)) == set(METRICS)


# --- notebook 04's section --------------------------------------------------------------------------------------------

class FakeRun:
    def __init__(self, arch, run_dir):
        self.arch, self.run_dir = arch, run_dir


def shown_by(section_call, monkeypatch) -> list:
    shown = []
    monkeypatch.setattr(stress_report, "display", shown.append)
    section_call()
    return shown


def test_the_section_without_records_says_in_one_sentence_which_command_creates_them(tmp_path, monkeypatch):
    _, targets = hand_record()
    runs = [FakeRun("resnet50", write_records(tmp_path / "r", 1, None, targets)), FakeRun("ensemble", None)]
    shown = shown_by(lambda: stress_report.section(runs), monkeypatch)
    assert len(shown) == 1 and "python -m cxrlib.stress runs/<profile>/<arch>/seed-<k>" in shown[0].data
    assert shown[0].data.count(". ") == 0


def test_the_section_shows_each_architecture_with_intervals_and_what_the_flag_misses(tmp_path, monkeypatch):
    _, targets = hand_record()
    runs = [FakeRun(arch, write_records(tmp_path / arch / f"seed-{seed}", seed, hand_record(flips, 0)[0], targets, arch))
            for arch in ("resnet50", "densenet121") for seed, flips in ((1, 1), (2, 3))]
    shown = shown_by(lambda: stress_report.section(runs), monkeypatch)
    texts = " ".join(item.data for item in shown if isinstance(getattr(item, "data", None), str))
    frames = [item.data for item in shown if isinstance(getattr(item, "data", None), pd.DataFrame)]
    assert "**ResNet-50** (2 replicates: mean and 95% t-interval across them)" in texts
    assert "DenseNet-121" in texts and "crop 0.8 (25%)" in texts and "flip without a flag" in texts
    assert len(frames) == 2
    crop = frames[0].set_index("shift").loc["crop"]
    assert crop["decisions flipped"].startswith("25.0% (") and frames[0]["strength"].iloc[0] == "–"


def test_the_note_script_writes_tables_flag_sentences_border_checks_and_commands(tmp_path):
    _, targets = hand_record()
    folders = [write_records(tmp_path / arch, 1, hand_record(2, 1)[0], targets, arch)
               for arch in ("resnet50", "densenet121")]
    hand_border_record().to_csv(folders[0] / BORDER_FILE, index=False)
    note = tmp_path / "STRESS.md"
    result = subprocess.run([sys.executable, "scripts/stress_note.py", *map(str, folders), "--command",
                             "python -m cxrlib.stress RUN", "--out", str(note)], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    text = note.read_text()
    assert "## ResNet-50 (one replicate: single values, no interval)" in text and "## DenseNet-121" in text
    assert "python -m cxrlib.stress RUN" in text and "| NORMAL called PNEUMONIA " in text
    assert "decisions flip without a flag for at least 5% of the test images under crop 0.8 (12%)" in text
    assert "### ResNet-50, seed 1" in text and "### DenseNet-121" not in text
    assert "went from" not in text  # these records lack crop 0.9 and exposure 0.8: no plain sentence
    assert "moves the share of NORMAL validation images called PNEUMONIA from 0.0% to 50.0% (cropping the frame: " \
           "0.0%), their mean score by +0.275, and the validation ROC-AUC from 1.000 to 0.750" in text
    empty = subprocess.run([sys.executable, "scripts/stress_note.py", str(tmp_path), "--out", str(note)],
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert empty.returncode == 1 and "holds a stress.csv" in empty.stderr


# --- the one plain sentence (docs/STRESS.md, README, the model card, the index) ----------------------------------------

def plain_records(tmp_path) -> list:
    """Per architecture one run: unshifted, 1 of 4 NORMAL images called PNEUMONIA; under crop 0.9 3 of 4 (1 of the 8
    images flagged); under exposure 0.8 2 of 4 (no image flagged)."""
    paths = [f"test/{'NORMAL' if i < 4 else 'PNEUMONIA'}/img{i}.jpeg" for i in range(8)]
    targets = pd.Series([0] * 4 + [1] * 4, index=paths)
    probs = {(REFERENCE, 0.0): [0.9, 0.1, 0.2, 0.3], ("crop", 0.9): [0.9, 0.8, 0.7, 0.3],
             ("exposure", 0.8): [0.9, 0.8, 0.2, 0.3]}
    record = pd.concat([pd.DataFrame({"shift": shift, "strength": strength, "path": paths,
                                      "prob": normal + [0.9] * 4, "ood_score": 0.0,
                                      "ood_flag": [shift == "crop" and i == 0 for i in range(8)]})
                        for (shift, strength), normal in probs.items()], ignore_index=True)
    return [write_records(tmp_path / arch / "seed-1", 1, record, targets, arch) for arch in ("resnet50", "densenet121")]


def test_the_plain_sentence_names_the_mild_shifts_each_architectures_false_alarms_and_the_most_flagged(tmp_path):
    plain_records(tmp_path)
    assert stress_report.measured_dirs(tmp_path) == [tmp_path / "resnet50" / "seed-1",
                                                     tmp_path / "densenet121" / "seed-1"]
    assert stress_report.measured_sentence(tmp_path) == (
        "With the field of view 10% tighter on each side (crop 0.9) or the exposure 20% darker (exposure 0.8), the "
        "share of NORMAL test X-rays called PNEUMONIA went from 25.0% unshifted to 75.0% and 50.0% for ResNet-50, and from "
        "25.0% to 75.0% and 50.0% for DenseNet-121, while the out-of-distribution flag fired on at most 12.5% of the "
        "images so changed.")
    assert stress_report.measured_sentence(tmp_path / "nothing") is None


def test_readme_the_card_and_the_note_state_the_committed_measurement_in_the_same_words():
    sentence = stress_report.measured_sentence()
    assert sentence is not None and "went from" in sentence
    for page in ("README.md", "docs/MODEL_CARD.md", "docs/STRESS.md"):
        assert sentence in " ".join((REPO_ROOT / page).read_text().split()), page


def test_the_index_quotes_the_studys_own_records_or_links_the_committed_measurement(tmp_path):
    from cxrlib.runner import index
    plain_records(tmp_path / "study" / "runs")
    own = index.stress_record(tmp_path / "study")
    assert own["own"] and own["href"] is None and own["sentence"].startswith("With the field of view")
    assert "25.0% unshifted to 75.0% and 50.0% for ResNet-50" in own["sentence"]
    elsewhere = index.stress_record(REPO_ROOT / "reports" / "cpu-confirmatory")
    assert elsewhere == {"sentence": stress_report.measured_sentence(), "own": False, "href": "../../docs/STRESS.md"}
