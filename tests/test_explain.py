"""Grad-CAM finds the feature map in nested backbones and points at the object that drives the prediction."""
import matplotlib

matplotlib.use("Agg")

import keras
import numpy as np
import pytest

from cxrlib import explain

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
    models = pytest.importorskip("cxrlib.models")
    model = models.build_model(arch, 32)
    gradcam = explain.GradCam(model)
    assert gradcam.layer_path == [arch, layer]
    heatmaps, probs = gradcam(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)))
    assert heatmaps.shape == (2, 32, 32) and np.isfinite(heatmaps).all() and probs.shape == (2,)


def test_comparison_figure_has_the_xray_and_one_overlay_per_model(trained_detector, tmp_path):
    images, labels, _ = square_images(3, seed=2)
    figure = explain.plot_gradcam_comparison({"a": trained_detector, "b": trained_detector}, images,
                                             labels=list(labels), thresholds={"a": 0.5},
                                             save_to=tmp_path / "gradcam.png")
    assert len(figure.axes) == 9 and (tmp_path / "gradcam.png").exists()
    assert figure.axes[0].get_title().startswith("true ")
    assert figure.axes[1].get_title().startswith("a: p=") and figure.axes[2].get_title().startswith("b: p=")


def test_overlay_is_rgb_in_unit_range():
    overlay = explain.overlay_heatmap(np.full((8, 8, 3), 200, np.uint8), np.linspace(0, 1, 64).reshape(8, 8))
    assert overlay.shape == (8, 8, 3) and 0 <= overlay.min() and overlay.max() <= 1


def test_source_overlay_has_the_stored_size_and_stretches_the_square_map_over_it(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((50, 120), 100, np.uint8)).save(tmp_path / "wide.png")  # 120 wide, 50 high
    heatmap = np.zeros((8, 8))
    heatmap[:4, :4] = 1.0  # hot in the top-left quarter of the model's square input
    overlay = explain.source_overlay(tmp_path / "wide.png", heatmap)
    assert overlay.shape == (50, 120, 3) and 0 <= overlay.min() and overlay.max() <= 1
    hot = overlay[..., 0] > overlay[..., 2]  # jet: red where the map is high, blue where it is low
    assert hot[:20, :50].all() and not hot[30:, :].any() and not hot[:, 70:].any()
