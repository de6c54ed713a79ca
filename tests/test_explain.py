"""Grad-CAM and HiResCAM find the feature map in nested backbones and point at the object that drives the prediction;
maps for either class; the chest region's share; the model-randomisation check; the records, old and current."""
import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib import explain, models
from cxrlib.backbones import BACKBONES

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
    explain.write_gradcam_record(record.assign(evidence=record["evidence"].str.rsplit(" ", n=1).str[0]), records)
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
    out = capsys.readouterr().out
    assert "HiResCAM at last_conv of 6 test images (16×16 maps)" in out and "rank correlation with a random" in out
    assert explain.read_gradcam_record(records)["path"].tolist() == relpaths
    assert explain.read_sanity_record(records)["path"].tolist() == relpaths
    assert main([str(records), str(tmp_path / "nope.keras"), "--data-dir", str(root)]) == 1
    assert "nope.keras (the run's model file) does not exist" in capsys.readouterr().err


def test_a_one_by_one_map_reads_back_as_a_map_not_a_number(tmp_path):
    """At 32 px the backbones' last feature map is 1×1: its one value must not be parsed as a float column."""
    record = pd.DataFrame({"path": ["test/NORMAL/a.png"], "prob": [0.25], "height": [1], "width": [1],
                           "heatmap": ["1.0000"]})
    explain.write_gradcam_record(record, tmp_path)
    assert explain.read_gradcam_record(tmp_path)["evidence"].tolist() == ["1.0000"]


def test_an_old_format_record_is_read_and_labelled_as_the_old_method_with_its_empty_maps(tmp_path):
    """A gradcam.csv from before issue 35 (no method column, PNEUMONIA maps only) still reads, named as the old method;
    its maps are drawn as recorded, for PNEUMONIA, and an empty one stays empty (no NORMAL map is invented)."""
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(tmp_path / "a.png")
    pd.DataFrame({"path": ["a.png", "b.png"], "prob": [0.9, 0.1], "height": [2, 2], "width": [2, 2],
                  "heatmap": ["1.0000 0.5000 0.0000 0.0000", "0.0000 0.0000 0.0000 0.0000"]}).to_csv(
        tmp_path / "gradcam.csv", index=False)
    Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(tmp_path / "b.png")
    record = explain.read_gradcam_record(tmp_path)
    assert explain.is_old(record) and set(record["method"]) == {explain.OLD_METHOD}
    maps = explain.maps_from_record(record, ["a.png", "b.png"], tmp_path, 8, threshold=0.5)
    assert maps.classes.tolist() == [1, 1] and maps.method == explain.OLD_METHOD
    assert maps.heatmaps[1].max() == 0 and maps.heatmaps[0][:4, :4].min() == 1.0  # nearest: one block per cell
    assert maps.outside[0] == pytest.approx(1 - explain.inside_fractions(2, 2)[0, :2] @ [1, 0.5] / 1.5)
    assert np.isnan(maps.outside[1])


def test_a_current_record_draws_the_class_the_model_chose_so_no_map_of_a_normal_call_is_empty(tmp_path):
    """The signed map holds both classes: an image called NORMAL gets its NORMAL evidence (the negative part)."""
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(tmp_path / "a.png")
    record = pd.DataFrame({"path": ["a.png"], "prob": [0.2], "method": ["HiResCAM at x"], "layer": ["x"],
                           "height": [2], "width": [2], "scale": [3.0], "evidence": ["0.5000 -1.0000 -0.2500 0.0000"]})
    explain.write_gradcam_record(record, tmp_path)
    read = explain.read_gradcam_record(tmp_path)
    assert not explain.is_old(read)
    called_normal = explain.maps_from_record(read, ["a.png"], tmp_path, 8, threshold=0.5)
    assert called_normal.classes.tolist() == [0] and called_normal.method == "HiResCAM at x"
    assert called_normal.cells[0].tolist() == [[0, 1], [0.25, 0]]
    called_pneumonia = explain.maps_from_record(read, ["a.png"], tmp_path, 8, threshold=0.1)
    assert called_pneumonia.classes.tolist() == [1] and called_pneumonia.cells[0].tolist() == [[1, 0], [0, 0]]


