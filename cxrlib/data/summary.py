"""Summary tables of the data exploration report (pandas only: no TensorFlow).

``images`` is ``DatasetIndex.images`` (one row per image, Kaggle ``split``); ``frame`` is the output of
``assign_subsets`` (the same rows with a ``subset`` column).
"""
import pandas as pd

from .split import subset_counts

PRE_RESIZED_SIZES = (224, 227)


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
    """Per label: images, median width and height, and the share stored as 224x224 or 227x227 squares."""
    pre_resized = images["width"].eq(images["height"]) & images["width"].isin(PRE_RESIZED_SIZES)
    return images.assign(pre_resized=pre_resized).groupby("label").agg(
        images=("path", "size"), width_median=("width", "median"), height_median=("height", "median"),
        share_square_224_or_227=("pre_resized", "mean"))


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
