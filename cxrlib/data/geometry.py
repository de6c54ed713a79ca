"""Stored geometry: which images share an exact stored size (a geometry group), and the label rate in each group.

Zech et al. (PLOS Medicine 2018) found that the hospital alone predicted pneumonia with ROC-AUC 0.86. In this
data set the analogue is the stored geometry: copies resized to one fixed size (e.g. square 224x224) sampled
the classes unlike the rest. ``images`` is ``DatasetIndex.images`` (``split, label, width, height``); nothing
here reads pixels.

Geometry groups rule: an exact stored size (width x height) is its own group when at least
``GROUP_MIN_SHARE`` (5%) of all images, and at least ``GROUP_MIN_IMAGES`` (20), have it. A size that common is
the signature of a batch resized to one size (a square size ignores the aspect ratio) or of one scanner
setting; every other image falls in ``OTHER_GROUP``. The rule is applied to the index as given (all splits
together), so train and test images of one size share a group. Original scans of varied sizes (a real
Kaggle download) form a single group, or a few groups if some scanner sizes are that common.
"""
import pandas as pd

from cxrlib.contract import SPLITS

from .index import require_columns

GROUP_MIN_SHARE = 0.05
GROUP_MIN_IMAGES = 20
OTHER_GROUP = "other sizes"


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
