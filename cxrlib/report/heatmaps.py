"""The heatmap sections' words, tables and figures, shared by notebook 04 and the training notebooks: which method a
map holds and at what resolution, how it is normalised, the model-randomisation sanity check and the share of each
map's mass outside the declared chest region (``cxrlib.explain``), the examples named and warned."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import display

from cxrlib import explain, plots
from cxrlib.contract import GRADCAM_FILE, GRADCAM_SANITY_FILE, PREDICTIONS_FILE, repo_relative
from cxrlib.report.format import number, percent

NORMALISATION = (
    "Each map is drawn for the class the model chose at its threshold (the title says which): the part of the signed "
    "map that argues for that class, cut at zero and divided by the map's own strongest cell, so the colour bar runs "
    "from 0 (no evidence) to 1 (that map's strongest cell). Colours compare places within one map, not one map with "
    "another. The maps are drawn as blocks, one per cell of the feature map, not smoothed: what looks coarse is coarse.")

OLD_NORMALISATION = (
    "A record of the old method is drawn as recorded: its PNEUMONIA evidence, cut at zero and divided by the map's own "
    "maximum (the same colour bar), one block per cell; an image that model calls NORMAL mostly has an empty map.")


@dataclass
class HeatmapRecords:
    """One run's heatmaps of every test image (``explain.read_gradcam_record``'s columns), its sanity check (None when
    not recorded) and where they came from, in words."""

    record: pd.DataFrame
    sanity: pd.DataFrame | None
    source: str


def resolution(height: int, width: int, image_size: int) -> str:
    """A map's resolution in words: ``6×6 cells of 16×16 px on the 96×96 input``."""
    return (f"{height}×{width} cells of {image_size // height}×{image_size // width} px on the "
            f"{image_size}×{image_size} input")


def run_predictions(run_dir: Path) -> pd.DataFrame:
    """A run's predictions.csv as written (paths relative to the data root, duplicates kept)."""
    return pd.read_csv(Path(run_dir) / PREDICTIONS_FILE)


def run_heatmap_records(run_dir: Path, model_file: Path, data_root: Path) -> HeatmapRecords | None:
    """A run's heatmaps: its current-method record, checked against its predictions; else computed now from its model
    file (as ``python -m cxrlib.explain`` writes them); else an old-method record; else None."""
    record = explain.read_gradcam_record(run_dir)
    if record is not None and not explain.is_old(record):
        explain.check_against_predictions(record, run_predictions(run_dir), repo_relative(run_dir / GRADCAM_FILE),
                                          run_dir)
        return HeatmapRecords(record, explain.read_sanity_record(run_dir),
                              f"`{repo_relative(run_dir / GRADCAM_FILE)}`")
    model_file = Path(model_file).resolve()  # a runs_dir relative to the notebook's folder
    if model_file.is_file():
        from cxrlib import models  # only when a model file is read

        model = models.load_model(model_file)
        computed = explain.gradcam_record(model, run_predictions(run_dir), data_root)
        return HeatmapRecords(computed, explain.sanity_record(model, computed, data_root),
                              f"computed now from `{repo_relative(model_file)}`")
    return None if record is None else HeatmapRecords(record, None, f"`{repo_relative(run_dir / GRADCAM_FILE)}`")


def regenerate_command(records_dir: Path, model_file: Path) -> str:
    """The command that writes a run's current-method records from its model file."""
    return f"python -m cxrlib.explain {repo_relative(records_dir)} {repo_relative(model_file)}"


def method_sentence(title: str, records: HeatmapRecords, image_size: int) -> str:
    """Which method a model's maps hold, from where, at what resolution, and what an old-method record lacks."""
    record = records.record
    size = resolution(int(record["height"].iloc[0]), int(record["width"].iloc[0]), image_size)
    if explain.is_old(record):
        shown = explain.shown_cells(record, 0.5)
        empty = int((shown.max(axis=(1, 2)) == 0).sum())
        return (f"**{title}**: {explain.OLD_METHOD}, {size}, from {records.source}: the method before issue 35. Its "
                f"maps were computed for PNEUMONIA only and were smoothed up for display; **{empty} of {len(record)} "
                "maps are empty** (mostly images the model calls NORMAL, which have no PNEUMONIA evidence), and this "
                "record holds no sanity check.")
    return (f"**{title}**: {record['method'].iloc[0]}, signed (both classes), {size}, from {records.source}."
            + used_cells_words(explain.record_cells(record)))


