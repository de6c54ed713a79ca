"""Summary tables of the data exploration report (pandas and scikit-learn: no TensorFlow).

``images`` is ``DatasetIndex.images`` (one row per image, Kaggle ``split``); ``frame`` is the output of
``assign_subsets`` (the same rows with a ``subset`` column).
"""
import pandas as pd

from .audit import GROUP_MIN_SHARE, OTHER_GROUP, frequent_sizes, geometry_groups, size_name
from .split import subset_counts


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
    """Per split and label: number of patients and the mean and largest number of images per patient."""
    return images_per_patient(images).groupby(["split", "label"]).agg(
        patients=("patient_key", "size"), images_per_patient_mean=("images", "mean"),
        images_per_patient_max=("images", "max"))


def share_of_patients_with_several_images(images: pd.DataFrame) -> float:
    """Share of patients (all splits and labels) with more than one image."""
    return float((images_per_patient(images)["images"] > 1).mean())


def validation_split_summary(frame: pd.DataFrame) -> dict:
    """Patients and images of the ``val`` subset, and how many patients ``train`` and ``val`` share (should be 0)."""
    patients = {subset: set(frame.loc[frame["subset"] == subset, "patient_key"]) for subset in ("train", "val")}
    return {"val_patients": len(patients["val"]), "val_images": int((frame["subset"] == "val").sum()),
            "shared_patients": len(patients["train"] & patients["val"])}


def image_size_summary(images: pd.DataFrame) -> pd.DataFrame:
    """Per label: images, median width and height, and the share stored at a frequent size (audit.frequent_sizes)."""
    frequent = geometry_groups(images).astype(str).ne(OTHER_GROUP)
    return images.assign(frequent=frequent).groupby("label").agg(
        images=("path", "size"), width_median=("width", "median"), height_median=("height", "median"),
        share_at_a_frequent_size=("frequent", "mean"))


def _size_range(images: pd.DataFrame) -> str:
    """``width 140–648 px, height 120–306 px``."""
    return (f"width {images['width'].min()}–{images['width'].max()} px, "
            f"height {images['height'].min()}–{images['height'].max()} px")


def describe_image_sizes(images: pd.DataFrame) -> str:
    """Markdown that states the stored image sizes of this copy of the data, whatever the copy."""
    sizes = frequent_sizes(images)
    if sizes.empty:
        return (f"No stored size is shared by {GROUP_MIN_SHARE:.0%} or more of the {len(images):,} images: sizes vary "
                f"({_size_range(images)}), as original scans do, so the images were not resized to one size.")
    listed = ", ".join(f"{size_name(*size)} ({count:,} images)" for size, count in sizes.items())
    text = (f"**{sizes.sum() / len(images):.0%}** of the {len(images):,} images share a few fixed stored sizes, each "
            f"held by {GROUP_MIN_SHARE:.0%} or more of the images: {listed}.")
    if any(width == height for width, height in sizes.index):
        text += (" A square size held by that many X-rays means those images were resized to a square, ignoring the "
                 "aspect ratio, before we received them.")
    if any(width != height for width, height in sizes.index):
        text += " A non-square size held by that many images points to one resizing step or one scanner setting."
    rest = images[geometry_groups(images).astype(str).eq(OTHER_GROUP)]
    if len(rest):
        text += f" The other {len(rest):,} images keep varied sizes ({_size_range(rest)})."
    return text + (" Stored size then records how a copy was made, not only what a scanner produced; if the classes "
                   "were stored differently, size alone could predict the label (next section).")


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