def test_class_maps_keep_each_class_part_of_the_signed_map_scaled_to_its_own_maximum():
    signed = np.array([[[2.0, -4.0], [1.0, 0.0]], [[-1.0, -2.0], [-3.0, -4.0]]])
    assert explain.class_maps(signed, 1).tolist() == [[[1, 0], [0.5, 0]], [[0, 0], [0, 0]]]
    assert explain.class_maps(signed, [0, 0]).tolist() == [[[0, 1], [0, 0]], [[0.25, 0.5], [0.75, 1]]]
    assert explain.chosen_classes([0.2, 0.7, 0.5], 0.5).tolist() == [0, 1, 1]


def test_hirescam_equals_grad_cam_before_global_pooling_and_differs_at_an_earlier_layer(trained_detector):
    """HiResCAM multiplies gradient and activation cell by cell. Right before global average pooling the gradient is
    the same in every cell, so it equals Grad-CAM (whose channel weights are the gradients' spatial means) and finds
    the square as Grad-CAM does; at an earlier layer the two differ."""
    images, labels, corners = square_images(40, seed=2)
    hires = explain.GradCam(trained_detector, method=explain.HIRESCAM)
    heatmaps, _ = hires(images)
    hits = [top - 1 <= np.unravel_index(np.argmax(h), h.shape)[0] <= top + SQUARE
            and left - 1 <= np.unravel_index(np.argmax(h), h.shape)[1] <= left + SQUARE
            for h, (top, left) in zip(heatmaps[labels == 1], corners[labels == 1])]
    assert np.mean(hits) >= 0.8
    assert hires.evidence(images)[0] == pytest.approx(explain.GradCam(trained_detector).evidence(images)[0], abs=1e-6)
    first_conv = trained_detector.get_layer("backbone").layers[1].name
    early = [explain.GradCam(trained_detector, first_conv, method).evidence(images)[0]
             for method in (explain.HIRESCAM, explain.GRADCAM)]
    assert early[0].shape == (40, SIZE, SIZE) and np.median(explain.rank_correlations(*early)) < 0.99
    with pytest.raises(ValueError, match="method 'lime' is not one of"):
        explain.GradCam(trained_detector, method="lime")


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_the_reports_method_is_hirescam_at_the_stride_16_stage_with_four_times_the_cells(arch):
    model = models.build_model(arch, 64)
    gradcam = explain.explainer(model)
    assert gradcam.method == explain.HIRESCAM and gradcam.layer_path == [arch, BACKBONES[arch].cam_layer]
    signed, probs = gradcam.evidence(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)))
    assert signed.shape == (2, 4, 4) and np.isfinite(signed).all()  # the last layer: 2×2 at 64 px
    assert explain.method_words(gradcam) == f"HiResCAM at {BACKBONES[arch].cam_layer}"


def test_the_share_outside_the_chest_box_warns_a_map_at_the_edge_and_not_one_in_the_centre():
    inside = explain.inside_fractions(6, 6)
    assert inside.sum() == pytest.approx(36 * explain.CHEST_BOX.area)
    assert inside[2:4, 2:4] == pytest.approx(np.ones((2, 2))) and inside[0, 0] == pytest.approx(0.4 * 0.25)
    corner, centre, uniform = np.zeros((6, 6)), np.zeros((6, 6)), np.ones((6, 6))
    corner[0, 0], centre[3, 2] = 1.0, 1.0
    shares = explain.outside_shares(np.stack([corner, centre, uniform, np.zeros((6, 6))]))
    assert shares[:3] == pytest.approx([0.9, 0.0, explain.UNIFORM_OUTSIDE]) and np.isnan(shares[3])  # corner: 10% in
    assert explain.warned(shares).tolist() == [True, False, False, False]


def test_rank_correlations_are_spearmans_with_ties_and_a_constant_map_is_undefined():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(5, 3, 3)), rng.normal(size=(5, 3, 3))
    second[0] = np.round(second[0])  # ties
    expected = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(first, second)]
    assert explain.rank_correlations(first, second) == pytest.approx(expected)
    assert np.isnan(explain.rank_correlations(first[:1], np.zeros((1, 3, 3)))[0])


