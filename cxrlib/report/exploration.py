"""The data exploration (notebook 01): its words (which copy of the data, the replicates' splits, stored sizes,
black borders and duplicates, each stated from the tables ``data.summary`` and ``data.geometry`` compute) and its
sections, one call per notebook cell as notebooks 02-04 have them."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cxrlib import data, plots, runtime
from cxrlib.contract import CLASS_NAMES, repo_relative
from cxrlib.data.geometry import GROUP_MIN_SHARE, OTHER_GROUP, frequent_sizes, geometry_groups, size_name
from cxrlib.data.summary import (BLACK_BORDER, MANIFEST_FILE, copy_manifest, patients_on_both_sides,
                                 validation_overlap, validation_split_summary)
from cxrlib.params import notebook_parameters, replicate_seeds
from cxrlib.report.format import parameters_text, readable
from cxrlib.report.shortcut import describe_label_rates, describe_metadata_baseline, shortcut_verdict


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


# ---------------------------------------------------------------- notebook 01's sections, one call per cell

@dataclass
class ExplorationSetup:
    """What notebook 01's sections share: its checked parameters and the indexed data set."""

    params: dict
    index: object  # cxrlib.data.DataIndex

    @property
    def images(self) -> pd.DataFrame:
        """Every readable image of the data set, all folders."""
        return self.index.images

    @property
    def train_images(self) -> pd.DataFrame:
        """The images of the Kaggle training folder."""
        return self.images[self.images["split"] == "train"]


def setup(namespace: dict) -> ExplorationSetup:
    """Check the notebook's parameters, index the data, print what this report read and with which libraries."""
    params = notebook_parameters(namespace, "explore")
    index = data.scan_dataset(data.locate_data(params["data_dir"]))
    print(f"parameters: {parameters_text(params)}")
    print("versions:", ", ".join(f"{name} {version}" for name, version in runtime.library_versions().items()))
    print(f"data: {repo_relative(index.root)} ({len(index.images):,} readable images)")
    print(f"fingerprint: {index.fingerprint}")
    display(Markdown(describe_data_copy(index.root, index.images)))
    return ExplorationSetup(params, index)


def folders_section(setup: ExplorationSetup) -> pd.DataFrame:
    """Images per Kaggle folder and class, as a table and bars; returns the table."""
    per_split = data.images_per_split(setup.images)
    display(readable(per_split, percent_columns=["PNEUMONIA share"]),
            plots.plot_class_counts(data.subset_counts(setup.images)))
    return per_split


def class_balance_sentence(per_split: pd.DataFrame) -> str:
    """The PNEUMONIA share of the training and test folders, and what it means for training and judging."""
    share = per_split["PNEUMONIA share"]
    return (f"PNEUMONIA makes up **{share['train']:.1%}** of the training folder and **{share['test']:.1%}** of the "
            f"test folder, so always answering PNEUMONIA would already score **{share['test']:.1%}** accuracy on "
            "test. **For training:** the loss is weighted by inverse class frequency (class weights), and results "
            "are judged by sensitivity, specificity and ROC-AUC, not by accuracy alone.")


def class_balance_section(per_split: pd.DataFrame) -> None:
    """``class_balance_sentence`` shown."""
    display(Markdown(class_balance_sentence(per_split)))


def patients_section(setup: ExplorationSetup) -> float:
    """Patients per folder, images per patient, and the share with several images (returned)."""
    display(readable(data.patients_per_split(setup.images), digits=2),
            plots.plot_images_per_patient(setup.images, split="train"))
    several = data.share_of_patients_with_several_images(setup.images)
    display(Markdown(f"**{several:.1%}** of patients have more than one image. **For training:** the validation "
                     "set is drawn by whole patients (next section), never by single images."))
    return several


def replicate_splits_section(setup: ExplorationSetup) -> dict[int, pd.DataFrame]:
    """Each replicate's validation patients, as the training notebooks draw them; returns the splits by seed."""
    replicates = replicate_seeds(setup.params)
    splits = data.replicate_splits(setup.images, setup.params, [split for _, split in replicates])
    display(readable(data.replicate_split_table(splits)),
            Markdown(describe_replicate_splits(splits, replicates, setup.params["subsample_per_class"])))
    return splits


