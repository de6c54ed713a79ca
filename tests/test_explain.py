"""Grad-CAM finds the feature map in nested backbones and points at the object that drives the prediction."""
import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib import explain, models

SIZE, SQUARE = 32, 6


def square_images(count: int, seed: int):
    """Noisy images; positives carry a bright square at a random position. Returns images, labels, corners."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 90, (count, SIZE, SIZE, 3)).astype("float32")
    labels = np.arange(count) % 2
    corners = rng.integers(0, SIZE - SQUARE, (count, 2))
    for image, label, (top, left) in zip(images, labels, corners):
        if label:
            image[top:top + SQUARE, left:left + SQUARE] = 250.0
    return images, labels, corners


def nested_square_detector() -> keras.Model:
    """The build_model shape in miniature: pixels -> rescale -> nested conv backbone -> GAP -> head."""
    backbone_input = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(backbone_input)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    backbone = keras.Model(backbone_input, x, name="backbone")
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="prediction")(x)
    return keras.Model(inputs, outputs, name="square_detector")


@pytest.fixture(scope="module")
def trained_detector():
    keras.utils.set_random_seed(0)
    model = nested_square_detector()
    images, labels, _ = square_images(256, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    model.fit(images, labels, epochs=10, batch_size=32, verbose=0)  # ~5 s; learned for seeds 0-4
    return model


def test_feature_layer_is_found_inside_the_nested_backbone(trained_detector):
    assert explain.GradCam(trained_detector).layer_path == ["backbone", "last_conv"]


def test_heatmap_peak_lies_on_the_bright_square(trained_detector):
    images, labels, corners = square_images(40, seed=1)
    heatmaps, probs = explain.GradCam(trained_detector)(images)
    assert heatmaps.shape == (40, SIZE, SIZE) and heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert np.mean((probs >= 0.5) == labels) >= 0.9  # the detector learned the task
    hits = []
    for heatmap, (top, left) in zip(heatmaps[labels == 1], corners[labels == 1]):
        row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        hits.append(top - 1 <= row <= top + SQUARE and left - 1 <= col <= left + SQUARE)
    assert np.mean(hits) >= 0.8


def test_non_chain_models_are_refused():
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(conv)
    skip = keras.layers.GlobalAveragePooling2D()(inputs)  # a second branch the chain re-application misses
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([pooled, skip]))
    with pytest.raises(ValueError, match="chain of top-level layers"):
        explain.GradCam(keras.Model(inputs, outputs))


@pytest.mark.parametrize("arch, layer", [("resnet50", "conv5_block3_out"), ("densenet121", "relu")])
def test_builder_models_expose_their_last_convolutional_block(arch, layer):
    model = models.build_model(arch, 32)
    gradcam = explain.GradCam(model)
    assert gradcam.layer_path == [arch, layer]
    heatmaps, probs = gradcam(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)))
    assert heatmaps.shape == (2, 32, 32) and np.isfinite(heatmaps).all() and probs.shape == (2,)


def test_gradcam_maps_loads_image_files_at_the_models_input_size(trained_detector, tmp_path):
    images, _, _ = square_images(2, seed=3)
    paths = []
    for number, image in enumerate(images):
        path = tmp_path / f"image{number}.png"
        Image.fromarray(np.repeat(image.astype(np.uint8), 2, axis=0)).save(path)  # stored taller than the input
        paths.append(str(path))
    maps = explain.gradcam_maps({"a": trained_detector, "b": trained_detector}, paths)
    assert list(maps) == ["a", "b"]
    for model_maps in maps.values():
        assert model_maps.images.shape == (2, SIZE, SIZE, 3) and model_maps.heatmaps.shape == (2, SIZE, SIZE)
        assert model_maps.probs == pytest.approx(np.ravel(trained_detector(model_maps.images)), abs=1e-4)


@pytest.fixture
def recorded_run(trained_detector, tmp_path):
    """A data root with six test images (relative paths as predictions.csv holds them), the run's predictions and
    its records folder."""
    images, labels, _ = square_images(6, seed=5)
    root, relpaths = tmp_path / "data", []
    for number, (image, label) in enumerate(zip(images, labels)):
        relpath = f"test/{'PNEUMONIA' if label else 'NORMAL'}/image{number}.png"
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(root / relpath)
        relpaths.append(relpath)
    pixels = np.stack([np.asarray(Image.open(root / path), dtype="float32") for path in relpaths])
    predictions = pd.DataFrame({"path": relpaths + ["train/NORMAL/val.png"], "subset": ["test"] * 6 + ["val"],
                                "prob": [*np.ravel(trained_detector(pixels)), 0.5]})
    records = tmp_path / "records"
    records.mkdir()
    predictions.to_csv(records / "predictions.csv", index=False)
    return root, relpaths, predictions, records


def test_a_gradcam_record_gives_back_the_heatmaps_computed_from_the_model(trained_detector, recorded_run):
    root, relpaths, predictions, records = recorded_run
    record = explain.gradcam_record(trained_detector, predictions, root, batch_size=4)
    assert record["path"].tolist() == relpaths and set(record["height"]) == {SIZE // 2}  # test rows only
    explain.check_against_predictions(record, predictions, "model.keras", records)
    explain.write_gradcam_record(record, records)
    recorded = explain.maps_from_record(explain.read_gradcam_record(records), relpaths[::-1], root, SIZE)
    live = explain.gradcam_maps({"m": trained_detector}, [str(root / path) for path in relpaths[::-1]])["m"]
    assert recorded.heatmaps.shape == live.heatmaps.shape == (6, SIZE, SIZE)
    assert np.abs(recorded.heatmaps - live.heatmaps).max() < 1e-3
    assert recorded.probs == pytest.approx(live.probs, abs=1e-6) and np.array_equal(recorded.images, live.images)


def test_a_record_of_another_run_or_a_damaged_record_is_refused_naming_the_file(trained_detector, recorded_run):
    root, relpaths, predictions, records = recorded_run
    record = explain.gradcam_record(trained_detector, predictions, root)
    other_run = predictions.assign(prob=predictions["prob"] * 0.5)
    with pytest.raises(explain.GradcamRecordError, match=r"other\.keras does not reproduce .*predictions\.csv .*pass "
                                                         "the model file of the run"):
        explain.check_against_predictions(record, other_run, "other.keras", records)
    assert explain.read_gradcam_record(records) is None
    explain.write_gradcam_record(record.assign(heatmap=record["heatmap"].str.rsplit(" ", n=1).str[0]), records)
    with pytest.raises(explain.GradcamRecordError, match=r"gradcam\.csv, row 2 \(test/NORMAL/image0\.png\): 255 "
                                                         r"heatmap values for a 16×16 map"):
        explain.read_gradcam_record(records)
    record.drop(columns="prob").to_csv(records / "gradcam.csv", index=False)
    with pytest.raises(explain.GradcamRecordError, match=r"gradcam\.csv lacks columns \['prob'\]"):
        explain.read_gradcam_record(records)
    with pytest.raises(explain.GradcamRecordError, match=r"no row for \['test/NORMAL/elsewhere\.png'\]"):
        explain.maps_from_record(record, ["test/NORMAL/elsewhere.png"], root, SIZE)


def test_the_command_line_writes_the_record_or_says_what_is_missing(trained_detector, recorded_run, tmp_path, capsys):
    from cxrlib.explain.__main__ import main

    root, relpaths, _, records = recorded_run
    model_file = tmp_path / "model.keras"
    trained_detector.save(model_file)
    assert main([str(records), str(model_file), "--data-dir", str(root)]) == 0
    assert "Grad-CAM of 6 test images (16×16 maps)" in capsys.readouterr().out
    assert explain.read_gradcam_record(records)["path"].tolist() == relpaths
    assert main([str(records), str(tmp_path / "nope.keras"), "--data-dir", str(root)]) == 1
    assert "nope.keras (the run's model file) does not exist" in capsys.readouterr().err


def test_a_one_by_one_map_reads_back_as_a_map_not_a_number(tmp_path):
    """At 32 px the backbones' last feature map is 1×1: its one value must not be parsed as a float column."""
    record = pd.DataFrame({"path": ["test/NORMAL/a.png"], "prob": [0.25], "height": [1], "width": [1],
                           "heatmap": ["1.0000"]})
    explain.write_gradcam_record(record, tmp_path)
    assert explain.read_gradcam_record(tmp_path)["heatmap"].tolist() == ["1.0000"]
