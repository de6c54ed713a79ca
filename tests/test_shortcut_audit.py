"""The shortcut audit across its layers: geometry groups and label rates (data.geometry), the metadata-only
baseline (data.baseline), test metrics within groups (compare.within_group) and their sentences (report.shortcut)."""
import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import write_tree
from cxrlib import data, plots
from cxrlib.compare.within_group import within_group_intervals, within_group_metrics
from cxrlib.contract import CLASS_NAMES
from cxrlib.data.baseline import FEATURE_SETS, GEOMETRY_FEATURES, metadata_baseline, metadata_baseline_table
from cxrlib.data.geometry import OTHER_GROUP, geometry_groups, label_rate_by_group
from cxrlib.report.shortcut import describe_label_rates, describe_metadata_baseline


def size_frame(sizes: list[tuple[int, int]], labels: list[str] | None = None, split: str = "train") -> pd.DataFrame:
    """Rows shaped like scan_dataset().images with the given stored sizes (labels cycle NORMAL, PNEUMONIA)."""
    labels = labels or [CLASS_NAMES[i % 2] for i in range(len(sizes))]
    return pd.DataFrame({"path": [f"/data/{split}/{label}/img{i}.jpeg" for i, label in enumerate(labels)],
                         "relpath": [f"{split}/{label}/img{i}.jpeg" for i, label in enumerate(labels)],
                         "split": split, "label": labels, "target": [int(label == "PNEUMONIA") for label in labels],
                         "width": [w for w, _ in sizes], "height": [h for _, h in sizes]})


def varied_sizes(count: int, start: int = 300) -> list[tuple[int, int]]:
    """``count`` distinct non-square sizes, as original scans have."""
    return [(start + i, 256) for i in range(count)]


def write_sized_tree(root: Path, per_class: dict[str, int], size_of, seed: int = 0) -> Path:
    """A Kaggle-layout tree whose pixels are alike noise in both classes; only ``size_of(rng, target)`` may differ."""
    def noise_of_size(rng, target):
        width, height = size_of(rng, target)
        return rng.integers(0, 255, size=(height, width), dtype=np.uint8)

    return write_tree(root, per_class, seed=seed, image_of=noise_of_size)


# --- geometry groups ---------------------------------------------------------------------------------

def test_frequent_square_sizes_are_their_own_groups_and_the_rest_is_other():
    images = size_frame([(224, 224)] * 30 + [(227, 227)] * 25 + varied_sizes(20))
    groups = geometry_groups(images)
    assert list(groups.cat.categories) == ["square 224×224", "square 227×227", OTHER_GROUP]
    assert groups.value_counts().to_dict() == {"square 224×224": 30, "square 227×227": 25, OTHER_GROUP: 20}
    assert groups.index.equals(images.index)


def test_original_sizes_without_squares_form_one_group():
    groups = geometry_groups(size_frame(varied_sizes(60)))
    assert list(groups.cat.categories) == [OTHER_GROUP] and groups.eq(OTHER_GROUP).all()


def test_a_frequent_non_square_size_is_a_size_group():
    groups = geometry_groups(size_frame([(316, 256)] * 40 + varied_sizes(60, start=400)))
    assert groups.value_counts().to_dict() == {OTHER_GROUP: 60, "316×256": 40}


@pytest.mark.parametrize("square_images, total", [(19, 40), (25, 1000)], ids=["under 20 images", "under 5%"])
def test_a_square_size_too_rare_by_count_or_share_is_not_a_group(square_images, total):
    images = size_frame([(224, 224)] * square_images + varied_sizes(total - square_images))
    assert geometry_groups(images).eq(OTHER_GROUP).all()


def test_geometry_groups_names_missing_columns():
    with pytest.raises(ValueError, match=r"frequent_sizes needs columns \['height'\]"):
        geometry_groups(pd.DataFrame({"width": [224]}))


# --- label rates and the prose -----------------------------------------------------------------------

@pytest.fixture
def confounded() -> pd.DataFrame:
    """Train: 224 squares 2 NORMAL / 18 PNEUMONIA, 227 squares 12 / 8, other sizes 5 / 5; test: 227 only, 3 / 1."""
    labels = lambda normal, pneumonia: ["NORMAL"] * normal + ["PNEUMONIA"] * pneumonia  # noqa: E731
    train = size_frame([(224, 224)] * 20 + [(227, 227)] * 20 + varied_sizes(10),
                       labels(2, 18) + labels(12, 8) + labels(5, 5))
    return pd.concat([train, size_frame([(227, 227)] * 4, labels(3, 1), split="test")], ignore_index=True)


def test_label_rate_by_group_counts_classes_per_split_and_group(confounded):
    rates = label_rate_by_group(confounded)
    assert list(rates.columns) == ["split", "group", "images", "NORMAL", "PNEUMONIA", "NORMAL share"]
    assert rates[["split", "group", "images", "NORMAL", "PNEUMONIA"]].astype({"split": str, "group": str}) \
        .values.tolist() == [["train", "square 224×224", 20, 2, 18], ["train", "square 227×227", 20, 12, 8],
                             ["train", OTHER_GROUP, 10, 5, 5], ["test", "square 227×227", 4, 3, 1]]
    assert rates["NORMAL share"].tolist() == pytest.approx([0.1, 0.6, 0.5, 0.75])


