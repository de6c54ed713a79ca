"""Shortcut audit: does how an image was stored (its size, its file) predict the label without the lungs?

Zech et al. (PLOS Medicine 2018) found that the hospital alone predicted pneumonia with ROC-AUC 0.86. In this
data set the analogue is the stored geometry: copies resized to one fixed size (e.g. square 224x224) sampled
the classes unlike the rest. ``images`` is ``DatasetIndex.images`` (``path, relpath, split, label, target,
width, height``); nothing here reads pixels.

Geometry groups rule: an exact stored size (width x height) is its own group when at least
``GROUP_MIN_SHARE`` (5%) of all images, and at least ``GROUP_MIN_IMAGES`` (20), have it. A size that common is
the signature of a batch resized to one size (a square size ignores the aspect ratio) or of one scanner
setting; every other image falls in ``OTHER_GROUP``. The rule is applied to the index as given (all splits
together), so train and test images of one size share a group. Original scans of varied sizes (a real
Kaggle download) form a single group, or a few groups if some scanner sizes are that common.
"""
import os

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from cxrlib import bootstrap, evaluate
from cxrlib.contract import HEADLINE_METRICS, SPLITS

from .index import relpath_from_path

GROUP_MIN_SHARE = 0.05
GROUP_MIN_IMAGES = 20
OTHER_GROUP = "other sizes"
GEOMETRY_FEATURES = ("width", "height", "aspect_ratio")
# Stored size alone, then with the file size (JPEG bytes also reflect image content: see metadata_baseline).
GEOMETRY_SET = "stored size"
FEATURE_SETS = {GEOMETRY_SET: GEOMETRY_FEATURES, "stored size + file size": (*GEOMETRY_FEATURES, "file_bytes")}
BASELINE_THRESHOLD = 0.5


def require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    """Raise a ValueError naming the columns ``what`` needs but ``frame`` lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing} but got {list(frame.columns)}; pass "
                         "DatasetIndex.images from cxrlib.data.scan_dataset (or predictions.csv rows).")


def size_name(width: int, height: int) -> str:
    """``square 224×224`` for a square size, ``316×256`` otherwise."""
    return f"square {width}×{height}" if width == height else f"{width}×{height}"


def frequent_sizes(images: pd.DataFrame, min_share: float = GROUP_MIN_SHARE,
                   min_images: int = GROUP_MIN_IMAGES) -> pd.Series:
    """Images per exact stored size, for the sizes common enough to be their own group (see the module rule)."""
    require_columns(images, ("width", "height"), "frequent_sizes")
    counts = images.groupby(["width", "height"]).size()
    return counts[(counts >= min_images) & (counts >= min_share * len(images))].sort_index()


def geometry_groups(images: pd.DataFrame, min_share: float = GROUP_MIN_SHARE,
                    min_images: int = GROUP_MIN_IMAGES) -> pd.Series:
    """Each image's geometry group (categorical, aligned with ``images``): its frequent size, or ``OTHER_GROUP``."""
    sizes = frequent_sizes(images, min_share, min_images).index
    names = {size: size_name(*size) for size in sizes}
    groups = [names.get(size, OTHER_GROUP) for size in zip(images["width"], images["height"])]
    categories = [*names.values(), OTHER_GROUP]
    return pd.Series(pd.Categorical(groups, categories=categories), index=images.index, name="group")


def label_rate_by_group(images: pd.DataFrame, groups: pd.Series | None = None) -> pd.DataFrame:
    """Tidy table per Kaggle split and geometry group: images, NORMAL, PNEUMONIA and the NORMAL share."""
    require_columns(images, ("split", "label", "width", "height"), "label_rate_by_group")
    groups = geometry_groups(images) if groups is None else groups
    counts = pd.crosstab([images["split"], groups.rename("group")], images["label"])
    counts = counts.reindex(columns=["NORMAL", "PNEUMONIA"], fill_value=0).reset_index()
    counts["images"] = counts["NORMAL"] + counts["PNEUMONIA"]
    counts["NORMAL share"] = counts["NORMAL"] / counts["images"]
    counts["split"] = pd.Categorical(counts["split"], categories=SPLITS)
    table = counts.sort_values(["split", "group"]).reset_index(drop=True)
    return table[["split", "group", "images", "NORMAL", "PNEUMONIA", "NORMAL share"]].rename_axis(columns=None)


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


