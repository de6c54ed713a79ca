"""Exploration summary tables on small hand-made index frames and on a generated image tree."""
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib import data
from helpers import index_frame
from cxrlib.data import summary
from cxrlib.report import exploration
from cxrlib.report.format import percent, readable


@pytest.fixture
def images() -> pd.DataFrame:
    """Train: 2 NORMAL patients (1 and 3 images), 3 PNEUMONIA patients (2, 2, 2); test: 1 + 2 single-image patients."""
    return index_frame({("train", "NORMAL"): [1, 3], ("train", "PNEUMONIA"): [2, 2, 2],
                        ("test", "NORMAL"): [1], ("test", "PNEUMONIA"): [1, 1]})


def test_images_per_split_counts_classes_in_folder_order_with_the_pneumonia_share(images):
    table = summary.images_per_split(images)
    assert list(table.index) == ["train", "test"]
    assert table.loc["train", ["NORMAL", "PNEUMONIA", "total"]].tolist() == [4, 6, 10]
    assert table["PNEUMONIA share"].tolist() == pytest.approx([0.6, 2 / 3])


def test_patients_per_split_counts_patients_and_images_per_patient(images):
    table = summary.patients_per_split(images)
    assert list(table.index.get_level_values("split")) == ["train", "train", "test", "test"]  # folder order
    assert list(table.columns) == ["patients", "mean images per patient", "most images of one patient"]
    assert table.loc[("train", "NORMAL")].tolist() == [2, 2.0, 3]
    assert table.loc[("train", "PNEUMONIA")].tolist() == [3, 2.0, 2]
    assert table.loc[("test", "PNEUMONIA")].tolist() == [2, 1.0, 1]


def test_share_of_patients_with_several_images(images):
    assert summary.share_of_patients_with_several_images(images) == pytest.approx(4 / 8)


def test_validation_split_summary_counts_val_and_catches_shared_patients(images):
    frame = images.assign(subset=images["split"])
    frame.loc[frame["patient_key"] == "train/person-0", "subset"] = "val"
    assert summary.validation_split_summary(frame) == {"val_patients": 1, "val_images": 2, "shared_patients": 0}
    frame.loc[frame.index[frame["patient_key"] == "train/IM-1"][0], "subset"] = "val"
    assert summary.validation_split_summary(frame) == {"val_patients": 2, "val_images": 3, "shared_patients": 1}


def test_image_size_summary_reports_medians_and_the_share_at_a_frequent_size():
    sizes = [(224, 224)] * 20 + [(300 + i, 256) for i in range(30)]
    table = summary.image_size_summary(index_frame({("train", "NORMAL"): [25], ("train", "PNEUMONIA"): [25]}, sizes))
    assert table.loc["NORMAL"].tolist() == [25, 224, 224, 0.8]
    assert table.loc["PNEUMONIA"].tolist() == [25, 317, 256, 0.0]
    assert table["median width (px)"].dtype.kind == "i"  # whole pixels: no "224.000" in a report
    shown = readable(table, percent_columns=["share at a frequent size"]).data
    assert shown.iloc[0].tolist() == ["NORMAL", "25", "224", "224", "80.0%"]


def test_describe_image_sizes_names_the_frequent_squares_and_the_spread_of_the_rest():
    sizes = [(224, 224)] * 20 + [(227, 227)] * 24 + [(300 + i, 250 + i) for i in range(10)]
    text = exploration.describe_image_sizes(index_frame({("train", "NORMAL"): [27], ("train", "PNEUMONIA"): [27]}, sizes))
    assert text.startswith("**81%** of the 54 images share a few fixed stored sizes, each held by 5% or more")
    assert "square 224×224 (20 images), square 227×227 (24 images)." in text and "resized to a square" in text
    assert "The other 10 images keep varied sizes (width 300–309 px, height 250–259 px)." in text


def test_describe_image_sizes_of_original_scans_says_sizes_vary():
    sizes = [(300 + i, 256) for i in range(30)]
    text = exploration.describe_image_sizes(index_frame({("test", "NORMAL"): [15], ("test", "PNEUMONIA"): [15]}, sizes))
    assert text.startswith("No stored size is shared by 5% or more of the 30 images: sizes vary "
                           "(width 300–329 px, height 256–256 px)")
    assert "square" not in text