def test_describe_label_rates_states_each_groups_normal_share(confounded):
    text = describe_label_rates(label_rate_by_group(confounded))
    assert "In the train folder the NORMAL share is **10%** among square 224×224 (20 images)" in text
    assert "In the test folder the NORMAL share is **75%** among square 227×227 (4 images)." in text
    assert "one geometry group" not in text
    assert "one geometry group" in describe_label_rates(label_rate_by_group(size_frame(varied_sizes(30))))


def test_plot_label_rate_by_group_labels_each_bar_with_its_images(confounded):
    figure = plots.plot_label_rate_by_group(label_rate_by_group(confounded))
    ax = figure.axes[0]
    labels = [text.get_text() for text in ax.texts]
    assert labels == ["n=20", "n=20", "n=10", "n=4"]
    heights = [bar.get_height() for container in ax.containers for bar in container]
    assert heights == pytest.approx([0.1, 0.6, 0.5, 0.75])


# --- metadata baseline -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def size_encodes_label(tmp_path_factory) -> pd.DataFrame:
    """NORMAL stored as 40x40 squares, PNEUMONIA as 44x44 (one in ten the other way round)."""
    def size_of(rng, target):
        side = 44 if (target == 1) != (rng.random() < 0.1) else 40
        return side, side
    root = tmp_path_factory.mktemp("encoded") / "chest_xray"
    write_sized_tree(root, {"train": 40, "val": 2, "test": 30}, size_of)
    return data.scan_dataset(root).images


@pytest.fixture(scope="module")
def size_says_nothing(tmp_path_factory) -> pd.DataFrame:
    """Sizes drawn alike for both classes."""
    def size_of(rng, target):
        return int(rng.integers(36, 48)), int(rng.integers(36, 48))
    root = tmp_path_factory.mktemp("random") / "chest_xray"
    write_sized_tree(root, {"train": 60, "val": 2, "test": 60}, size_of)
    return data.scan_dataset(root).images


def test_metadata_baseline_finds_a_size_that_encodes_the_label(size_encodes_label):
    result = metadata_baseline(size_encodes_label, GEOMETRY_FEATURES, n_boot=200)
    assert result["roc_auc"] > 0.9 and result["roc_auc_ci_low"] > 0.8 and result["accuracy"] > 0.8
    assert result["train_images"] == 80 and result["test_images"] == 60 and result["majority_accuracy"] == 0.5
    assert result["threshold"] == 0.5 and result["features"] == GEOMETRY_FEATURES


def test_metadata_baseline_is_near_chance_when_size_says_nothing(size_says_nothing):
    table = metadata_baseline_table(size_says_nothing, n_boot=200)
    assert list(table.index) == list(FEATURE_SETS)
    assert table["roc_auc"].between(0.3, 0.7).all(), table
    assert (table["roc_auc_ci_low"] < 0.5).all() and (table["roc_auc_ci_high"] > 0.5).all()
    assert "Stored size alone does not predict the label clearly above chance (test ROC-AUC 0." in \
        describe_metadata_baseline(table)


def test_metadata_baseline_is_seeded(size_says_nothing):
    first, second = (metadata_baseline(size_says_nothing, n_boot=50, seed=3) for _ in range(2))
    assert first == second


def test_describe_metadata_baseline_reports_auc_ci_and_accuracy(size_encodes_label):
    text = describe_metadata_baseline(metadata_baseline_table(size_encodes_label, n_boot=200))
    assert "Trained on 80 training-folder images and scored on 60 test images" in text
    assert "- **stored size:** test ROC-AUC **" in text and "(always answering the majority class: 50.0%)" in text
    assert "Stored size alone predicts the label above chance (test ROC-AUC 0.9" in text
    assert "read test metrics within each geometry group too" in text


def test_metadata_baseline_rejects_bad_inputs(size_says_nothing, tmp_path):
    with pytest.raises(ValueError, match=r"metadata_baseline needs columns \['path'\]"):
        metadata_baseline(size_says_nothing.drop(columns="path"))
    with pytest.raises(ValueError, match=r"features \['width', 'pixels'\] must be a non-empty subset of \['width'"):
        metadata_baseline(size_says_nothing, ("width", "pixels"))
    with pytest.raises(ValueError, match=r"features \[\] must be a non-empty subset of"):
        metadata_baseline(size_says_nothing, ())
    images = size_says_nothing
    with pytest.raises(ValueError, match=r"both classes in the 'test' split, found \['PNEUMONIA'\]"):
        metadata_baseline(images[(images["split"] == "train") | (images["target"] == 1)])
    gone = size_says_nothing.copy()
    gone.loc[gone.index[0], "path"] = str(tmp_path / "deleted.jpeg")
    with pytest.raises(FileNotFoundError, match="deleted.jpeg is listed in the index but does not exist"):
        metadata_baseline(gone)


# --- within-group metrics ----------------------------------------------------------------------------

