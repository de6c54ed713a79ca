"""Summary tables of the data exploration report (pandas and Pillow; TensorFlow only on first use of
``stored_gray``, which converts pixels as the input pipeline does); ``report.exploration`` states them in words.

``images`` is ``DatasetIndex.images`` (one row per image, Kaggle ``split``); ``frame`` is the output of
``assign_subsets`` (the same rows with a ``subset`` column); ``splits`` maps each split seed of a profile's
replicates to its frame (``replicate_splits``).
"""
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from cxrlib.contract import CLASS_NAMES, SPLITS

from .geometry import OTHER_GROUP, geometry_groups
from .split import replicate_frame, split_fingerprint, subset_counts

MANIFEST_FILE = "MANIFEST.csv"  # written by the rebuilt copy (../shared/data/README.md): one row per file, its source
SUBSET_NAMES = {"train": "training", "val": "validation"}  # the subsets a replicate trains and selects on
BLACK_BORDER = 0.1  # black pixels within this fraction of the width (height) of an edge lie in the outer band
BLACK_IMAGE_SHARE = 0.01  # an image counts as having a black frame when at least this share of it is exactly 0
# The columns of black_pixels_by_group that hold shares (reports show them as percentages).
BLACK_SHARE_COLUMNS = ("median black pixels", f"images ≥ {BLACK_IMAGE_SHARE:.0%} black",
                       "black pixels in the outer band")


def images_per_split(images: pd.DataFrame) -> pd.DataFrame:
    """One row per Kaggle split: NORMAL and PNEUMONIA images, their total and the PNEUMONIA share."""
    table = subset_counts(images).pivot(index="split", columns="label", values="images")
    table["total"] = table.sum(axis=1)
    table["PNEUMONIA share"] = table["PNEUMONIA"] / table["total"]
    return table


def images_per_patient(images: pd.DataFrame) -> pd.DataFrame:
    """One row per patient and label: ``split, label, patient_key, images``."""
    return images.groupby(["split", "label", "patient_key"]).size().rename("images").reset_index()


def patients_per_split(images: pd.DataFrame) -> pd.DataFrame:
    """Per split (folder order) and label: patients, and the mean and largest number of images per patient."""
    table = images_per_patient(images).groupby(["split", "label"]).agg(
        patients=("patient_key", "size"), **{"mean images per patient": ("images", "mean"),
                                             "most images of one patient": ("images", "max")})
    order = [split for split in SPLITS if split in table.index.get_level_values("split")]
    return table.reindex(order, level="split")


def share_of_patients_with_several_images(images: pd.DataFrame) -> float:
    """Share of patients (all splits and labels) with more than one image."""
    return float((images_per_patient(images)["images"] > 1).mean())


def validation_split_summary(frame: pd.DataFrame) -> dict:
    """Patients and images of the ``val`` subset, and how many patients ``train`` and ``val`` share (should be 0)."""
    patients = {subset: set(frame.loc[frame["subset"] == subset, "patient_key"]) for subset in ("train", "val")}
    return {"val_patients": len(patients["val"]), "val_images": int((frame["subset"] == "val").sum()),
            "shared_patients": len(patients["train"] & patients["val"])}


def image_size_summary(images: pd.DataFrame) -> pd.DataFrame:
    """Per label: images, median width and height in whole pixels, and the share stored at a frequent size
    (geometry.frequent_sizes)."""
    frequent = geometry_groups(images).astype(str).ne(OTHER_GROUP)
    medians = ["median width (px)", "median height (px)"]
    table = images.assign(frequent=frequent).groupby("label").agg(
        images=("path", "size"), **{medians[0]: ("width", "median"), medians[1]: ("height", "median"),
                                    "share at a frequent size": ("frequent", "mean")})
    table[medians] = table[medians].round().astype(int)
    return table


def sample_per_class(images: pd.DataFrame, n_per_class: int, seed: int = 42) -> pd.DataFrame:
    """A seeded random sample of ``n_per_class`` images of each label (fewer if the smallest class is smaller)."""
    n = min(n_per_class, int(images["label"].value_counts().min()))
    return images.groupby("label").sample(n=n, random_state=seed)


