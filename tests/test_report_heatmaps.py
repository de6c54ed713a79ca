"""The heatmap sections' words and tables: the method and resolution a record holds (an old record named as the old
method with its empty maps), the summary row, a stale record refused, the warned examples named."""
import numpy as np
import pandas as pd
import pytest

from cxrlib import explain
from cxrlib.explain import ModelHeatmaps
from cxrlib.report import heatmaps


def old_record_dir(tmp_path):
    """A run folder holding an old-format gradcam.csv (3×3, PNEUMONIA only; the NORMAL call's map empty)."""
    pd.DataFrame({"path": ["test/PNEUMONIA/a.jpeg", "test/NORMAL/b.jpeg"], "prob": [0.9, 0.1], "height": [3, 3],
                  "width": [3, 3], "heatmap": [" ".join(["0.0000"] * 8 + ["1.0000"]), " ".join(["0.0000"] * 9)]}
                 ).to_csv(tmp_path / "gradcam.csv", index=False)
    return tmp_path


def current_records(tmp_path, signed: np.ndarray, probs: list[float]) -> heatmaps.HeatmapRecords:
    """A current-method record of ``signed`` maps and a sanity record of known correlations."""
    record = pd.DataFrame({"path": [f"test/x/{i}.png" for i in range(len(probs))], "prob": probs,
                           "method": "HiResCAM at conv4_block6_out", "layer": "conv4_block6_out",
                           "height": signed.shape[1], "width": signed.shape[2], "scale": 1.0,
                           "evidence": [" ".join(f"{v:.4f}" for v in cam.ravel()) for cam in signed]})
    sanity = pd.DataFrame({"path": record["path"], "method": record["method"], "random_seed": 2018,
                           "spearman": np.linspace(-0.2, 0.8, len(probs)), "spearman_abs": 0.9})
    return heatmaps.HeatmapRecords(record, sanity, "`x/gradcam.csv`")


def test_an_old_record_is_named_as_the_old_method_with_its_empty_maps_and_no_sanity_check(tmp_path):
    records = heatmaps.run_heatmap_records(old_record_dir(tmp_path), tmp_path / "gone.keras", tmp_path)
    sentence = heatmaps.method_sentence("ResNet-50", records, 96)
    assert explain.OLD_METHOD in sentence and "3×3 cells of 32×32 px on the 96×96 input" in sentence
    assert "**1 of 2 maps are empty**" in sentence and "no sanity check" in sentence
    row = heatmaps.summary_row("ResNet-50", records, 0.5)
    assert row["empty maps"] == 1 and row["sanity ρ > 0.5, signed maps"] == "not recorded"
    assert row["median share outside the box"] == pytest.approx(1 - explain.inside_fractions(3, 3)[2, 2])


def test_the_summary_row_counts_empty_and_warned_maps_and_the_sanity_distribution(tmp_path):
    signed = np.zeros((4, 6, 6))
    signed[0, 0, 0] = 1.0  # PNEUMONIA evidence in a corner: warned
    signed[1, 3, 3] = 1.0  # PNEUMONIA evidence in the centre
    signed[2, 3, 2] = -1.0  # NORMAL evidence in the centre, called NORMAL: not empty
    signed[3, 3, 3] = 1.0  # called NORMAL but only PNEUMONIA evidence: empty
    records = current_records(tmp_path, signed, [0.9, 0.8, 0.2, 0.1])
    row = heatmaps.summary_row("ResNet-50", records, threshold=0.5)
    assert row["maps"] == 4 and row["empty maps"] == 1
    assert row["maps warned (> 50% outside)"] == pytest.approx(0.25)
    assert row["sanity ρ, signed maps: median [IQR]"] == "0.30 [0.05, 0.55]"
    assert row["sanity ρ > 0.5, signed maps"] == "25.0%" and row["sanity ρ > 0.5, absolute maps"] == "100.0%"
    assert row["cells used"] == "3 of 36"
    sentence = heatmaps.method_sentence("ResNet-50", records, 96)
    assert "signed (both classes), 6×6 cells of 16×16 px on the 96×96 input" in sentence
    assert "Only 3 of its 36 cells hold evidence in any test image (in 2 rows and 3 columns)" in sentence


def test_a_map_read_at_every_other_cell_is_said_to_have_the_coarser_usable_resolution():
    checkered = np.zeros((2, 6, 6))
    checkered[:, ::2, ::2] = np.arange(1, 10).reshape(3, 3)
    assert heatmaps.used_cells_words(checkered).endswith("the map's usable resolution is 3×3.")
    assert heatmaps.used_cells_words(np.ones((2, 6, 6))) == ""


def test_a_current_record_of_another_run_is_refused_naming_the_file(tmp_path):
    records = current_records(tmp_path, np.ones((2, 2, 2)), [0.9, 0.2])
    explain.write_gradcam_record(records.record, tmp_path)
    pd.DataFrame({"path": records.record["path"], "subset": "test", "prob": [0.9, 0.6]}).to_csv(
        tmp_path / "predictions.csv", index=False)
    with pytest.raises(explain.GradcamRecordError, match=r"gradcam\.csv does not reproduce .*predictions\.csv"):
        heatmaps.run_heatmap_records(tmp_path, tmp_path / "gone.keras", tmp_path)


def test_the_warned_examples_are_named_per_model():
    cases = pd.DataFrame({"path": ["/d/a.jpeg", "/d/b.jpeg"], "label": ["NORMAL", "PNEUMONIA"]})
    images = np.zeros((2, 4, 4, 3))
    maps = {"A": ModelHeatmaps(images, np.zeros((2, 4, 4)), np.zeros(2), outside=np.array([0.9, 0.1])),
            "B": ModelHeatmaps(images, np.zeros((2, 4, 4)), np.zeros(2), outside=np.array([np.nan, 0.2]))}
    assert heatmaps.warned_examples(maps, cases) == ("Examples marked ⚠ *evidence outside the lungs*: A: 1 of 2 "
                                                     "(a.jpeg); B: 0 of 2.")