def image_sizes_section(setup: ExplorationSetup) -> None:
    """Stored sizes per class: the table, the figure and what they show."""
    display(readable(data.image_size_summary(setup.images), percent_columns=["share at a frequent size"]),
            plots.plot_image_sizes(setup.images), Markdown(describe_size_figure(setup.images)),
            Markdown(describe_image_sizes(setup.images)))


def label_rates_section(setup: ExplorationSetup) -> None:
    """The NORMAL share per stored-size group: a label rate that depends on the group is a shortcut."""
    rates = data.label_rate_by_group(setup.images)
    display(readable(rates, percent_columns=["NORMAL share"]), plots.plot_label_rate_by_group(rates),
            Markdown(describe_label_rates(rates)))


def metadata_baseline_section(setup: ExplorationSetup) -> pd.DataFrame:
    """What a classifier on file metadata alone reaches on test; returns its table."""
    baseline = data.metadata_baseline_table(setup.images, seed=setup.params["sampling_seed"])
    display(readable(baseline), Markdown(describe_metadata_baseline(baseline)))
    return baseline


def samples_section(setup: ExplorationSetup):
    """A seeded sample of training images per class at their stored size (the figure)."""
    return plots.plot_sample_images(setup.train_images, n_per_class=setup.params["n_examples"],
                                    seed=setup.params["sampling_seed"])


def intensity_section(setup: ExplorationSetup):
    """Pixel-intensity histograms of 100 seeded training images per class at 128 px (the figure)."""
    return plots.plot_intensity_histograms(setup.train_images, n_per_class=100, image_size=128,
                                           seed=setup.params["sampling_seed"])


def black_pixels_section(setup: ExplorationSetup) -> pd.DataFrame:
    """Where images are pure black, per class and group: words, table and maps; returns the table."""
    black = data.black_pixels_by_group(data.black_pixel_shares(setup.images))
    display(Markdown(describe_black_pixels(black)), readable(black, percent_columns=data.BLACK_SHARE_COLUMNS),
            plots.plot_black_pixel_maps(data.black_pixel_maps(setup.images)))
    return black


def duplicates_section(setup: ExplorationSetup, splits: dict[int, pd.DataFrame]) -> dict:
    """Every group of byte-identical files, what they cross, and the unreadable files; returns the counts."""
    display(readable(data.duplicate_table(setup.index.duplicates, setup.images)))
    counts = data.duplicate_counts(setup.index.duplicates, setup.images, splits)
    display(Markdown(describe_duplicates(counts, len(splits), len(setup.index.excluded))))
    if len(setup.index.excluded):
        display(readable(setup.index.excluded))
    return counts


def implications(per_split: pd.DataFrame, several: float, splits: dict[int, pd.DataFrame], duplicates: dict,
                 baseline: pd.DataFrame, black: pd.DataFrame) -> str:
    """Markdown: what the sections above mean for training, each point from its section's numbers."""
    share = per_split["PNEUMONIA share"]
    leaking = duplicates["across_subsets"] + duplicates["across_splits"]
    return f"""
- **Imbalance.** PNEUMONIA is {share['train']:.1%} of the training images, so training weights the loss by class
  and every result is reported with sensitivity and specificity; on test, accuracy must beat
  {share['test']:.1%} (always answering PNEUMONIA) to mean anything.
- **Patients, not images.** {several:.1%} of patients have several images; each replicate's validation patients
  are whole children ({patients_on_both_sides(splits)} of them also in training). Validation picks the epoch
  each model keeps; the study's decision threshold is the fixed 0.5 set in advance, not a value chosen on
  validation.
- **Duplicates.** {duplicates['across_subsets']} duplicate groups cross the training/validation boundary of any
  replicate and {duplicates['across_splits']} cross the Kaggle folders, so they {'can' if leaking else 'do not'}
  leak between the sets used for choosing and for judging a model.
- **Stored size.** {shortcut_verdict(baseline)}
- **Black borders.** {black_pixel_verdict(black)}
- **What cannot be checked.** Patient numbers restart in each folder, so the same child could appear in both the
  training and the test folder without us being able to tell.
"""


def implications_section(per_split: pd.DataFrame, several: float, splits: dict[int, pd.DataFrame], duplicates: dict,
                         baseline: pd.DataFrame, black: pd.DataFrame) -> None:
    """``implications`` shown."""
    display(Markdown(implications(per_split, several, splits, duplicates, baseline, black)))
