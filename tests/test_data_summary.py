"""Exploration summary tables on small hand-made index frames and on a generated image tree."""
import shutil

import pandas as pd
import pytest

from cxrlib import data
from cxrlib.data import summary


def index_frame(patients: dict[tuple[str, str], list[int]], sizes: list[tuple[int, int]] | None = None) -> pd.DataFrame:
    """Rows shaped like scan_dataset().images; ``patients[(split, label)]`` lists images per patient."""
    rows = []
    for (split, label), counts in patients.items():
        for number, count in enumerate(counts):
            patient_id = f"{'IM' if label == 'NORMAL' else 'person'}-{number}"
            rows += [{"path": f"/data/{split}/{label}/{patient_id}-{image}.jpeg", "split": split, "label": label,
                      "target": int(label == "PNEUMONIA"), "patient_id": patient_id,
                      "patient_key": f"{split}/{patient_id}"} for image in range(count)]
    frame = pd.DataFrame(rows)
    width, height = zip(*(sizes or [(224, 224)] * len(frame)))
    return frame.assign(width=width, height=height)


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
    assert table.loc["NORMAL"].tolist() == [25, 224.0, 224.0, 0.8]
    assert table.loc["PNEUMONIA"].tolist() == [25, 317.0, 256.0, 0.0]


def test_describe_image_sizes_names_the_frequent_squares_and_the_spread_of_the_rest():
    sizes = [(224, 224)] * 20 + [(227, 227)] * 24 + [(300 + i, 250 + i) for i in range(10)]
    text = summary.describe_image_sizes(index_frame({("train", "NORMAL"): [27], ("train", "PNEUMONIA"): [27]}, sizes))
    assert text.startswith("**81%** of the 54 images share a few fixed stored sizes, each held by 5% or more")
    assert "square 224×224 (20 images), square 227×227 (24 images)." in text and "resized to a square" in text
    assert "The other 10 images keep varied sizes (width 300–309 px, height 250–259 px)." in text


def test_describe_image_sizes_of_original_scans_says_sizes_vary():
    sizes = [(300 + i, 256) for i in range(30)]
    text = summary.describe_image_sizes(index_frame({("test", "NORMAL"): [15], ("test", "PNEUMONIA"): [15]}, sizes))
    assert text.startswith("No stored size is shared by 5% or more of the 30 images: sizes vary "
                           "(width 300–329 px, height 256–256 px)")
    assert "square" not in text


def test_describe_image_sizes_calls_a_frequent_non_square_size_a_resizing_or_scanner_setting():
    sizes = [(316, 256)] * 30 + [(400 + i, 256) for i in range(10)]
    text = summary.describe_image_sizes(index_frame({("test", "NORMAL"): [20], ("test", "PNEUMONIA"): [20]}, sizes))
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
    assert len(public) == 11
    assert all(name in data.__all__ and getattr(data, name) is getattr(summary, name) for name in public)
