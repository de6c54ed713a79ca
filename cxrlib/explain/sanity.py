"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps"): a map that
explains the trained model must differ from the map of the same architecture with random weights.

The randomised model is the trained model's architecture with every weight drawn afresh by its layers' own
initialisers (``keras.models.clone_model``; backbone and head alike: the paper's full randomisation), from the fixed
seed ``RANDOM_SEED`` so that every run of the check randomises alike. Per image, the signed maps of the two models
(``GradCam.evidence``: PNEUMONIA evidence positive, NORMAL negative; the trained model's as its record holds them, to
4 decimals of its largest value) are compared cell by cell with Spearman's rank correlation, as the paper does, on the
signed values and on their absolute values, over the cells that hold evidence in some recorded map: a cell the next
layer never reads (ResNet-50's stage-4 output is read at every other row and column) is 0 in both models' maps, and
such shared ties would make any two maps look alike. The signed correlation is the same
for either class (negating both maps keeps the ranks' order), so it needs no threshold. Near 0 passes; near 1 means the
map shows the image (edges, bright regions) more than what the model learned.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from cxrlib.contract import GRADCAM_SANITY_FILE
from cxrlib.data.pipeline import load_image
from cxrlib.files import write_atomic

from .gradcam import explainer, method_words
from .record import record_cells

RANDOM_SEED = 2018  # the randomised weights' seed (keras.utils.set_random_seed), the paper's year
SANITY_COLUMNS = ("path", "method", "random_seed", "spearman", "spearman_abs")
PASS_BELOW = 0.5  # a rank correlation above it: the trained map is too close to the random model's


class SanityRecordError(ValueError):
    """A gradcam_sanity.csv does not fit its run; the message names the file and the fix."""


def randomised_model(model: keras.Model, seed: int = RANDOM_SEED) -> keras.Model:
    """The model's architecture with every weight re-drawn by its initialisers from ``seed`` (resets Keras' global
    random seed)."""
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def rank_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[N]: Spearman's rank correlation of each pair of maps ([N, h, w] or [N, cells] each), ties ranked by their
    mean; NaN for a constant map."""
    ranks = [np.stack([rankdata(np.ravel(one)) for one in maps]) for maps in (first, second)]
    centred = [rank - rank.mean(axis=1, keepdims=True) for rank in ranks]
    norms = np.sqrt((centred[0] ** 2).sum(axis=1) * (centred[1] ** 2).sum(axis=1))
    products = (centred[0] * centred[1]).sum(axis=1)
    return np.divide(products, norms, out=np.full(len(products), np.nan), where=norms > 0)


def sanity_record(model: keras.Model, record: pd.DataFrame, data_root: str | Path, seed: int = RANDOM_SEED,
                  batch_size: int = 32) -> pd.DataFrame:
    """One row per image of a current-method heatmap record (``explain.gradcam_record`` of ``model``): the rank
    correlations between its maps, as recorded, and the maps of the model's randomised copy (same method, same
    layer)."""
    randomised = explainer(randomised_model(model, seed))
    recorded, size, rows = record_cells(record), model.input_shape[1], []
    used = (recorded != 0).any(axis=0)  # cells the next layer never reads hold 0 in every map: left out, not ties
    for start in range(0, len(record), batch_size):
        batch_paths = list(record["path"].iloc[start:start + batch_size])
        images = np.stack([load_image(Path(data_root) / path, size) for path in batch_paths]).astype("float32")
        mine, chance = recorded[start:start + batch_size][:, used], randomised.evidence(images)[0][:, used]
        rows += [{"path": path, "method": method_words(randomised), "random_seed": seed, "spearman": signed,
                  "spearman_abs": absolute}
                 for path, signed, absolute in zip(batch_paths, rank_correlations(mine, chance),
                                                   rank_correlations(np.abs(mine), np.abs(chance)))]
    return pd.DataFrame(rows, columns=SANITY_COLUMNS)


def write_sanity_record(record: pd.DataFrame, records_dir: str | Path) -> Path:
    """Write ``gradcam_sanity.csv`` into a run's records folder (atomically)."""
    return write_atomic(Path(records_dir) / GRADCAM_SANITY_FILE,
                        lambda partial: record.to_csv(partial, index=False, float_format="%.4f"))


def read_sanity_record(records_dir: str | Path) -> pd.DataFrame | None:
    """A run's ``gradcam_sanity.csv``, checked; None when the run has none."""
    path = Path(records_dir) / GRADCAM_SANITY_FILE
    if not path.is_file():
        return None
    record = pd.read_csv(path, dtype={"path": str, "method": str})
    missing = [column for column in SANITY_COLUMNS if column not in record.columns]
    if missing or record.empty:
        raise SanityRecordError(f"{path} lacks columns {missing} or rows; write it again with python -m "
                                "cxrlib.explain RECORDS_DIR MODEL_FILE")
    return record


def sanity_summary(record: pd.DataFrame) -> dict[str, float]:
    """The distribution of a sanity record's correlations: images, median and quartiles, share above PASS_BELOW,
    for the signed and the absolute maps."""
    summary: dict[str, float] = {"images": len(record)}
    for column in ("spearman", "spearman_abs"):
        values = record[column].dropna().to_numpy()
        if not len(values):  # no image has two cells with evidence (e.g. tiny inputs): no correlation to summarise
            summary |= dict.fromkeys((f"{column}_median", f"{column}_q1", f"{column}_q3", f"{column}_above"), np.nan)
            continue
        summary |= {f"{column}_median": float(np.median(values)), f"{column}_q1": float(np.quantile(values, 0.25)),
                    f"{column}_q3": float(np.quantile(values, 0.75)),
                    f"{column}_above": float(np.mean(values > PASS_BELOW))}
    return summary
