"""The data layer on the real Kermany/Kaggle data set (skipped when it is absent); scanned once per module."""
import warnings

import numpy as np
import pytest

from cxrlib.data import assign_subsets, class_weights, make_dataset, scan_dataset, subsample, subset_counts

pytestmark = pytest.mark.realdata

KAGGLE_COUNTS = {
    ("train", "NORMAL"): 1341, ("train", "PNEUMONIA"): 3875,
    ("val", "NORMAL"): 8, ("val", "PNEUMONIA"): 8,
    ("test", "NORMAL"): 234, ("test", "PNEUMONIA"): 390,
}


@pytest.fixture(scope="module")
def index(real_data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every real file name has a known patient form, nothing is excluded
        return scan_dataset(real_data_dir)


@pytest.fixture(scope="module")
def split(index):
    return assign_subsets(index.images, val_fraction=0.1, seed=42)


def test_index_finds_every_kaggle_image_once(index):
    assert index.images.groupby(["split", "label"]).size().to_dict() == KAGGLE_COUNTS
    assert index.excluded.empty
    assert index.images["path"].is_unique and index.images["sha256"].str.len().eq(64).all()


def test_duplicates_stay_within_one_split_and_class(index):
    groups = index.duplicates.groupby("sha256")
    assert groups.ngroups == 21
    assert (groups[["split", "label"]].nunique() == 1).all().all()


def test_patient_ids_group_several_images(index):
    images = index.images
    assert images["patient_id"].str.match(r"^(person\d+|IM-\d+|NORMAL2-IM-\d+)$").all()
    per_patient = images.groupby("patient_key").size()
    assert per_patient.max() > 1 and len(per_patient) < 0.8 * len(images)
    assert (images.groupby("patient_key")["label"].nunique() == 1).all()


def test_validation_split_is_patient_disjoint_stratified_and_about_ten_percent(split):
    train, val = split[split["subset"] == "train"], split[split["subset"] == "val"]
    assert set(train["patient_key"]).isdisjoint(val["patient_key"])
    train_patients = split.loc[split["split"] == "train", "patient_key"].nunique()
    assert 0.08 <= val["patient_key"].nunique() / train_patients <= 0.12
    assert set(val["label"]) == {"NORMAL", "PNEUMONIA"}
    assert abs(val["target"].mean() - train["target"].mean()) < 0.03
    counts = subset_counts(split)
    assert counts.loc[counts["subset"] == "official_val", "images"].sum() == 16


def test_class_weights_favour_the_minority_normal_class(split):
    weights = class_weights(split)
    assert 1.8 < weights[0] < 2.1 and 0.6 < weights[1] < 0.75


def test_pipeline_yields_plausible_real_batches(split):
    val = subsample(split[split["subset"] == "val"], per_class=48, seed=0)
    dataset = make_dataset(val, image_size=64, batch_size=32, training=True, seed=0)
    labels = []
    for images, batch_labels in dataset.take(3):
        assert images.shape[1:] == (64, 64, 3) and images.dtype.name == "float32"
        pixels = images.numpy()
        assert pixels.min() >= 0 and pixels.max() <= 255 and pixels.std() > 20
        labels.append(batch_labels.numpy())
    labels = np.concatenate(labels)
    assert len(labels) == 96 and 0.3 < labels.mean() < 0.7
