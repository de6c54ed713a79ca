"""tf.data pipeline and load_image on tiny trees: decoding any format, order, shuffling, caches, read-only data."""
import os
import pathlib
import stat

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrlib.data import assign_subsets, scan_dataset
from cxrlib.data.augment import build_augmenter
from cxrlib.data.pipeline import load_image, make_dataset
from helpers import write_odd_images

SIZE = 32


@pytest.fixture
def frame(image_tree):
    """The tiny tree's index with subsets (36 images: 24 train, 4 official_val, 8 test)."""
    return assign_subsets(scan_dataset(image_tree).images, val_fraction=0.25)


def all_batches(dataset):
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("size", [SIZE, 48])
def test_load_image_turns_any_format_into_square_rgb_uint8(tmp_path, size):
    modes = write_odd_images(tmp_path)
    for name in modes:
        pixels = load_image(tmp_path / name, size)
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8, name
        assert 0 < pixels.mean() < 255, name
        assert np.array_equal(pixels[..., 0], pixels[..., 2]), f"{name}: gray should stay gray"


def test_sixteen_bit_images_are_stretched_to_the_full_8_bit_range(tmp_path):
    write_odd_images(tmp_path)
    pixels = load_image(tmp_path / "IM-0902-0001.png", 46)
    assert pixels.min() <= 5 and pixels.max() >= 250


def test_batches_have_the_contract_shapes_and_follow_the_frame_order(frame):
    test_rows = frame[frame["subset"] == "test"]
    dataset = make_dataset(test_rows, SIZE, batch_size=3)
    first_images, first_labels = next(iter(dataset))
    assert first_images.dtype.name == "float32" and first_labels.dtype.name == "float32"
    assert first_images.shape == (3, SIZE, SIZE, 3) and first_labels.shape == (3,)
    images, labels = all_batches(dataset)
    assert len(images) == len(test_rows)
    assert np.array_equal(labels, test_rows["target"].to_numpy(np.float32))
    expected = np.stack([load_image(path, SIZE) for path in test_rows["path"]]).astype(np.float32)
    assert np.array_equal(images, expected)


def test_training_shuffles_every_epoch_reproducibly(frame):
    train_rows = frame[frame["subset"] == "train"]
    dataset = make_dataset(train_rows, SIZE, batch_size=len(train_rows), training=True, seed=3)
    first_epoch, second_epoch = (next(iter(dataset))[0].numpy() for _ in range(2))
    in_order = next(iter(make_dataset(train_rows, SIZE, batch_size=len(train_rows))))[0].numpy()
    same_seed = next(iter(make_dataset(train_rows, SIZE, batch_size=len(train_rows), training=True, seed=3)))[0]

    assert not np.array_equal(first_epoch, in_order) and not np.array_equal(first_epoch, second_epoch)
    assert np.array_equal(first_epoch, same_seed.numpy())
    assert sorted(map(bytes, first_epoch)) == sorted(map(bytes, in_order))


def test_augmentation_changes_images_differently_each_epoch_within_range(frame):
    rows = frame[frame["subset"] == "test"]
    plain = next(iter(make_dataset(rows, SIZE, batch_size=8)))[0].numpy()
    augmented = make_dataset(rows, SIZE, batch_size=8, augment=True, seed=1)
    first, second = (next(iter(augmented))[0].numpy() for _ in range(2))
    assert first.shape == plain.shape and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 255
    assert np.abs(first - plain).mean() > 1 and np.abs(first - second).mean() > 1
    assert np.corrcoef(first.ravel(), plain.ravel())[0, 1] > 0.3


def test_pipeline_names_are_reexported_by_the_package():
    from cxrlib import data

    assert data.make_dataset is make_dataset and data.load_image is load_image
    with pytest.raises(AttributeError, match="no attribute 'make_dataset_v2'"):
        data.make_dataset_v2


def test_augmented_batches_stay_float32_under_a_mixed_precision_policy(frame):
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        images, _ = next(iter(make_dataset(frame.head(4), SIZE, batch_size=4, augment=True)))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert images.dtype.name == "float32"


def test_augmenter_warps_once_then_jitters_brightness_and_contrast():
    augmenter = build_augmenter(seed=5)
    assert [type(layer).__name__ for layer in augmenter.layers] == ["RandomAffine", "RandomBrightness", "RandomContrast"]