def test_describe_image_sizes_calls_a_frequent_non_square_size_a_resizing_or_scanner_setting():
    sizes = [(316, 256)] * 30 + [(400 + i, 256) for i in range(10)]
    text = exploration.describe_image_sizes(index_frame({("test", "NORMAL"): [20], ("test", "PNEUMONIA"): [20]}, sizes))
    assert "316×256 (30 images)" in text and "one resizing step or one scanner setting" in text
    assert "resized to a square" not in text


def test_sample_per_class_is_seeded_and_capped_by_the_smallest_class(images):
    sample = summary.sample_per_class(images, n_per_class=3, seed=1)
    assert sample["label"].value_counts().to_dict() == {"NORMAL": 3, "PNEUMONIA": 3}
    assert sample.equals(summary.sample_per_class(images, n_per_class=3, seed=1))
    assert summary.sample_per_class(images, n_per_class=50)["label"].value_counts().to_dict() == \
        {"NORMAL": 5, "PNEUMONIA": 5}


def test_duplicates_are_grouped_and_counted_across_splits_subsets_and_patients(image_tree):
    train_pneumonia = sorted((image_tree / "train" / "PNEUMONIA").iterdir())
    shutil.copy(train_pneumonia[0], image_tree / "test" / "PNEUMONIA" / "person99_virus_1.jpeg")
    shutil.copy(train_pneumonia[0], image_tree / "train" / "PNEUMONIA" / "person98_virus_2.jpeg")
    index = data.scan_dataset(image_tree)
    frame = index.images.assign(subset=index.images["split"])
    frame.loc[frame["relpath"].str.endswith("person98_virus_2.jpeg"), "subset"] = "val"
    files = summary.duplicate_files(index.duplicates, frame)
    assert len(files) == 3 and {"relpath", "subset", "patient_key"} <= set(files.columns)
    groups = summary.duplicate_groups(files)
    assert groups[["images", "splits", "subsets", "patients"]].values.tolist() == [[3, 2, 3, 3]]
    assert summary.duplicate_summary(groups) == {
        "groups": 1, "files": 3, "across_splits": 1, "across_subsets": 1, "across_patients": 1}


def test_every_summary_function_is_re_exported_from_the_data_package():
    public = [name for name, value in vars(summary).items() if callable(value) and not name.startswith("_")
              and getattr(value, "__module__", "") == summary.__name__]
    assert {"images_per_split", "duplicate_counts", "copy_manifest", "stored_gray"} <= set(public)
    assert all(name in data.__all__ and getattr(data, name) is getattr(summary, name) for name in public)


def test_percent_shows_a_share_with_one_decimal_and_a_dash_when_undefined(images):
    assert percent(0.7429) == "74.3%" and percent(1) == "100.0%" and percent(float("nan")) == "–"
    shown = readable(summary.images_per_split(images), percent_columns=["PNEUMONIA share"]).data
    assert shown["PNEUMONIA share"].tolist() == ["60.0%", "66.7%"] and shown["Total"].tolist() == ["10", "3"]


# --- the replicates' patient splits -----------------------------------------------------------------------

@pytest.fixture
def many_patients() -> pd.DataFrame:
    """Train: 8 NORMAL patients (1-2 images) and 8 PNEUMONIA patients (2-3 images); test: 2 + 2."""
    return index_frame({("train", "NORMAL"): [1, 2] * 4, ("train", "PNEUMONIA"): [2, 3] * 4,
                        ("test", "NORMAL"): [1, 1], ("test", "PNEUMONIA"): [1, 1]})


PARAMS = {"val_fraction": 0.25, "subsample_per_class": None}


def test_replicate_splits_draw_one_split_per_distinct_seed_as_training_does(many_patients):
    splits = summary.replicate_splits(many_patients, PARAMS, [3, 1, 3])
    assert list(splits) == [3, 1]
    assert splits[1].equals(data.replicate_frame(many_patients, PARAMS, 1))


def test_replicate_split_table_counts_patients_and_images_per_class_and_subset(many_patients):
    splits = summary.replicate_splits(many_patients, PARAMS, [1, 2])
    table = summary.replicate_split_table(splits)
    assert table["split seed"].tolist() == [1, 2]
    for row, frame in zip(table.to_dict("records"), splits.values()):
        val = frame[frame["subset"] == "val"]
        assert row["validation NORMAL images"] == int((val["label"] == "NORMAL").sum())
        assert row["validation PNEUMONIA patients"] == val.loc[val["label"] == "PNEUMONIA", "patient_key"].nunique()
        assert row["training NORMAL patients"] + row["validation NORMAL patients"] == 8
        assert row["training PNEUMONIA images"] + row["validation PNEUMONIA images"] == 20
        assert row["split fingerprint"] == data.split_fingerprint(frame)[:12]