def used_cells_words(cells: np.ndarray) -> str:
    """A sentence when some cells hold no evidence in any map (the next layer never reads them), with the grid the
    model actually uses; empty when every cell is used."""
    used = np.abs(np.asarray(cells)) > 0
    rows, cols = int(used.any(axis=(0, 2)).sum()), int(used.any(axis=(0, 1)).sum())
    if used.any(axis=0).all():
        return ""
    return (f" Only {int(used.any(axis=0).sum())} of its {used.shape[1] * used.shape[2]} cells hold evidence in any "
            f"test image (in {rows} rows and {cols} columns): the layer after it reads the map at every other row and "
            "column (a stride-2 1×1 convolution, as ResNet-50's next stage begins), so the cells between carry "
            f"nothing to the decision and the map's usable resolution is {rows}×{cols}.")


def summary_row(title: str, records: HeatmapRecords, threshold: float) -> dict:
    """One model's row of the summary table: its maps (empty ones, mass outside the chest box) and sanity check."""
    shown = explain.shown_cells(records.record, threshold)
    outside = explain.outside_shares(shown)
    used = (np.abs(explain.record_cells(records.record)) > 0).any(axis=0)
    row = {"model": title, "maps": len(shown), "cells used": f"{int(used.sum())} of {used.size}",
           "empty maps": int((shown.max(axis=(1, 2)) == 0).sum()),
           "median share outside the box": float(np.nanmedian(outside)) if np.isfinite(outside).any() else np.nan,
           f"maps warned (> {explain.OUTSIDE_WARNING:.0%} outside)": float(np.mean(explain.warned(outside)))}
    sanity = explain.sanity_summary(records.sanity) if records.sanity is not None else {}
    for column, words in (("spearman", "signed maps"), ("spearman_abs", "absolute maps")):
        row[f"sanity ρ, {words}: median [IQR]"] = (
            f"{number(sanity[column + '_median'], 2)} [{number(sanity[column + '_q1'], 2)}, "
            f"{number(sanity[column + '_q3'], 2)}]" if sanity else "not recorded")
        row[f"sanity ρ > {explain.PASS_BELOW}, {words}"] = percent(sanity[column + "_above"]) if sanity else "not recorded"
    return row


def sanity_words() -> str:
    """How the sanity check and the region check were made, and how to read them."""
    box = explain.CHEST_BOX
    return (
        "**Sanity check** (model randomisation, Adebayo et al. 2018): the same architecture with every weight drawn "
        f"afresh by its initialisers (seed {explain.RANDOM_SEED}), explained at the same layer by the same method; "
        "per test image, Spearman's rank correlation ρ between the trained and the random model's maps over the "
        "cells that hold evidence in some map, on the signed maps and on their absolute values (`"
        f"{GRADCAM_SANITY_FILE}` beside each run's records). A map that explains what the model learned must differ "
        f"from the random model's: ρ near 0 passes, ρ above {explain.PASS_BELOW} means the map shows the image more "
        "than the model. **Outside the chest box**: the central chest region was declared once in code "
        f"(`cxrlib/explain/region.py`, rows {box.top:.0%}–{box.bottom:.0%} and columns {box.left:.1%}–{box.right:.1%} "
        "of the square input, drawn dashed on every panel) from validation images, before any map was measured. It "
        "holds the lungs, but also the heart and the spine; outside it lie the neck, shoulders, arms, abdomen, labels "
        f"and the black border. An evenly spread map puts {explain.UNIFORM_OUTSIDE:.0%} of its mass outside; a map "
        f"with more than {explain.OUTSIDE_WARNING:.0%} outside is marked **⚠ {explain.WARNING}** on its panel.")


def show_examples(maps: dict, cases: pd.DataFrame, thresholds: dict[str, float]) -> None:
    """The examples' figure: every panel named by its file, the chest box drawn, warned maps marked, one colour bar."""
    display(plots.plot_gradcam(maps, list(cases["label"]), thresholds, names=list(cases["path"]),
                               box=explain.CHEST_BOX, warn_above=explain.OUTSIDE_WARNING, warning=explain.WARNING))


def warned_examples(maps: dict, cases: pd.DataFrame) -> str:
    """Which shown examples carry the warning, per model, in a sentence."""
    parts = []
    for title, model_maps in maps.items():
        names = [Path(path).name for path, flag in zip(cases["path"], explain.warned(model_maps.outside)) if flag]
        parts.append(f"{title}: {len(names)} of {len(cases)}" + (f" ({', '.join(names)})" if names else ""))
    return f"Examples marked ⚠ *{explain.WARNING}*: " + "; ".join(parts) + "."
