"""Patient-grouped validation split, count tables, subsampling for smoke runs, and class weights."""
import hashlib

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_class_weight

SUBSETS = ("train", "val", "test", "official_val")
SUBSET_OF_SPLIT = {"train": "train", "val": "official_val", "test": "test"}


def assign_subsets(images: pd.DataFrame, val_fraction: float = 0.1, seed: int = 42) -> pd.DataFrame:
    """A copy of `images` with a `subset` column; `val` is carved from Kaggle train by whole patients.

    StratifiedGroupKFold with round(1 / val_fraction) folds keeps each patient in one part and the label
    balance of train in both; its first fold becomes `val`. The result depends only on the rows and seed.
    """
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction}.")
    frame = images.copy()
    frame["subset"] = frame["split"].map(SUBSET_OF_SPLIT)
    train = frame[frame["split"] == "train"].sort_values("path")
    n_folds = round(1 / val_fraction)
    patients = train["patient_key"].nunique()
    if patients < n_folds:
        raise ValueError(
            f"Only {patients} train patients: too few for val_fraction={val_fraction} ({n_folds} folds). "
            "Use a larger val_fraction or more data."
        )
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    _, val_rows = next(folds.split(train, train["target"], groups=train["patient_key"]))
    frame.loc[train.index[val_rows], "subset"] = "val"
    labels_in_val = set(frame.loc[frame["subset"] == "val", "label"])
    if len(labels_in_val) < 2:
        raise ValueError(
            f"The validation part holds only {sorted(labels_in_val)}: too few patients per class for "
            f"val_fraction={val_fraction}. Use a larger val_fraction or more data."
        )
    return frame


def replicate_frame(images: pd.DataFrame, params: dict, split_seed: int) -> pd.DataFrame:
    """The subsets of one replicate (or search): the patient split and any subsampling, drawn with ``split_seed`` only.

    ``params`` are a profile's (``val_fraction``, ``subsample_per_class``).
    """
    frame = assign_subsets(images, val_fraction=params["val_fraction"], seed=split_seed)
    if params["subsample_per_class"] is not None:
        frame = subsample(frame, params["subsample_per_class"], seed=split_seed)
    return frame


def split_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over sorted (relative path, subset) pairs: equal exactly when two frames split the same images alike."""
    names = frame["relpath"] if "relpath" in frame.columns else frame["path"]
    pairs = sorted(f"{name}\t{subset}" for name, subset in zip(names, frame["subset"]))
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def _group_column(frame: pd.DataFrame) -> str:
    """`subset` after assign_subsets, otherwise the Kaggle `split`."""
    return "subset" if "subset" in frame.columns else "split"


def subset_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy table for reports: one row per subset (or split) and label with images, patients and share."""
    by = _group_column(frame)
    counts = (
        frame.groupby([by, "label"])
        .agg(images=("path", "size"), patients=("patient_key", "nunique"))
        .reset_index()
    )
    counts["share"] = counts["images"] / counts.groupby(by)["images"].transform("sum")
    counts[by] = pd.Categorical(counts[by], [name for name in SUBSETS if name in set(counts[by])], ordered=True)
    return counts.sort_values([by, "label"]).reset_index(drop=True)


def _pick_images(group: pd.DataFrame, limit: int, rng: np.random.Generator) -> list:
    """Row labels of at most `limit` images: whole patients in random order, topped up from a split patient."""
    rows_of_patient = group.groupby("patient_key").groups
    chosen, taken, leftovers = [], 0, []
    for patient in rng.permutation(sorted(rows_of_patient)):
        rows = rows_of_patient[patient].tolist()
        if taken + len(rows) <= limit:
            chosen += rows
            taken += len(rows)
        else:
            leftovers += rows
    return chosen + leftovers[: limit - taken]


def subsample(frame: pd.DataFrame, per_class: int, seed: int = 42) -> pd.DataFrame:
    """At most `per_class` images per subset (or split) and label, taking whole patients where possible."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}.")
    rng = np.random.default_rng(seed)
    keep = []
    for _, group in frame.groupby([_group_column(frame), "label"], sort=True):
        keep += _pick_images(group, per_class, rng)
    return frame[frame.index.isin(keep)].copy()


def class_weights(frame: pd.DataFrame) -> dict[int, float]:
    """Balanced Keras class weights {0: w_normal, 1: w_pneumonia} from the train subset."""
    train_targets = frame.loc[frame[_group_column(frame)] == "train", "target"].to_numpy()
    missing = {0, 1} - set(train_targets.tolist())
    if missing:
        raise ValueError(f"The train subset has no images of class {sorted(missing)}; cannot weight classes.")
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=train_targets)
    return {0: float(weights[0]), 1: float(weights[1])}
