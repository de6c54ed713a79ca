"""RandomAffine: one warp that rotates, zooms and shifts about the image centre, seeded and per image."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrlib.data import augment
from cxrlib.data.augment import RandomAffine, build_augmenter

SIZE = 33  # odd, so the centre is a pixel


def dot_image(row: int, col: int, batch: int = 1) -> np.ndarray:
    images = np.zeros((batch, SIZE, SIZE, 3), dtype="float32")
    images[:, row, col, :] = 255.0
    return images


def brightest(image: np.ndarray) -> tuple[int, int]:
    return np.unravel_index(np.argmax(image[..., 0]), image.shape[:2])


def test_zero_ranges_are_the_identity():
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(RandomAffine(0, 0, 0, seed=1)(images))
    np.testing.assert_allclose(out, images, atol=1e-3)


def test_rotation_and_zoom_turn_about_the_centre():
    centre = SIZE // 2
    out = keras.ops.convert_to_numpy(RandomAffine(degrees=30, zoom=0.3, shift=0, seed=2)(dot_image(centre, centre, 8)))
    assert all(brightest(image) == (centre, centre) for image in out)


def test_rotation_moves_an_off_centre_dot_along_a_circle():
    centre, radius = SIZE // 2, 10
    out = keras.ops.convert_to_numpy(RandomAffine(degrees=45, zoom=0, shift=0, seed=3)(dot_image(centre, centre + radius, 16)))
    positions = [brightest(image) for image in out]
    distances = [np.hypot(row - centre, col - centre) for row, col in positions]
    assert np.allclose(distances, radius, atol=1.5)
    assert len(set(positions)) > 4  # a different angle per image


def test_shift_stays_within_its_range():
    centre, shift = SIZE // 2, 0.1
    out = keras.ops.convert_to_numpy(RandomAffine(degrees=0, zoom=0, shift=shift, seed=4)(dot_image(centre, centre, 16)))
    offsets = np.array([brightest(image) for image in out]) - centre
    assert np.abs(offsets).max() <= round(shift * SIZE) + 1
    assert np.abs(offsets).max() >= 1


def test_same_seed_same_warps_and_inference_passes_through():
    images = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    first = keras.ops.convert_to_numpy(build_augmenter(seed=7)(images, training=True))
    second = keras.ops.convert_to_numpy(build_augmenter(seed=7)(images, training=True))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.min() >= 0 and first.max() <= 255
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(RandomAffine(seed=7)(images, training=False)), images)


def test_brightness_jitter_shifts_each_image_within_its_range():
    # A flat grey image keeps its centre under any warp and any contrast factor; only brightness moves it.
    images = np.full((16, SIZE, SIZE, 3), 128.0, np.float32)
    centres = keras.ops.convert_to_numpy(build_augmenter(seed=11)(images, training=True))[:, SIZE // 2, SIZE // 2, 0]
    shifts = centres - 128.0
    assert np.abs(shifts).max() <= augment.BRIGHTNESS * 255 + 1e-3
    assert len(np.unique(np.round(shifts, 3))) > 8  # a different shift per image


@pytest.mark.parametrize("bad", [{"degrees": -1}, {"degrees": 180}, {"zoom": 1.0}, {"shift": -0.1}])
def test_out_of_range_parameters_are_rejected(bad):
    with pytest.raises(ValueError, match="RandomAffine needs"):
        RandomAffine(**bad)


def test_layer_round_trips_through_its_config():
    layer = RandomAffine(degrees=5, zoom=0.2, shift=0.01, seed=3)
    clone = RandomAffine.from_config(layer.get_config())
    assert (clone.degrees, clone.zoom, clone.shift, clone.seed) == (5, 0.2, 0.01, 3)


def test_every_batch_of_a_tf_data_pipeline_gets_new_warps():
    images = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    augmenter = build_augmenter(seed=3)
    batches = [batch.numpy() for batch in tf.data.Dataset.from_tensors(images).repeat(2).map(
        lambda batch: augmenter(batch, training=True))]
    assert np.abs(batches[0] - batches[1]).mean() > 1.0
