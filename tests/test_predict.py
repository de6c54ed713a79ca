"""Predicting new images with a run directory: function and command line, bad files, Grad-CAM at each image's own
size, a quiet console, run errors. The run here has no OOD model nor calibration, as runs trained before them
(tests/test_ood.py covers runs that have them)."""
import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib import models
from cxrlib.contract import MODEL_FILE, RUN_RECORD_FILE
from cxrlib.data import load_image
from cxrlib.predict import COLUMNS, PredictError, collect_images, gradcam_paths, main, predict
from helpers import run_module

SIZE = 32
N_IMAGES = 6


def write_images(folder, count=N_IMAGES, seed=0):
    """Grayscale JPEGs of random pixels, some with a bright blob; returns their paths in sorted order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = rng.integers(0, 120, size=(40, 44), dtype=np.uint8)
        pixels[10:20, 10:20] = 250 * (i % 2)
        Image.fromarray(pixels, mode="L").save(folder / f"image{i}.jpeg")
    return sorted(str(path) for path in folder.glob("*.jpeg"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run dir, model, images folder, image paths): a fresh tiny model whose threshold splits the images."""
    root = tmp_path_factory.mktemp("predict")
    paths = write_images(root / "images" / "nested")
    model = models.build_model("densenet121", SIZE, weights=None, head_units=8)
    prediction = model.get_layer("prediction")
    kernel, bias = prediction.get_weights()
    prediction.set_weights([kernel * 20, bias])  # spread the probabilities (unsaturated) so both labels occur
    probabilities = np.sort(np.ravel(model.predict(np.stack([load_image(p, SIZE) for p in paths]), verbose=0)))
    run_dir = root / "runs" / "smoke" / "densenet121" / "seed-42"
    run_dir.mkdir(parents=True)
    model.save(run_dir / MODEL_FILE)
    threshold = float(probabilities[N_IMAGES // 2 - 1] + probabilities[N_IMAGES // 2]) / 2
    record = {"arch": "densenet121", "config": {"image_size": SIZE},
              "threshold": {"policy": "youden", "value": threshold}}
    (run_dir / RUN_RECORD_FILE).write_text(json.dumps(record))
    return run_dir, model, root / "images", paths


def write_bad_files(folder):
    """A zero-byte image, a text file, a truncated JPEG and garbage with an image name; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an x-ray")
    good = folder / "whole.jpeg"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
    (folder / "truncated.jpeg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    (folder / "garbage.png").write_bytes(b"hello")
    return {"empty.jpeg": "zero-byte", "notes.txt": "not an image", "truncated.jpeg": "truncated",
            "garbage.png": "corrupt"}


def test_predict_matches_the_model_on_a_folder_and_labels_follow_the_threshold(run):
    run_dir, model, folder, paths = run
    with pytest.warns(UserWarning, match="has no OOD model and no calibration"):
        frame = predict(run_dir, [folder], batch_size=4)  # two batches, the last one partial
    assert list(frame.columns) == list(COLUMNS) and frame["path"].tolist() == paths
    expected = np.ravel(model.predict(np.stack([load_image(p, SIZE) for p in paths]), verbose=0))
    np.testing.assert_allclose(frame["score"], expected, rtol=1e-5, atol=1e-6)
    threshold = json.loads((run_dir / RUN_RECORD_FILE).read_text())["threshold"]["value"]
    assert (frame["threshold"] == threshold).all()
    assert ((frame["score"] >= threshold) == (frame["label"] == "PNEUMONIA")).all()
    assert set(frame["label"]) == {"NORMAL", "PNEUMONIA"}
    assert frame[["probability", "probability_prevalence", "ood_score", "ood_threshold", "ood_flag"]].isna().all().all()


def test_given_threshold_replaces_the_runs_and_must_be_a_probability(run):
    run_dir, _, folder, _ = run
    assert (predict(run_dir, [folder], threshold=0.0)["label"] == "PNEUMONIA").all()
    with pytest.raises(PredictError, match="threshold 1.5 is outside"):
        predict(run_dir, [folder], threshold=1.5)


@pytest.mark.slow
def test_cli_writes_the_csv_and_one_gradcam_overlay_per_image(run, tmp_path):
    run_dir, _, folder, paths = run
    before = sorted(folder.rglob("*"))
    result = run_module("cxrlib.predict", run_dir, folder, "--out", tmp_path / "out" / "predictions.csv",
                        "--gradcam", tmp_path / "cams", "--batch-size", 4)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(frame.columns) == [*COLUMNS, "gradcam"] and frame["path"].tolist() == paths
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == [f"image{i}_gradcam.png" for i in range(N_IMAGES)]
    for path, overlay_path in zip(frame["path"], frame["gradcam"]):
        with Image.open(path) as source, Image.open(overlay_path) as overlay:
            assert overlay.size == source.size != (SIZE, SIZE) and overlay.mode == "RGB"
    assert sorted(folder.rglob("*")) == before  # nothing written into the input folder
    assert not list(tmp_path.rglob("*partial*"))


@pytest.mark.slow
def test_cli_prints_the_csv_without_out_and_no_tensorflow_start_up_lines(run):
    run_dir, _, _, paths = run
    result = run_module("cxrlib.predict", run_dir, paths[0])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == ",".join(COLUMNS) and paths[0] in result.stdout
    assert result.stderr.splitlines() == [
        f"cxrlib.predict: {run_dir} has no OOD model and no calibration (trained before cxrlib fitted them), so "
        "ood_score, ood_threshold, ood_flag, probability, probability_prevalence are empty; add them with: "
        f"python -m cxrlib.ood fit {run_dir}",
        "cxrlib.predict: 1 image(s) predicted, 0 input(s) skipped"]


@pytest.mark.slow
def test_cli_reports_each_bad_file_skips_it_and_exits_2(run, tmp_path):
    run_dir, _, _, _ = run
    good = write_images(tmp_path / "mixed", count=2)
    reasons = write_bad_files(tmp_path / "mixed")
    result = run_module("cxrlib.predict", run_dir, tmp_path / "mixed", "--out", tmp_path / "predictions.csv")
    assert result.returncode == 2
    for name, reason in reasons.items():
        assert f"skipped {tmp_path / 'mixed' / name}: {reason}" in result.stderr
    assert " at 0x" not in result.stderr  # no Python object addresses in the reasons
    assert pd.read_csv(tmp_path / "predictions.csv")["path"].tolist() == good


@pytest.mark.slow
def test_cli_exits_1_when_no_input_is_readable(run, tmp_path):
    run_dir, _, _, _ = run
    write_bad_files(tmp_path / "bad")
    result = run_module("cxrlib.predict", run_dir, tmp_path / "bad", tmp_path / "absent.jpeg", "--out",
                        tmp_path / "predictions.csv")
    assert result.returncode == 1
    assert f"skipped {tmp_path / 'absent.jpeg'}: unreadable" in result.stderr
    assert "holds a readable image" in result.stderr and not (tmp_path / "predictions.csv").exists()


def test_predict_warns_about_skipped_files_and_fails_when_none_is_readable(run, tmp_path):
    run_dir, _, _, _ = run
    write_bad_files(tmp_path / "bad")
    with pytest.warns(UserWarning, match="empty.jpeg \\(zero-byte file\\)"), \
            pytest.raises(PredictError, match="holds a readable image"):
        predict(run_dir, [tmp_path / "bad"])


def test_each_file_is_predicted_once_and_hidden_files_are_ignored(tmp_path):
    paths = write_images(tmp_path / "images", count=2)
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0")
    readable, skipped = collect_images([paths[1], tmp_path / "images", paths[1]])
    assert readable == [paths[1], paths[0]] and skipped.empty


def test_gradcam_names_never_collide_nor_replace_an_input(tmp_path):
    inputs = [tmp_path / "a" / "x.jpeg", tmp_path / "b" / "x.png", tmp_path / "b" / "x_gradcam.png"]
    names = gradcam_paths([str(p) for p in inputs], tmp_path / "b")
    assert len(set(names)) == 3 and not set(names) & set(inputs)


@pytest.mark.parametrize("breakage, message", [
    ("no run dir", "does not exist; train it with ./run_all.sh"),
    ("no model", f"{MODEL_FILE} is missing; train it with ./run_all.sh"),
    ("no record", f"{RUN_RECORD_FILE} is missing"),
    ("no threshold", f"{RUN_RECORD_FILE} holds no threshold value"),
    ("bad record", f"{RUN_RECORD_FILE} is not a run record"),
])
def test_unusable_run_directories_name_the_file_and_the_fix(tmp_path, capsys, breakage, message):
    run_dir = tmp_path / "run"
    if breakage != "no run dir":
        run_dir.mkdir()
    if breakage not in ("no run dir", "no model"):
        (run_dir / MODEL_FILE).write_bytes(b"model")
    records = {"no threshold": '{"arch": "resnet50", "threshold": {"policy": "youden"}}', "bad record": "[1, 2"}
    if breakage in records:
        (run_dir / RUN_RECORD_FILE).write_text(records[breakage])
    with pytest.raises(PredictError, match=message):
        predict(run_dir, [tmp_path])
    # The command line says it on stderr and exits 1 (its main, in this process: the tests above start it as one)
    assert main([str(run_dir), str(tmp_path)]) == 1
    assert message in capsys.readouterr().err


def test_a_folder_of_replicates_names_them(tmp_path):
    for seed in (42, 43):
        (tmp_path / "resnet50" / f"seed-{seed}").mkdir(parents=True)
        (tmp_path / "resnet50" / f"seed-{seed}" / MODEL_FILE).write_bytes(b"model")
    with pytest.raises(PredictError, match="pass one of its run folders \\(seed-42, seed-43\\)"):
        predict(tmp_path / "resnet50", [tmp_path])


def test_gradcam_of_a_model_without_a_feature_map_says_to_run_without_it(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(run_dir / MODEL_FILE)
    (run_dir / RUN_RECORD_FILE).write_text(json.dumps({"threshold": {"policy": "fixed", "value": 0.5}}))
    paths = write_images(tmp_path / "images", count=1)
    assert len(predict(run_dir, paths)) == 1
    with pytest.raises(PredictError, match="Grad-CAM cannot explain .*run without --gradcam"):
        predict(run_dir, paths, gradcam_dir=tmp_path / "cams")


def test_a_damaged_model_file_is_named(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / MODEL_FILE).write_bytes(b"not a keras zip")
    (run_dir / RUN_RECORD_FILE).write_text(json.dumps({"threshold": {"policy": "fixed", "value": 0.5}}))
    with pytest.raises(PredictError, match=f"{MODEL_FILE} cannot be loaded"):
        predict(run_dir, write_images(tmp_path / "images", count=1))
