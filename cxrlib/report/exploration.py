"""The data exploration (notebook 01) in words: which copy of the data, the replicates' splits, stored sizes,
black borders and duplicates, each stated from the tables ``data.summary`` and ``data.geometry`` compute."""
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.contract import CLASS_NAMES, repo_relative
from cxrlib.data.geometry import GROUP_MIN_SHARE, OTHER_GROUP, frequent_sizes, geometry_groups, size_name
from cxrlib.data.summary import (BLACK_BORDER, MANIFEST_FILE, copy_manifest, patients_on_both_sides,
                                 validation_overlap, validation_split_summary)


def describe_data_copy(root: str | Path, images: pd.DataFrame) -> str:
    """Markdown: which copy of the data set this run reads; a copy with ``MANIFEST.csv`` is the rebuilt one
    (../shared/data/README.md), whose manifest names each file's source copy and its size there."""
    root = Path(root)
    rows = copy_manifest(root)
    if rows is None:
        return (f"This run reads `{repo_relative(root)}`: {len(images):,} images in the Kaggle folder layout, without "
                f"a {MANIFEST_FILE} saying where they came from (as in a Kaggle download). Everything below describes "
                "this copy.")
    sources = rows["source"].str.split("@").str[0].nunique()  # "owner/repository@commit" of the public copy
    square = (rows["orig_width"] == rows["orig_height"]).mean()
    readme = root.parent / "README.md"
    how = f"; how it was built: `{repo_relative(readme)}`" if readme.is_file() else ""
    shorter = int(np.minimum(images["width"], images["height"]).max())
    return (f"This run reads `{repo_relative(root)}`, a **rebuilt copy**, not the original download: its "
            f"{len(images):,} images have the Kaggle folders and file names, but were gathered from {sources} public "
            f"copies of the data set ({MANIFEST_FILE} names the copy of every file{how}). For this report it means: "
            f"**{square:.0%}** of the images had already been resized to a square, ignoring their aspect ratio, by the "
            f"copy they came from, and every image is stored with its shorter side at most {shorter} px, so the sizes "
            "below describe those copies, not the scanners; and which copy an image came from is tied to its label "
            "(section *Is there a shortcut?*).")


def describe_replicate_splits(splits: dict[int, pd.DataFrame], replicates: list[tuple[int, int]],
                              subsample_per_class: int | None = None) -> str:
    """Markdown: which replicates draw which split (``replicates``: (training seed, split seed) pairs), the size
    of validation across them, that no patient is on both sides (``validation_split_summary``), and any
    subsampling."""
    seeds = [seed for seed, _ in replicates]
    split_seeds = list(dict.fromkeys(split for _, split in replicates))
    if len(seeds) == 1:
        who = f"This profile trains one replicate ({_seed_list(seeds)}); its validation patients are drawn with " \
              f"split seed {split_seeds[0]}."
    elif len(split_seeds) == 1:
        who = (f"This profile trains {len(seeds)} replicates ({_seed_list(seeds)}) that all share one split, drawn "
               f"with split seed {split_seeds[0]}: they differ in training only.")
    else:
        who = (f"This profile trains {len(seeds)} replicates ({_seed_list(seeds)}); each draws its own validation "
               "patients with its own seed, so the table has one row per replicate.")
    summaries = [validation_split_summary(frame) for frame in splits.values()]
    shares = [(frame.loc[frame["subset"] == "val", "label"] == CLASS_NAMES[1]).mean() for frame in splits.values()]
    shared = patients_on_both_sides(splits)
    each = "The validation subset" if len(splits) == 1 else "Each validation subset"
    text = (f"{who} {each} holds **{_span([s['val_patients'] for s in summaries])} patients** "
            f"({_span([s['val_images'] for s in summaries])} images, {_span(shares, '{:.1%}')} PNEUMONIA); "
            f"patients in both training and validation: **{shared}**"
            + ("." if len(splits) == 1 else " in every split."))
    if len(splits) > 1:
        text += (f" The splits hold different children: any two validation subsets share "
                 f"{_span(validation_overlap(splits))} of their patients.")
    if subsample_per_class is not None:
        used = _span([int(frame["subset"].isin(["train", "val", "test"]).sum()) for frame in splits.values()])
        text += (f" This profile trains on a subsample of at most {subsample_per_class} images per class and subset "
                 f"({used} images in training, validation and test), as the table shows; its numbers only show that "
                 "the pipeline runs.")
    return text