def test_patients_on_both_sides_and_the_overlap_of_validation_subsets(many_patients):
    splits = summary.replicate_splits(many_patients, PARAMS, [1, 2, 3])
    assert summary.patients_on_both_sides(splits) == 0
    patients = [set(f.loc[f["subset"] == "val", "patient_key"]) for f in splits.values()]
    assert summary.validation_overlap(splits) == [len(patients[0] & patients[1]), len(patients[0] & patients[2]),
                                                  len(patients[1] & patients[2])]
    leaky = splits[1].copy()
    val_patient = leaky.loc[leaky["subset"] == "val", "patient_key"].iloc[0]
    two_images = leaky.index[leaky["patient_key"] == val_patient]
    leaky.loc[two_images[:1], "subset"] = "train"
    assert summary.patients_on_both_sides({1: leaky, 2: splits[2]}) == int(len(two_images) > 1)


def test_describe_replicate_splits_names_who_draws_which_split(many_patients):
    own = summary.replicate_splits(many_patients, PARAMS, [1, 2])
    text = exploration.describe_replicate_splits(own, [(1, 1), (2, 2)])
    val_patients = own[1].loc[own[1]["subset"] == "val", "patient_key"].nunique()
    assert text.startswith("This profile trains 2 replicates (seeds 1 and 2); each draws its own validation patients")
    assert f"Each validation subset holds **{val_patients} patients**" in text
    assert "patients in both training and validation: **0** in every split." in text
    assert f"any two validation subsets share {summary.validation_overlap(own)[0]} of their patients" in text
    shared = summary.replicate_splits(many_patients, PARAMS, [7, 7])
    text = exploration.describe_replicate_splits(shared, [(1, 7), (2, 7)])
    assert "trains 2 replicates (seeds 1 and 2) that all share one split, drawn with split seed 7" in text
    assert "two validation subsets share" not in text and text.endswith("**0**.")
    one = exploration.describe_replicate_splits(summary.replicate_splits(many_patients, PARAMS, [5]), [(5, 5)])
    assert one.startswith("This profile trains one replicate (seed 5); its validation patients are drawn with "
                          "split seed 5.") and "The validation subset holds" in one


def test_describe_replicate_splits_states_the_subsample():
    images = index_frame({("train", "NORMAL"): [1] * 12, ("train", "PNEUMONIA"): [1] * 12,
                          ("test", "NORMAL"): [1] * 6, ("test", "PNEUMONIA"): [1] * 6})
    params = {"val_fraction": 0.5, "subsample_per_class": 4}
    splits = summary.replicate_splits(images, params, [1])
    assert summary.replicate_split_table(splits).iloc[0]["training NORMAL images"] == 4
    text = exploration.describe_replicate_splits(splits, [(1, 1)], subsample_per_class=4)
    assert "a subsample of at most 4 images per class and subset (24 images in training, validation and test)" in text


# --- duplicates: every group, and whether any replicate split separates one -------------------------------

@pytest.fixture
def tree_with_duplicates(image_tree):
    """The generated tree plus a copy of a train file in test (other patient) and one in train (same patient)."""
    train_pneumonia = sorted((image_tree / "train" / "PNEUMONIA").iterdir())
    shutil.copy(train_pneumonia[0], image_tree / "test" / "PNEUMONIA" / "person99_virus_1.jpeg")
    shutil.copy(train_pneumonia[2], image_tree / "train" / "PNEUMONIA" / "person2_virus_99.jpeg")
    return data.scan_dataset(image_tree)


def test_duplicate_table_lists_every_group_with_its_folders_files_and_patients(tree_with_duplicates):
    index = tree_with_duplicates
    table = summary.duplicate_table(index.duplicates, index.images)
    assert table["group"].tolist() == [1, 2] and len(index.duplicates) == 4
    shown = sum(len(files.split(", ")) for files in table["files"])
    assert shown == len(index.duplicates)  # every file of every group is shown
    crossing = table[table["folder"].str.contains(",")].iloc[0]
    assert crossing["folder"] == "test/PNEUMONIA, train/PNEUMONIA" and "person99_virus_1.jpeg" in crossing["files"]
    assert crossing["patients"].count(",") == 1