def test_disk_cache_decodes_once_and_is_keyed_by_content_and_size(frame, tmp_path):
    rows = frame[frame["subset"] == "test"]
    cache_dir = tmp_path / "cache"
    expected = all_batches(make_dataset(rows, SIZE, batch_size=4, cache=None))
    assert np.array_equal(all_batches(make_dataset(rows, SIZE, batch_size=4, cache=cache_dir))[0], expected[0])
    cache_files = sorted(os.listdir(cache_dir))
    assert any(name.endswith(".index") for name in cache_files)

    for path in rows["path"]:  # the cache, not the files, now feeds the pipeline
        os.remove(path)
    images, labels = all_batches(make_dataset(rows, SIZE, batch_size=4, cache=cache_dir))
    assert np.array_equal(images, expected[0]) and np.array_equal(labels, expected[1])
    assert sorted(os.listdir(cache_dir)) == cache_files
    with pytest.raises(tf.errors.OpError, match="IM-0001-0001.jpeg"):  # another size is another cache entry
        all_batches(make_dataset(rows, SIZE + 8, batch_size=4, cache=cache_dir))


def test_failed_cache_fill_names_the_file_and_leaves_no_cache(frame, tmp_path):
    rows = frame[frame["subset"] == "test"]
    cache_dir = tmp_path / "cache"
    os.remove(rows["path"].iloc[-1])
    with pytest.raises(tf.errors.OpError, match=os.path.basename(rows["path"].iloc[-1])):
        make_dataset(rows, SIZE, batch_size=4, cache=cache_dir)
    assert os.listdir(cache_dir) == []


def test_failed_cache_fill_tolerates_tensorflow_deleting_its_partial_files_first(frame, tmp_path, monkeypatch):
    """TF's cache writer removes its own partial files when its iterator dies, racing our cleanup (CI saw it)."""
    rows = frame[frame["subset"] == "test"]
    cache_dir = tmp_path / "cache"
    os.remove(rows["path"].iloc[-1])
    real_glob = pathlib.Path.glob

    def glob_then_vanish(self, pattern):
        listed = list(real_glob(self, pattern))
        for path in listed:  # gone between our listing and our unlink, as when TF's destructor wins
            path.unlink(missing_ok=True)  # (TF's destructor may also beat this simulation to it)
        return iter(listed)

    monkeypatch.setattr(pathlib.Path, "glob", glob_then_vanish)
    with pytest.raises(tf.errors.OpError, match=os.path.basename(rows["path"].iloc[-1])):
        make_dataset(rows, SIZE, batch_size=4, cache=cache_dir)
    monkeypatch.undo()
    assert os.listdir(cache_dir) == []


def test_a_partly_read_disk_cached_epoch_does_not_lock_the_cache(frame, tmp_path):
    rows = frame[frame["subset"] == "test"]
    dataset = make_dataset(rows, SIZE, batch_size=4, cache=tmp_path / "cache")
    next(iter(dataset))  # e.g. a notebook peeking at one batch
    assert len(all_batches(dataset)[0]) == len(rows)
    assert len(all_batches(make_dataset(rows, SIZE, batch_size=4, cache=tmp_path / "cache"))[0]) == len(rows)
    assert not [name for name in os.listdir(tmp_path / "cache") if "lockfile" in name or ".tmp-" in name]


def test_disk_cache_inside_the_data_folder_is_refused(frame, image_tree):
    with pytest.raises(ValueError, match="inside the data folder"):
        make_dataset(frame, SIZE, batch_size=4, cache=image_tree / "cache")


def test_empty_frame_is_a_clear_error(frame):
    with pytest.raises(ValueError, match="empty frame"):
        make_dataset(frame.iloc[:0], SIZE, batch_size=4)


def snapshot(root):
    return sorted((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in root.rglob("*"))


def test_nothing_is_written_into_the_data_folder(image_tree, tmp_path):
    write_odd_images(image_tree / "train" / "NORMAL")
    (image_tree / "MANIFEST.csv").write_text("split,label,filename\n")
    modes = {path: path.stat().st_mode for path in [image_tree, *image_tree.rglob("*")]}
    for path in modes:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = snapshot(image_tree)
    try:
        split = assign_subsets(scan_dataset(image_tree).images, val_fraction=0.25)
        for cache in ("memory", tmp_path / "cache"):
            all_batches(make_dataset(split, SIZE, batch_size=8, training=True, cache=cache))
        load_image(split["path"].iloc[0], SIZE)
        assert snapshot(image_tree) == before
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
