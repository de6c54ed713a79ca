"""Patient-grouped validation split, count tables, subsampling and class weights on synthetic index frames."""
import pandas as pd
import pytest

from helpers import index_frame

from cxrlib.data.split import assign_subsets, class_weights, subsample, subset_counts


@pytest.fixture
def frame() -> pd.DataFrame:
    """60 NORMAL and 90 PNEUMONIA train patients with 1-3 images each, plus official val and test."""
    return index_frame({
        ("train", "NORMAL"): [1, 2, 3] * 20,
        ("train", "PNEUMONIA"): [2, 1, 3] * 30,
        ("val", "NORMAL"): [1] * 8,
        ("val", "PNEUMONIA"): [1, 1, 2, 1, 1, 1, 1],
        ("test", "NORMAL"): [2] * 5,
        ("test", "PNEUMONIA"): [1] * 10,
    })


def test_validation_is_carved_from_train_by_whole_patients(frame):
    split = assign_subsets(frame, val_fraction=0.1, seed=42)
    train, val = split[split["subset"] == "train"], split[split["subset"] == "val"]
    assert set(train["patient_key"]).isdisjoint(val["patient_key"])
    assert set(val["split"]) == {"train"}
    assert set(val["label"]) == {"NORMAL", "PNEUMONIA"}
    val_patients = val["patient_key"].nunique() / frame.loc[frame["split"] == "train", "patient_key"].nunique()
    assert 0.07 <= val_patients <= 0.13
    assert abs(val["target"].mean() - frame.loc[frame["split"] == "train", "target"].mean()) < 0.1


def test_official_val_and_test_keep_their_kaggle_rows(frame):
    split = assign_subsets(frame)
    assert (split.loc[frame["split"] == "val", "subset"] == "official_val").all()
    assert (split.loc[frame["split"] == "test", "subset"] == "test").all()
    assert "subset" not in frame.columns
    assert split.drop(columns="subset").equals(frame)


def test_split_is_deterministic_for_a_seed_and_independent_of_row_order(frame):
    first = assign_subsets(frame, seed=7)
    shuffled = assign_subsets(frame.sample(frac=1, random_state=0), seed=7).loc[frame.index]
    assert first["subset"].equals(shuffled["subset"])
    other_seed = assign_subsets(frame, seed=8)
    assert not first["subset"].equals(other_seed["subset"])


@pytest.mark.parametrize("fraction", [0, -0.1, 0.6])
def test_val_fraction_out_of_range_is_rejected(frame, fraction):
    with pytest.raises(ValueError, match="val_fraction must be in"):
        assign_subsets(frame, val_fraction=fraction)


def test_too_few_patients_is_a_clear_error():
    tiny = index_frame({("train", "NORMAL"): [1, 1], ("train", "PNEUMONIA"): [1, 1], ("test", "NORMAL"): [1]})
    with pytest.raises(ValueError, match="Only 4 train patients"):
        assign_subsets(tiny, val_fraction=0.1)


def test_subset_counts_is_a_tidy_table(frame):
    counts = subset_counts(assign_subsets(frame))
    assert list(counts.columns) == ["subset", "label", "images", "patients", "share"]
    assert counts["subset"].astype(str).drop_duplicates().tolist() == ["train", "val", "test", "official_val"]
    assert counts["images"].sum() == len(frame)
    official = counts[counts["subset"] == "official_val"].set_index("label")
    assert official.loc["PNEUMONIA", ["images", "patients"]].tolist() == [8, 7]
    assert counts.groupby("subset", observed=True)["share"].sum().round(9).eq(1).all()


def test_subset_counts_falls_back_to_kaggle_splits(frame):
    counts = subset_counts(frame)
    assert counts.columns[0] == "split"
    assert counts["split"].astype(str).drop_duplicates().tolist() == ["train", "val", "test"]


def test_subsample_takes_whole_patients_up_to_the_limit(frame):
    split = assign_subsets(frame)
    small = subsample(split, per_class=6, seed=0)
    per_group = small.groupby(["subset", "label"]).size()
    assert per_group.max() <= 6
    assert per_group[("train", "NORMAL")] == 6 and per_group[("test", "NORMAL")] == 6
    whole = split.groupby("patient_key").size()
    assert (small.groupby("patient_key").size() == whole[small["patient_key"].unique()]).all()
    assert small.index.is_monotonic_increasing
    assert small.equals(subsample(split, per_class=6, seed=0))
    assert not small.equals(subsample(split, per_class=6, seed=1))


def test_subsample_tops_up_from_one_patient_when_whole_patients_do_not_fit():
    pairs = index_frame({("train", "NORMAL"): [2, 2, 2], ("train", "PNEUMONIA"): [2, 2]})
    small = subsample(pairs, per_class=3, seed=0)
    assert small.groupby("label").size().tolist() == [3, 3]
    assert small.groupby("label")["patient_key"].nunique().tolist() == [2, 2]


def test_subsample_needs_a_positive_limit(frame):
    with pytest.raises(ValueError, match="at least 1"):
        subsample(frame, per_class=0)


def test_class_weights_are_balanced_from_train_only(frame):
    split = assign_subsets(frame)
    train_targets = split.loc[split["subset"] == "train", "target"]
    n, positives = len(train_targets), train_targets.sum()
    weights = class_weights(split)
    assert weights == pytest.approx({0: n / (2 * (n - positives)), 1: n / (2 * positives)})
    assert weights[0] > 1 > weights[1]


def test_class_weights_need_both_classes():
    only_normal = index_frame({("train", "NORMAL"): [1, 1], ("test", "PNEUMONIA"): [1]})
    with pytest.raises(ValueError, match=r"no images of class \[1\]"):
        class_weights(only_normal)