def test_duplicate_counts_count_crossings_over_every_replicate_split_and_are_stated(tree_with_duplicates):
    index = tree_with_duplicates
    frame = index.images.assign(subset=index.images["split"])
    split_apart = frame.copy()
    split_apart.loc[split_apart["relpath"].str.endswith("person2_virus_99.jpeg"), "subset"] = "val"
    counts = summary.duplicate_counts(index.duplicates, index.images, {1: frame, 2: split_apart})
    assert (counts["groups"], counts["files"], counts["across_splits"], counts["across_subsets"]) == (2, 4, 1, 1)
    text = exploration.describe_duplicates(counts, n_splits=2, excluded=3)
    assert "**2** groups of identical images (4 files), all listed above" in text
    assert "split between training and validation in any of the 2 replicate splits: **1**" in text
    assert "Unreadable or non-image files excluded: **3**" in text
    assert "in the replicate split: **0**" in exploration.describe_duplicates(
        summary.duplicate_counts(index.duplicates, index.images, {1: frame}), n_splits=1, excluded=0)
    subsample = {1: frame[~frame["path"].isin(index.duplicates["path"])]}  # a smoke profile may keep no duplicate
    counts = summary.duplicate_counts(index.duplicates, index.images, subsample)
    assert (counts["groups"], counts["files"], counts["across_subsets"]) == (2, 4, 0)  # the table lists them all


# --- which copy, sizes as a reader sees them --------------------------------------------------------------

def test_describe_data_copy_tells_a_rebuilt_copy_from_a_plain_one(image_tree):
    index = data.scan_dataset(image_tree)
    plain = exploration.describe_data_copy(image_tree, index.images)
    assert "without a MANIFEST.csv" in plain and "rebuilt" not in plain and "36 images" in plain
    pd.DataFrame({"source": ["a/x@1", "a/x@2", "b/y@1", "a/x@1"], "orig_width": [224, 300, 227, 500],
                  "orig_height": [224, 200, 227, 400]}).to_csv(image_tree / "MANIFEST.csv", index=False)
    (image_tree.parent / "README.md").write_text("how it was built")
    rebuilt = exploration.describe_data_copy(image_tree, index.images)
    assert "a **rebuilt copy**, not the original download" in rebuilt
    assert "gathered from 2 public copies" in rebuilt and "README.md" in rebuilt
    assert "**50%** of the images had already been resized to a square" in rebuilt
    assert "shorter side at most 40 px" in rebuilt  # the generated images are 44 x 40


def test_describe_size_figure_names_the_most_common_size_and_its_count():
    sizes = [(224, 224)] * 20 + [(227, 227)] * 12 + [(300, 256)] * 8
    images = index_frame({("train", "NORMAL"): [10], ("train", "PNEUMONIA"): [30]}, sizes)
    text = exploration.describe_size_figure(images)
    assert text.startswith("Each dot is one of the 3 distinct stored sizes")
    assert "The most common size, square 224×224, holds **20** of the 40 images (10 NORMAL, 10 PNEUMONIA)" in text


# --- black pixels: what the spike at 0 of the histograms is ------------------------------------------------

def framed(size: int = 20, left: int = 0, center: bool = False) -> np.ndarray:
    """A mid-gray image with ``left`` black columns at each side, or a black 4x4 block in the middle."""
    pixels = np.full((size, size), 120, dtype=np.uint8)
    if left:
        pixels[:, :left] = pixels[:, size - left:] = 0
    if center:
        pixels[8:12, 8:12] = 0
    return pixels


def test_black_pixel_shares_measure_black_and_where_it_lies():
    arrays = {"a": framed(left=2), "b": framed(center=True), "c": framed()}
    images = pd.DataFrame({"path": list(arrays), "label": "NORMAL", "width": 20, "height": 20})
    shares = summary.black_pixel_shares(images, border=0.1, reader=arrays.__getitem__)
    assert shares["black share"].tolist() == pytest.approx([80 / 400, 16 / 400, 0.0])
    assert shares["black in border"].iloc[:2].tolist() == [1.0, 0.0] and math.isnan(shares["black in border"].iloc[2])


def test_stored_gray_reads_exact_pixel_values_at_the_stored_size(tmp_path):
    Image.fromarray(framed(left=3)[:, :18]).save(tmp_path / "IM-0001-0001.png")
    pixels = summary.stored_gray(tmp_path / "IM-0001-0001.png")
    assert pixels.shape == (20, 18) and pixels.dtype == np.uint8 and (pixels == 0).sum() == 20 * 3 + 20 * 1


