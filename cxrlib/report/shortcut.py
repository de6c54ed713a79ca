"""The shortcut audit in words (notebook 01): the label rate per geometry group, the metadata-only baseline and
the verdict on stored size, each stated from the tables ``data.geometry`` and ``data.baseline`` compute."""
import pandas as pd

from cxrlib.data.baseline import BASELINE_THRESHOLD, GEOMETRY_SET


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