def describe_size_figure(images: pd.DataFrame) -> str:
    """Markdown caption of ``plots.plot_image_sizes``: distinct sizes, and how many images the most common holds."""
    counts = images.groupby(["width", "height"]).size().sort_values(ascending=False, kind="stable")
    (width, height), top = counts.index[0], int(counts.iloc[0])
    per_class = images[(images["width"] == width) & (images["height"] == height)]["label"].value_counts()
    classes = ", ".join(f"{per_class.get(label, 0):,} {label}" for label in CLASS_NAMES)
    return (f"Each dot is one of the {len(counts):,} distinct stored sizes, coloured by how many images of the class "
            f"have exactly that size (log scale). The most common size, {size_name(width, height)}, holds "
            f"**{top:,}** of the {len(images):,} images ({classes}): in a plot of one dot per image they would all "
            "hide under one dot.")


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


def describe_black_pixels(table: pd.DataFrame, border: float = BLACK_BORDER) -> str:
    """Markdown: what the spike at 0 in the pixel histograms is, from ``black_pixels_by_group``."""
    more, less, medians = _black_medians(table)
    band = table.loc[table["group"] == "all images", "black pixels in the outer band"]
    text = (f"Pixels that are exactly 0 (pure black) fall in the histograms' first bin, and there are many: the "
            f"median {more} image has "
            f"**{medians[more]:.1%}** of its pixels black, the median {less} image **{medians[less]:.1%}**; of all "
            f"black pixels, {_span(list(band), '{:.0%}')} lie in the outer band ({border:.0%} of the width or height "
            "from an edge; the map below shows where): background around the body, clipped to black, not lung.")
    by_group = table[table["group"] != "all images"].pivot(index="group", columns="label",
                                                           values="median black pixels").dropna()
    if len(by_group) > 1:
        ahead = by_group[by_group[more] > by_group[less]].index.tolist()
        listed = ", ".join(f"{group} {row[more]:.1%} against {row[less]:.1%}" for group, row in by_group.iterrows())
        if len(ahead) == len(by_group):
            text += (f" {more} images have more black in every stored-size group (medians: {listed}), so the "
                     "black frame is not only a trace of which copy an image came from: how much black surrounds "
                     "the body is itself tied to the label, a second shortcut a network could learn.")
        else:
            text += (f" {more} images have more black in {len(ahead)} of {len(by_group)} stored-size groups "
                     f"(medians: {listed}), so part of the difference follows the copy an image came from.")
    return text + " Every model sees these borders: images are resized whole, nothing is cropped."


def black_pixel_verdict(table: pd.DataFrame) -> str:
    """One sentence for the report's conclusions: which class carries more black border, and the risk."""
    more, less, medians = _black_medians(table)
    return (f"{more} images carry more pure-black border than {less} images (median {medians[more]:.1%} against "
            f"{medians[less]:.1%} of their pixels): a network could learn the border instead of the lungs, and "
            "neither the stored-size groups nor the metadata baseline control for it.")


def describe_duplicates(counts: dict, n_splits: int, excluded: int) -> str:
    """Markdown of ``data.duplicate_counts`` over ``n_splits`` replicate splits, and the ``excluded`` file count."""
    where = "the replicate split" if n_splits == 1 else f"any of the {n_splits} replicate splits"
    return (f"**{counts['groups']}** groups of identical images ({counts['files']} files), all listed above. Groups "
            f"spanning more than one Kaggle folder: **{counts['across_splits']}**; groups split between training and "
            f"validation in {where}: **{counts['across_subsets']}**; groups filed under different patient numbers: "
            f"**{counts['across_patients']}**. Unreadable or non-image files excluded: **{excluded}**.")


def _span(values, form: str = "{:,}") -> str:
    """``285`` when all values are equal, else ``280–290``."""
    low, high = min(values), max(values)
    return form.format(low) if low == high else f"{form.format(low)}–{form.format(high)}"


def _seed_list(seeds) -> str:
    """``seed 1`` or ``seeds 1, 2 and 3``."""
    seeds = [str(seed) for seed in seeds]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(seeds[:-1])} and {seeds[-1]}"


def _size_range(images: pd.DataFrame) -> str:
    """``width 140–648 px, height 120–306 px``."""
    return (f"width {images['width'].min()}–{images['width'].max()} px, "
            f"height {images['height'].min()}–{images['height'].max()} px")


def _black_medians(table: pd.DataFrame) -> tuple[str, str, pd.Series]:
    """(class with more black, the other class, median black share per class over all images)."""
    medians = table[table["group"] == "all images"].set_index("label")["median black pixels"]
    more, less = CLASS_NAMES if medians[CLASS_NAMES[0]] >= medians[CLASS_NAMES[1]] else CLASS_NAMES[::-1]
    return more, less, medians