def shares_frame(rows: list[tuple[str, tuple[int, int], float, float]]) -> pd.DataFrame:
    """(label, (width, height), black share, black in border) per image."""
    return pd.DataFrame([{"path": f"/x/{i}", "label": label, "width": size[0], "height": size[1],
                          "black share": share, "black in border": band}
                         for i, (label, size, share, band) in enumerate(rows)])


def test_black_pixels_by_group_per_stored_size_group_and_class():
    rows = ([("NORMAL", (224, 224), 0.06, 1.0)] * 10 + [("PNEUMONIA", (224, 224), 0.002, 0.5)] * 10
            + [("NORMAL", (300 + i, 256), 0.08, 0.9) for i in range(5)]
            + [("PNEUMONIA", (400 + i, 256), 0.0, float("nan")) for i in range(15)])
    table = summary.black_pixels_by_group(shares_frame(rows))
    assert list(zip(table["group"], table["label"])) == [
        ("square 224×224", "NORMAL"), ("square 224×224", "PNEUMONIA"), ("other sizes", "NORMAL"),
        ("other sizes", "PNEUMONIA"), ("all images", "NORMAL"), ("all images", "PNEUMONIA")]
    assert table["images"].tolist() == [10, 10, 5, 15, 15, 25]
    assert table["median black pixels"].tolist() == pytest.approx([0.06, 0.002, 0.08, 0.0, 0.06, 0.0])
    assert table["images ≥ 1% black"].tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    normal_all = table.iloc[4]["black pixels in the outer band"]  # weighted by each image's black pixel count
    black = [0.06 * 224 * 224] * 10 + [0.08 * w * 256 for w in range(300, 305)]
    assert normal_all == pytest.approx((sum(black[:10]) + 0.9 * sum(black[10:])) / sum(black))
    assert table.iloc[1]["black pixels in the outer band"] == pytest.approx(0.5)
    assert math.isnan(table.iloc[3]["black pixels in the outer band"])  # no black pixel at all
    assert set(data.BLACK_SHARE_COLUMNS) < set(table.columns)


def black_table(medians: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """A black_pixels_by_group-shaped table from {group: (NORMAL median, PNEUMONIA median)}."""
    rows = [{"group": group, "label": label, "images": 10, "median black pixels": value,
             "images ≥ 1% black": 0.5, "black pixels in the outer band": band}
            for group, pair in medians.items() for label, value, band in zip(("NORMAL", "PNEUMONIA"), pair, (0.98, 0.95))]
    return pd.DataFrame(rows)


def test_describe_black_pixels_says_what_the_spike_is_and_whether_every_group_agrees():
    table = black_table({"square 224×224": (0.058, 0.002), "other sizes": (0.069, 0.004), "all images": (0.065, 0.005)})
    text = exploration.describe_black_pixels(table)
    assert "median NORMAL image has **6.5%** of its pixels black, the median PNEUMONIA image **0.5%**" in text
    assert "95%–98% lie in the outer band (10% of the width or height from an edge" in text
    assert "NORMAL images have more black in every stored-size group (medians: " in text
    assert "square 224×224 5.8% against 0.2%" in text
    mixed = black_table({"square 224×224": (0.058, 0.002), "other sizes": (0.001, 0.004), "all images": (0.03, 0.003)})
    assert "NORMAL images have more black in 1 of 2 stored-size groups" in exploration.describe_black_pixels(mixed)
    reversed_ = black_table({"all images": (0.001, 0.02)})
    assert "median PNEUMONIA image has **2.0%**" in exploration.describe_black_pixels(reversed_)
    assert exploration.black_pixel_verdict(reversed_).startswith("PNEUMONIA images carry more pure-black border than "
                                                             "NORMAL images (median 2.0% against 0.1%")


def test_black_pixel_maps_show_where_each_class_is_black():
    arrays = {"n1": np.hstack([np.zeros((10, 10), np.uint8), np.full((10, 10), 90, np.uint8)]),  # left half black
              "n2": np.full((6, 6), 90, np.uint8), "p1": framed(size=8)}
    images = pd.DataFrame({"path": list(arrays), "label": ["NORMAL", "NORMAL", "PNEUMONIA"]})
    maps = summary.black_pixel_maps(images, size=4, reader=arrays.__getitem__)
    assert maps["NORMAL"].shape == (4, 4)
    assert (maps["NORMAL"][:, :2] == 0.5).all() and (maps["NORMAL"][:, 2:] == 0).all()
    assert (maps["PNEUMONIA"] == 0).all()