def duplicate_files(duplicates: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``DatasetIndex.duplicates`` joined with each file's ``relpath, subset, patient_key`` from ``frame``."""
    return duplicates.merge(frame[["path", "relpath", "subset", "patient_key"]], on="path")


def duplicate_groups(files: pd.DataFrame) -> pd.DataFrame:
    """One row per group of identical files (``duplicate_files``): files, and the splits, subsets, patients spanned."""
    return files.groupby("sha256").agg(images=("path", "size"), splits=("split", "nunique"),
                                       subsets=("subset", "nunique"), patients=("patient_key", "nunique"))


def duplicate_summary(groups: pd.DataFrame) -> dict:
    """Counts for the report: groups, files, and groups spanning several splits, subsets or patient numbers."""
    return {"groups": len(groups), "files": int(groups["images"].sum()),
            "across_splits": int((groups["splits"] > 1).sum()),
            "across_subsets": int((groups["subsets"] > 1).sum()),
            "across_patients": int((groups["patients"] > 1).sum())}


def duplicate_table(duplicates: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Every group of byte-identical files, one row each (folder order, then file name): its folder, the file
    names and the patient numbers they are filed under."""
    files = duplicates[["sha256", "path"]].merge(images[["path", "split", "label", "relpath", "patient_id"]], on="path")
    files = files.assign(name=files["relpath"].str.rsplit("/", n=1).str[-1],
                         order=files["split"].map({split: i for i, split in enumerate(SPLITS)}))
    groups = files.sort_values(["order", "label", "name"]).groupby("sha256", sort=False).agg(
        folder=("relpath", lambda paths: ", ".join(sorted({path.rsplit("/", 1)[0] for path in paths}))),
        files=("name", ", ".join), patients=("patient_id", lambda ids: ", ".join(dict.fromkeys(ids))))
    return groups.reset_index(drop=True).rename_axis("group").reset_index().assign(group=lambda t: t["group"] + 1)


def duplicate_counts(duplicates: pd.DataFrame, images: pd.DataFrame, splits: dict[int, pd.DataFrame]) -> dict:
    """``duplicate_summary`` of the whole index, its ``across_subsets`` replaced by the most groups with files in
    both training and validation of any replicate split (``splits``)."""
    crossing = 0
    for frame in splits.values():
        subsets = duplicate_files(duplicates, frame).groupby("sha256")["subset"].agg(set)
        crossing = max(crossing, sum({"train", "val"} <= found for found in subsets))
    counts = duplicate_summary(duplicate_groups(duplicate_files(duplicates, images.assign(subset=images["split"]))))
    return {**counts, "across_subsets": crossing}


def copy_manifest(root: str | Path) -> pd.DataFrame | None:
    """The rebuilt copy's ``MANIFEST.csv`` (../shared/data/README.md): each file's ``source`` copy and its size
    there (``orig_width, orig_height``); None for a copy without one, such as a Kaggle download."""
    manifest = Path(root) / MANIFEST_FILE
    if not manifest.is_file():
        return None
    return pd.read_csv(manifest, usecols=["source", "orig_width", "orig_height"])


def replicate_splits(images: pd.DataFrame, params: dict, split_seeds) -> dict[int, pd.DataFrame]:
    """Each distinct split seed of a profile's replicates (in order) -> the subsets they train on
    (``split.replicate_frame`` with the profile's ``val_fraction`` and ``subsample_per_class``)."""
    return {seed: replicate_frame(images, params, seed) for seed in dict.fromkeys(split_seeds)}


def replicate_split_table(splits: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One row per split seed: patients and images of each class in its training and validation subsets, and
    its ``split_fingerprint`` (first 12 characters, as a run records it in full)."""
    rows = []
    for seed, frame in splits.items():
        row = {"split seed": seed}
        for subset, name in SUBSET_NAMES.items():
            for label in CLASS_NAMES:
                part = frame[(frame["subset"] == subset) & (frame["label"] == label)]
                row[f"{name} {label} patients"] = part["patient_key"].nunique()
                row[f"{name} {label} images"] = len(part)
        rows.append({**row, "split fingerprint": split_fingerprint(frame)[:12]})
    return pd.DataFrame(rows)


def patients_on_both_sides(splits: dict[int, pd.DataFrame]) -> int:
    """The most patients any split has in both training and validation (0 when every split is patient-grouped)."""
    return max(validation_split_summary(frame)["shared_patients"] for frame in splits.values())


def validation_overlap(splits: dict[int, pd.DataFrame]) -> list[int]:
    """For every pair of split seeds, how many validation patients the two splits share."""
    patients = [set(frame.loc[frame["subset"] == "val", "patient_key"]) for frame in splits.values()]
    return [len(a & b) for i, a in enumerate(patients) for b in patients[i + 1:]]


def stored_gray(path: str | Path) -> np.ndarray:
    """uint8 grayscale pixels [H, W] of one file at its stored size, upright, converted as the input pipeline
    converts them (``to_rgb8``)."""
    from .pipeline import to_rgb8  # the pipeline module imports TensorFlow: loaded on first use only
    with Image.open(path) as image:
        return np.asarray(to_rgb8(ImageOps.exif_transpose(image)))[..., 0]


def black_pixel_shares(images: pd.DataFrame, border: float = BLACK_BORDER,
                       reader: Callable[[str], np.ndarray] = stored_gray) -> pd.DataFrame:
    """``images`` with, per image at its stored size, ``black share`` (pixels exactly 0) and ``black in border``
    (the share of those black pixels within ``border`` of an edge; NaN for an image without black pixels)."""
    shares, in_border = [], []
    for path in images["path"]:
        black = reader(path) == 0
        height, width = black.shape
        band_y, band_x = max(1, round(border * height)), max(1, round(border * width))
        inner = black[band_y:height - band_y, band_x:width - band_x].sum()
        total = black.sum()
        shares.append(total / black.size)
        in_border.append((total - inner) / total if total else float("nan"))
    return images.assign(**{"black share": shares, "black in border": in_border})


def black_pixel_maps(images: pd.DataFrame, size: int = 64,
                     reader: Callable[[str], np.ndarray] = stored_gray) -> dict[str, np.ndarray]:
    """Per label, a [size, size] map: the share of its images that are exactly 0 at each point (every image's
    black pixels stretched to the square, nearest neighbour)."""
    maps = {}
    for label, group in images.groupby("label"):
        total = np.zeros((size, size))
        for path in group["path"]:
            mask = Image.fromarray(((reader(path) == 0) * 255).astype(np.uint8))
            total += np.asarray(mask.resize((size, size), Image.Resampling.NEAREST)) > 127
        maps[label] = total / len(group)
    return maps


def black_pixels_by_group(shares: pd.DataFrame) -> pd.DataFrame:
    """Per geometry group (then all images) and label: images, median black share, share of images at least
    ``BLACK_IMAGE_SHARE`` black, and the share of all their black pixels lying in the outer band."""
    groups = geometry_groups(shares)
    parts = [*((str(group), shares[groups == group]) for group in groups.cat.categories if (groups == group).any()),
             ("all images", shares)]
    rows = []
    for group, part in parts:
        for label in CLASS_NAMES:
            rows_of_label = part[part["label"] == label]
            if rows_of_label.empty:
                continue
            black = rows_of_label["black share"] * rows_of_label["width"] * rows_of_label["height"]
            in_band = (black * rows_of_label["black in border"].fillna(0)).sum() / black.sum() if black.sum() \
                else float("nan")
            values = (rows_of_label["black share"].median(),
                      (rows_of_label["black share"] >= BLACK_IMAGE_SHARE).mean(), in_band)
            rows.append({"group": group, "label": label, "images": len(rows_of_label),
                         **dict(zip(BLACK_SHARE_COLUMNS, values))})
    return pd.DataFrame(rows)