@pytest.fixture
def test_index() -> tuple[pd.DataFrame, pd.Series]:
    """Nine test images in groups A (2 NORMAL, 2 PNEUMONIA), B (1, 1), C (PNEUMONIA only); one other image."""
    labels = ["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA", "NORMAL", "PNEUMONIA", "PNEUMONIA", "NORMAL", "NORMAL"]
    images = size_frame([(10, 10)] * 9, labels, split="test")
    groups = pd.Series(["A", "A", "A", "A", "B", "B", "C", "C", "C"], index=images.index)
    return images, groups


def predictions_for(images: pd.DataFrame, probs: list[float], prefix: str = "/elsewhere/chest_xray/") -> pd.DataFrame:
    """Prediction rows for ``images`` with paths from another machine."""
    return pd.DataFrame({"path": prefix + images["relpath"], "target": images["target"], "prob": probs})


def test_within_group_metrics_scores_each_group_with_both_classes_and_all(test_index):
    images, groups = test_index
    groups.iloc[7:] = "D"  # D: the two unused NORMAL rows, not predicted below
    predictions = predictions_for(images.iloc[:7], [0.1, 0.6, 0.4, 0.9, 0.2, 0.8, 0.7])
    table = within_group_metrics(predictions, images, threshold=0.5, groups=groups)
    assert list(table.index) == ["A", "B", "all"]  # C holds PNEUMONIA only
    assert table[["images", "NORMAL", "PNEUMONIA"]].values.tolist() == [[4, 2, 2], [2, 1, 1], [7, 3, 4]]
    assert table["roc_auc"].tolist() == pytest.approx([3 / 4, 1.0, 11 / 12])
    assert table["accuracy"].tolist() == pytest.approx([2 / 4, 1.0, 5 / 7])
    assert table.loc["all", ["sensitivity", "specificity"]].tolist() == pytest.approx([3 / 4, 2 / 3])


def test_within_group_metrics_matches_windows_paths_and_derives_groups(test_index):
    images, _ = test_index
    images = pd.concat([images, size_frame(varied_sizes(40), split="train")], ignore_index=True)
    predictions = predictions_for(images.iloc[:9], [0.1, 0.6, 0.4, 0.9, 0.2, 0.8, 0.7, 0.3, 0.4],
                                  prefix="C:\\runs\\data\\")
    predictions["path"] = predictions["path"].str.replace("/", "\\")
    table = within_group_metrics(predictions, images, threshold=0.5)
    assert list(table.index) == [OTHER_GROUP, "all"]  # nine images of one size are too few for a group
    assert table.loc["all", "images"] == 9


def test_within_group_intervals_bracket_each_groups_metrics_and_resample_children(test_index):
    images, groups = test_index
    predictions = predictions_for(images.iloc[:7], [0.1, 0.6, 0.4, 0.9, 0.2, 0.8, 0.7])
    with pytest.raises(ValueError, match=r"within_group_intervals predictions needs columns \['patient_id'\]"):
        within_group_intervals(predictions, images, 0.5, groups, n_boot=20)
    predictions["patient_id"] = [f"child{i}" for i in range(7)]
    table = within_group_intervals(predictions, images, 0.5, groups, n_boot=200, seed=3)
    point = within_group_metrics(predictions, images, 0.5, groups)
    assert list(table["group"].unique()) == ["A", "B", "all"]
    assert list(table.loc[table["group"] == "A", "metric"]) == ["roc_auc", "accuracy", "sensitivity", "specificity"]
    for row in table.itertuples():
        assert row.estimate == pytest.approx(point.loc[row.group, row.metric])
        assert row.ci_low <= row.estimate <= row.ci_high
    assert table.loc[(table["group"] == "all") & (table["metric"] == "accuracy"), "ci_low"].item() < 5 / 7
    # one child behind every image of a class leaves nothing to resample within that class
    predictions["patient_id"] = predictions["target"].map({0: "normal child", 1: "pneumonia child"})
    single = within_group_intervals(predictions, images, 0.5, groups, n_boot=50)
    assert (single["ci_low"] == single["ci_high"]).all()
    assert table.equals(within_group_intervals(predictions.assign(patient_id=[f"child{i}" for i in range(7)]),
                                               images, 0.5, groups, n_boot=200, seed=3))


def test_within_group_metrics_rejects_bad_predictions(test_index):
    images, groups = test_index
    predictions = predictions_for(images, [0.5] * 9)
    with pytest.raises(ValueError, match=r"within_group_metrics predictions needs columns \['prob'\]"):
        within_group_metrics(predictions.drop(columns="prob"), images, 0.5, groups)
    stray = predictions.assign(path=predictions["path"].str.replace("test/", "val/", regex=False))
    with pytest.raises(ValueError, match=r"9 prediction path\(s\) match no image of the index by split/label/file, "
                                         r"e.g. \['/elsewhere/chest_xray/val/NORMAL/img0.jpeg'"):
        within_group_metrics(stray, images, 0.5, groups)
    flipped = predictions.assign(target=1 - predictions["target"])
    with pytest.raises(ValueError, match="9 prediction\\(s\\) have a target unlike their image's label"):
        within_group_metrics(flipped, images, 0.5, groups)
