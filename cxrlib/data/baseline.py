"""The metadata-only baseline: how well a classifier that sees no pixels (stored size, file size) predicts the label.

``images`` is ``DatasetIndex.images`` (``path, split, label, target, patient_key, width, height``); the files are
only stat'ed for their size, never read.
"""
import os

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from cxrlib import bootstrap

from .index import require_columns

GEOMETRY_FEATURES = ("width", "height", "aspect_ratio")
# Stored size alone, then with the file size (JPEG bytes also reflect image content: see metadata_baseline).
GEOMETRY_SET = "stored size"
FEATURE_SETS = {GEOMETRY_SET: GEOMETRY_FEATURES, "stored size + file size": (*GEOMETRY_FEATURES, "file_bytes")}
BASELINE_THRESHOLD = 0.5


def file_bytes(paths: pd.Series) -> pd.Series:
    """Size on disk of each file (os.stat), with a clear error for a file that is gone."""
    try:
        return paths.map(lambda path: os.stat(path).st_size)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error.filename} is listed in the index but does not exist; re-run "
                                "cxrlib.data.scan_dataset on the data folder.") from error


def metadata_features(images: pd.DataFrame) -> pd.DataFrame:
    """Per image: stored width, height, aspect ratio (width / height) and file size in bytes; no pixels."""
    require_columns(images, ("path", "width", "height"), "metadata_features")
    return pd.DataFrame({"width": images["width"], "height": images["height"],
                         "aspect_ratio": images["width"] / images["height"], "file_bytes": file_bytes(images["path"])})


def _split_rows(images: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one Kaggle split; an error if it is missing or holds one class only."""
    rows = images[images["split"] == split]
    if rows["target"].nunique() < 2:
        raise ValueError(f"metadata_baseline needs both classes in the {split!r} split, found "
                         f"{sorted(rows['label'].unique())} in {len(rows)} image(s); pass the full index.")
    return rows


def metadata_baseline(images: pd.DataFrame, features=FEATURE_SETS["stored size + file size"],
                      seed: int = 42, n_boot: int = 2000) -> dict:
    """What a model could reach without looking at the lungs: test ROC-AUC and accuracy from file metadata.

    Histogram gradient boosting (scikit-learn defaults, seeded, no early stopping, so deterministic) is fitted
    on the training folder and scored on the test folder. Trees find thresholds and non-monotone patterns
    (224 low, 227 high, other sizes between) that a linear model would miss, with no scaling needed.
    Accuracy is at probability 0.5, nothing is tuned, so no validation split is needed. The ROC-AUC's 95% CI
    resamples test patients (``patient_key``), as their images are not independent.
    """
    require_columns(images, ("path", "split", "label", "target", "patient_key", "width", "height"),
                    "metadata_baseline")
    allowed = FEATURE_SETS["stored size + file size"]
    if not features or not set(features) <= set(allowed):
        raise ValueError(f"metadata_baseline features {list(features)} must be a non-empty subset of {list(allowed)}")
    train, test = _split_rows(images, "train"), _split_rows(images, "test")
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=seed)
    model.fit(metadata_features(train)[list(features)], train["target"])
    probs = model.predict_proba(metadata_features(test)[list(features)])[:, 1]
    scores = bootstrap.bootstrap_metrics(test["target"], probs, BASELINE_THRESHOLD, n_boot=n_boot, seed=seed,
                                         groups=test["patient_key"])
    return {"features": tuple(features), "train_images": len(train), "test_images": len(test),
            "roc_auc": scores.loc["roc_auc", "estimate"], "roc_auc_ci_low": scores.loc["roc_auc", "ci_low"],
            "roc_auc_ci_high": scores.loc["roc_auc", "ci_high"], "accuracy": scores.loc["accuracy", "estimate"],
            "majority_accuracy": max(test["target"].mean(), 1 - test["target"].mean()),
            "threshold": BASELINE_THRESHOLD,
            "note": "the classifier sees no pixels and no patient information: one fit on every training-folder "
                    "image, scored once on the test folder"}


def metadata_baseline_table(images: pd.DataFrame, seed: int = 42, n_boot: int = 2000) -> pd.DataFrame:
    """``metadata_baseline`` for each of ``FEATURE_SETS``, one row each (index: the feature set's name)."""
    rows = {name: metadata_baseline(images, features, seed, n_boot) for name, features in FEATURE_SETS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index").drop(columns=["features", "note", "threshold"])
    return table.rename_axis("features")