def match_predictions(predictions: pd.DataFrame, images: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Predictions with their index row's geometry ``group``, matched on ``split/label/file``."""
    require_columns(predictions, ("path", "target", "prob"), "within_group_metrics predictions")
    require_columns(images, ("relpath", "target"), "within_group_metrics images")
    index_rows = pd.DataFrame({"relpath": images["relpath"], "index_target": images["target"], "group": groups})
    matched = predictions.assign(relpath=predictions["path"].map(relpath_from_path)).merge(
        index_rows, on="relpath", how="left", validate="many_to_one")
    unmatched = matched.loc[matched["group"].isna(), "path"]
    if len(unmatched):
        raise ValueError(f"{len(unmatched)} prediction path(s) match no image of the index by split/label/file, "
                         f"e.g. {list(unmatched[:3])}; score the same copy of the data the predictions came from.")
    wrong = matched.loc[matched["target"] != matched["index_target"], "path"]
    if len(wrong):
        raise ValueError(f"{len(wrong)} prediction(s) have a target unlike their image's label, e.g. "
                         f"{list(wrong[:3])}; the predictions file does not belong to this data.")
    return matched


def within_group_metrics(predictions: pd.DataFrame, images: pd.DataFrame, threshold: float,
                         groups: pd.Series | None = None) -> pd.DataFrame:
    """Test metrics within each geometry group holding both classes, plus an ``all`` row.

    ``predictions``: test rows with ``path, target, prob`` (paths may come from another machine);
    ``images``: the index (``groups`` defaults to ``geometry_groups(images)``, computed on all of it).
    Columns: images, NORMAL, PNEUMONIA, then ``evaluate.compute_metrics`` at ``threshold``: roc_auc, accuracy,
    sensitivity, specificity. A model that scores well overall but not within groups may be using geometry.
    """
    groups = geometry_groups(images) if groups is None else groups
    matched = match_predictions(predictions, images, groups)
    parts = [(str(name), rows) for name, rows in matched.groupby("group", observed=True, sort=True)]
    rows = {}
    for name, part in [*parts, ("all", matched)]:
        if part["target"].nunique() < 2:
            continue
        scores = evaluate.compute_metrics(part["target"], part["prob"], threshold)
        rows[name] = {"images": len(part), "NORMAL": int((part["target"] == 0).sum()),
                      "PNEUMONIA": int((part["target"] == 1).sum()),
                      **{metric: scores[metric] for metric in HEADLINE_METRICS}}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")


def describe_label_rates(rates: pd.DataFrame) -> str:
    """Markdown: per split, the NORMAL share in each geometry group (from ``label_rate_by_group``)."""
    sentences = []
    for split, part in rates.groupby("split", observed=True, sort=True):
        shares = ", ".join(f"**{row['NORMAL share']:.0%}** among {row['group']} ({row['images']:,} images)"
                           for _, row in part.iterrows())
        sentences.append(f"In the {split} folder the NORMAL share is {shares}.")
    if rates["group"].nunique() == 1:
        sentences.append("Every image falls in one geometry group, so stored size cannot single out a subset here; "
                         "the baseline below still tests whether sizes differ between the classes.")
    return " ".join(sentences)


def describe_metadata_baseline(table: pd.DataFrame) -> str:
    """Markdown: the baseline's test ROC-AUC (95% CI) and accuracy per feature set, and what they mean."""
    lines = [f"- **{name}:** test ROC-AUC **{row['roc_auc']:.2f}** (95% CI {row['roc_auc_ci_low']:.2f}–"
             f"{row['roc_auc_ci_high']:.2f}), accuracy {row['accuracy']:.1%} at probability "
             f"{BASELINE_THRESHOLD} (always answering the majority class: {row['majority_accuracy']:.1%})."
             for name, row in table.iterrows()]
    first = table.iloc[0]
    return (f"Trained on {int(first['train_images']):,} training-folder images and scored on "
            f"{int(first['test_images']):,} test images, from file metadata alone (no pixels; CIs resample test "
            "patients):\n\n" + "\n".join(lines) + "\n\n" + shortcut_verdict(table) + " File size also reflects "
            "the image content (JPEG files grow with fine detail and noise), so it is not a pure shortcut: its line "
            "is an upper bound on what metadata can tell.")


def shortcut_verdict(table: pd.DataFrame) -> str:
    """One sentence on the stored-size row of ``metadata_baseline_table``: does size predict the label above chance?"""
    geometry = table.loc[GEOMETRY_SET]
    auc = (f"test ROC-AUC {geometry['roc_auc']:.2f}, 95% CI {geometry['roc_auc_ci_low']:.2f}–"
           f"{geometry['roc_auc_ci_high']:.2f}")
    if geometry["roc_auc_ci_low"] > 0.5:
        return (f"Stored size alone predicts the label above chance ({auc}), so a model may partly learn how an "
                "image was stored rather than what its lungs show: read test metrics within each geometry group too.")
    return f"Stored size alone does not predict the label clearly above chance ({auc})."