def test_the_randomised_model_is_the_same_architecture_with_other_weights_and_its_maps_differ(trained_detector):
    """The check can fail: a randomised copy that kept the trained weights would give a rank correlation of 1."""
    randomised = explain.randomised_model(trained_detector, seed=7)
    again = explain.randomised_model(trained_detector, seed=7)
    assert [w.shape for w in randomised.weights] == [w.shape for w in trained_detector.weights]
    assert all(not np.allclose(np.asarray(a), np.asarray(b)) for a, b in
               zip(randomised.weights, trained_detector.weights) if "kernel" in a.path)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(randomised.weights, again.weights))
    images, labels, _ = square_images(30, seed=4)
    trained_maps = explain.GradCam(trained_detector, method=explain.HIRESCAM).evidence(images)[0]
    random_maps = explain.GradCam(randomised, method=explain.HIRESCAM).evidence(images)[0]
    positives = explain.rank_correlations(trained_maps, random_maps)[labels == 1]
    assert np.median(positives) < 0.5
    assert explain.rank_correlations(trained_maps, trained_maps) == pytest.approx(1.0)


def test_the_sanity_record_has_one_correlation_per_test_image_and_a_summary(trained_detector, recorded_run):
    root, relpaths, predictions, records = recorded_run
    record = explain.gradcam_record(trained_detector, predictions, root)
    sanity = explain.sanity_record(trained_detector, record, root, seed=3, batch_size=4)
    assert sanity["path"].tolist() == relpaths and set(sanity["random_seed"]) == {3}
    assert sanity["spearman"].between(-1, 1).all() and sanity["spearman_abs"].between(-1, 1).all()
    explain.write_sanity_record(sanity, records)
    summary = explain.sanity_summary(explain.read_sanity_record(records))
    assert summary["images"] == 6
    assert summary["spearman_median"] == pytest.approx(float(np.median(sanity["spearman"])), abs=1e-4)
    assert summary["spearman_above"] == pytest.approx(float(np.mean(sanity["spearman"] > 0.5)))
    (records / "gradcam_sanity.csv").write_text("path\n")
    with pytest.raises(explain.SanityRecordError, match=r"gradcam_sanity\.csv lacks columns .*python -m cxrlib"):
        explain.read_sanity_record(records)


def test_the_sanity_check_leaves_out_cells_that_no_recorded_map_uses(trained_detector, recorded_run):
    """Cells the next layer never reads are 0 in both models' maps; as shared ties they would make any two maps look
    alike, so the rank correlation is taken over the other cells only."""
    root, relpaths, predictions, _ = recorded_run
    record = explain.gradcam_record(trained_detector, predictions, root)
    cells = explain.record_cells(record)
    cells[:, ::2, :] = 0  # every other row unused, as after a stride-2 1×1 convolution
    record = record.assign(evidence=[" ".join(f"{value:.4f}" for value in cam.ravel()) for cam in cells])
    sanity = explain.sanity_record(trained_detector, record, root, seed=3)
    images = np.stack([np.asarray(Image.open(root / path), dtype="float32") for path in relpaths])
    chance = explain.explainer(explain.randomised_model(trained_detector, 3)).evidence(images)[0]
    used = explain.rank_correlations(cells[:, 1::2].reshape(6, -1), chance[:, 1::2].reshape(6, -1))
    with_ties = explain.rank_correlations(cells, chance)
    assert sanity["spearman"].to_numpy() == pytest.approx(used, abs=1e-6)
    assert np.abs(with_ties - used).max() > 0.05


def test_a_sanity_summary_without_any_correlation_says_so_instead_of_failing():
    """Tiny inputs (the smoke profile's 32 px) can leave no image with two cells of evidence: every ρ is undefined."""
    record = pd.DataFrame({"path": ["a", "b"], "method": "hirescam", "random_seed": 2018,
                           "spearman": [np.nan, np.nan], "spearman_abs": [np.nan, 0.25]})
    summary = explain.sanity_summary(record)
    assert summary["images"] == 2 and np.isnan(summary["spearman_median"]) and np.isnan(summary["spearman_above"])
    assert summary["spearman_abs_median"] == 0.25 and summary["spearman_abs_above"] == 0.0
