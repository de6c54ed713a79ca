"""Summary tables of the data exploration report and the prose that states them (pandas and Pillow; TensorFlow
only on first use of ``stored_gray``, which converts pixels as the input pipeline does).

``images`` is ``DatasetIndex.images`` (one row per image, Kaggle ``split``); ``frame`` is the output of
``assign_subsets`` (the same rows with a ``subset`` column); ``splits`` maps each split seed of a profile's
replicates to its frame (``replicate_splits``).
"""
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from cxrlib.contract import CLASS_NAMES, SPLITS, repo_relative

from .geometry import GROUP_MIN_SHARE, OTHER_GROUP, frequent_sizes, geometry_groups, size_name
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


def describe_duplicates(duplicates: pd.DataFrame, images: pd.DataFrame, splits: dict[int, pd.DataFrame],
                        excluded: int) -> dict:
    """Counts for the report: ``duplicate_summary`` of the whole index, its ``across_subsets`` replaced by the most
    groups with files in both training and validation of any replicate split, and a Markdown ``text`` of them."""
    crossing = 0
    for frame in splits.values():
        subsets = duplicate_files(duplicates, frame).groupby("sha256")["subset"].agg(set)
        crossing = max(crossing, sum({"train", "val"} <= found for found in subsets))
    counts = duplicate_summary(duplicate_groups(duplicate_files(duplicates, images.assign(subset=images["split"]))))
    where = "the replicate split" if len(splits) == 1 else f"any of the {len(splits)} replicate splits"
    text = (f"**{counts['groups']}** groups of identical images ({counts['files']} files), all listed above. Groups "
            f"spanning more than one Kaggle folder: **{counts['across_splits']}**; groups split between training and "
            f"validation in {where}: **{crossing}**; groups filed under different patient numbers: "
            f"**{counts['across_patients']}**. Unreadable or non-image files excluded: **{excluded}**.")
    return {**counts, "across_subsets": crossing, "text": text}


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


def _span(values, form: str = "{:,}") -> str:
    """``285`` when all values are equal, else ``280–290``."""
    low, high = min(values), max(values)
    return form.format(low) if low == high else f"{form.format(low)}–{form.format(high)}"


def _seed_list(seeds) -> str:
    """``seed 1`` or ``seeds 1, 2 and 3``."""
    seeds = [str(seed) for seed in seeds]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(seeds[:-1])} and {seeds[-1]}"


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


def describe_data_copy(root: str | Path, images: pd.DataFrame) -> str:
    """Markdown: which copy of the data set this run reads; a copy with ``MANIFEST.csv`` is the rebuilt one
    (../shared/data/README.md), whose manifest names each file's source copy and its size there."""
    root = Path(root)
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        return (f"This run reads `{repo_relative(root)}`: {len(images):,} images in the Kaggle folder layout, without "
                f"a {MANIFEST_FILE} saying where they came from (as in a Kaggle download). Everything below describes "
                "this copy.")
    rows = pd.read_csv(manifest, usecols=["source", "orig_width", "orig_height"])
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


def _black_medians(table: pd.DataFrame) -> tuple[str, str, pd.Series]:
    """(class with more black, the other class, median black share per class over all images)."""
    medians = table[table["group"] == "all images"].set_index("label")["median black pixels"]
    more, less = CLASS_NAMES if medians[CLASS_NAMES[0]] >= medians[CLASS_NAMES[1]] else CLASS_NAMES[::-1]
    return more, less, medians


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
