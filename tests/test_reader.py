"""Notebook 04's reader sections (subgroups, calibration, failures, learning curves) and their figures: on small
generated runs, and on the committed confirmatory records with the real data set."""
import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from PIL import Image

from cxrlib import compare, plots
from cxrlib.contract import CALIBRATION_FILE, REPO_ROOT, SUBGROUPS_FILE
from cxrlib.report import comparison, reader
from reader_fakes import TEST_FILES, fake_run, index_images, study_runs

CALIBRATION = {"method": "platt", "slope": 2.0, "intercept": 1.0, "prevalence": 0.75, "images": 10, "fitted_on": "val"}


def shown_items(monkeypatch, module=reader) -> list:
    """Everything ``module`` displays, in order."""
    shown = []
    monkeypatch.setattr(module, "display", shown.append)
    return shown


def texts(shown: list) -> str:
    """The Markdown shown, joined."""
    return "\n".join(item.data for item in shown if hasattr(item, "data") and isinstance(item.data, str))


def tables(shown: list) -> list[pd.DataFrame]:
    """The tables shown (``readable`` Stylers), as their frames."""
    return [item.data for item in shown if isinstance(item, pd.io.formats.style.Styler)]


@pytest.fixture
def setup(tmp_path) -> comparison.ComparisonSetup:
    """Three replicates of both models on 12 test images written as JPEGs under tmp_path, with calibrations."""
    root = tmp_path / "chest_xray"
    for label, name in TEST_FILES:
        (root / "test" / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((30, 40), 90, dtype=np.uint8)).save(root / "test" / label / name)
    runs = []
    for run in study_runs():
        predictions = run.predictions.assign(path=[str(root / path) for path in run.predictions["path"]])
        runs.append(dataclasses.replace(run, predictions=predictions, info={**run.info, "calibration": CALIBRATION}))
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    return comparison.ComparisonSetup({"report_dir": str(report_dir)}, SimpleNamespace(images=index_images()), runs,
                                      0, 1, None)


# ---------------------------------------------------------------- sections

def test_the_subgroup_section_writes_its_rows_and_marks_small_cells(setup, monkeypatch):
    shown = shown_items(monkeypatch)
    rows = reader.subgroups_section(setup)
    written = pd.read_csv(f"{setup.params['report_dir']}/{SUBGROUPS_FILE}")
    pd.testing.assert_frame_equal(written, rows.reset_index(drop=True), check_dtype=False)
    summary, differences, within = tables(shown)
    assert summary["Mean ± SD (min–max)"].tolist()[5] == "0.667 ± 0.144 (0.500–0.750)"  # DenseNet-121, viral
    assert set(summary["Readable"]) == {"no: fewer than 30"}
    viral = differences.set_index("Subgroup").loc["viral pneumonia"]
    assert viral["Comparison"] == "DenseNet-121 − ResNet-50" and viral["Replicates higher / lower"] == "2 / 0"
    assert viral["Mean difference (95% t-interval)"] == "+0.167 (−0.192 to +0.525)"
    assert set(within["Group"]) == {"square 224×224", "square 227×227"}
    assert "viral pneumonia 4: 4 square 227×227" in texts(shown) and "no model is called better" in texts(shown)
    assert any(isinstance(item, Figure) for item in shown)


def test_the_calibration_section_names_what_each_axis_is(setup, monkeypatch):
    shown = shown_items(monkeypatch)
    drawn = []
    monkeypatch.setattr(reader.plots, "plot_reliability_band", lambda summary, outputs: drawn.append(outputs))
    scores = reader.calibration_section(setup)
    assert len(scores) == 12
    written = pd.read_csv(f"{setup.params['report_dir']}/{CALIBRATION_FILE}")
    assert written["brier"].tolist() == pytest.approx(scores["brier"].tolist())
    outputs = drawn[0]
    assert "not P(PNEUMONIA)" in outputs["score"][0] and "at a PNEUMONIA share of 0.75" in outputs["probability"][1]
    table = tables(shown)[0]
    assert table["Output"].tolist()[:2] == ["raw score", "calibrated probability"]
    words = texts(shown)
    assert "recorded in run.json for 6 runs" in words and "the test folder's is 0.667" in words
    assert "slope 2.00 on the logit scale) and shifts it towards PNEUMONIA" in words


def test_the_calibration_verdict_follows_the_numbers():
    scores = pd.DataFrame({"model": "resnet50", "seed": [1, 1, 2, 2], "output": ["score", "probability"] * 2,
                           "brier": [0.2, 0.1, 0.2, 0.3], "ece": [0.1, 0.1, 0.1, 0.1], "mean_output": 0.5,
                           "prevalence": 0.5})
    runs = [fake_run("resnet50", seed, [0.5] * 12, CALIBRATION) for seed in (1, 2)]
    assert "helps in some runs and harms in others" in reader.calibration_reading(scores, runs)
    assert "Brier score 0.200 → 0.200 (larger in 1 of 2 replicates)" in reader.calibration_change(scores)


def test_the_failures_section_shows_the_images_with_their_file_names(setup, monkeypatch):
    shown = shown_items(monkeypatch)
    galleries = []
    monkeypatch.setattr(reader.plots, "plot_image_gallery",
                        lambda paths, captions, title: galleries.append((paths, captions, title)))
    reader.failures_section(setup, n_images=2)
    (both_paths, both_captions, _), (gap_paths, gap_captions, gap_title) = galleries
    assert both_captions == ["person5_virus_15.jpeg\ntrue: viral pneumonia\nResNet-50 0.20 (0.20–0.20), wrong 3/3\n"
                             "DenseNet-121 0.30 (0.30–0.30), wrong 3/3"]
    assert len(gap_paths) == 2 and all(Path(path).is_file() for path in gap_paths) and "gaps" in gap_title
    assert "both wrong in all 3 replicates on 1" in texts(shown)


def test_the_gallery_draws_the_stored_images(setup):
    paths = list(setup.runs[0].test["path"][:3])
    figure = plots.plot_image_gallery(paths, ["a", "b", "c"], "three")
    assert [ax.get_title(loc="left") for ax in figure.axes[:3]] == ["a", "b", "c"]
    assert figure.axes[0].images[0].get_array().shape[:2] == (30, 40)  # as stored, not resized


def test_the_gallery_needs_a_caption_per_image():
    with pytest.raises(ValueError, match="one caption per image.*2 paths and 1 captions"):
        plots.plot_image_gallery(["a", "b"], ["a"], "x")


def test_the_learning_curves_section_names_each_replicates_best_epoch(setup, monkeypatch):
    shown = shown_items(monkeypatch)
    reader.learning_curves_section(setup)
    assert "ResNet-50 2, 2, 2 (of 3 epochs); DenseNet-121 2, 2, 2 (of 3 epochs)" in texts(shown)
    figure = next(item for item in shown if isinstance(item, Figure))
    assert [ax.get_title() for ax in figure.axes] == ["ResNet-50: loss", "DenseNet-121: loss", "ResNet-50: ROC-AUC",
                                                      "DenseNet-121: ROC-AUC"]


def test_learning_curves_need_the_roc_auc_columns():
    run = fake_run("resnet50", 1, [0.5] * 12)
    run.history = run.history.drop(columns="val_auc")
    with pytest.raises(ValueError, match=r"history\.csv holds .*'val_auc'.*ResNet-50, seed 1"):
        plots.plot_learning_curves([run])


def test_the_reliability_band_draws_one_column_per_output():
    summary = compare.summarise_reliability(compare.reliability_rows(
        [dataclasses.replace(run, info={**run.info, "calibration": CALIBRATION}) for run in study_runs()]))
    figure = plots.plot_reliability_band(summary, {"score": ("Raw", "score axis"), "probability": ("Cal", "p axis")})
    assert [ax.get_title() for ax in figure.axes[:2]] == ["Raw", "Cal"]
    assert [ax.get_xlabel() for ax in figure.axes[2:]] == ["score axis", "p axis"]
    with pytest.raises(ValueError, match=r"no rows of outputs \['logit'\]"):
        plots.plot_reliability_band(summary, {"logit": ("L", "l")})


def test_the_subgroup_figure_shows_every_replicate():
    rows = compare.subgroup_rows(study_runs())
    figure = plots.plot_subgroup_shares(rows, {"NORMAL": "N", "bacterial": "B", "viral": "V"})
    dots = [len(points.get_offsets()) for points in figure.axes[0].collections if isinstance(points, PathCollection)]
    assert dots == [3] * 6  # two models x three subgroups, a dot per replicate
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_subgroup_shares(rows.iloc[:0], {"viral": "V"})


def test_the_disagreement_section_counts_and_leaves_the_images_to_the_gallery(setup, monkeypatch):
    shown = shown_items(monkeypatch, comparison)
    disagree = comparison.disagreements_section(setup)
    assert not tables(shown) and len(disagree) == 2
    assert "disagree on **2** of 12 test images in this replicate (1 NORMAL, 1 PNEUMONIA)" in texts(shown)
    assert "gallery under *Failures you can see*" in texts(shown)


# ---------------------------------------------------------------- the committed confirmatory study

@pytest.fixture(scope="module")
def confirmatory(real_data_dir, tmp_path_factory):
    """04's setup on a copy of the committed confirmatory records, with the real data set."""
    report_dir = tmp_path_factory.mktemp("reports") / "cpu-confirmatory"
    shutil.copytree(REPO_ROOT / "reports" / "cpu-confirmatory" / "runs", report_dir / "runs")
    namespace = {"profile": "cpu-confirmatory", "data_dir": str(real_data_dir),
                 "runs_dir": str(report_dir / "models"), "report_dir": str(report_dir), "threshold_policy": "fixed",
                 "youden_delta": 0.02, "target_sensitivity": 0.95, "focus_seed": None, "study": "confirmatory-cpu",
                 "n_boot": 50, "n_examples": 1, "sampling_seed": 42}
    return comparison.setup(namespace)


@pytest.mark.realdata
def test_confirmatory_subgroups_as_committed(confirmatory, monkeypatch):
    shown_items(monkeypatch)
    rows = reader.subgroups_section(confirmatory)
    summary = compare.summarise_subgroups(rows[rows["group"] == "all"]).set_index(["model", "subgroup"])
    assert summary["images"].xs("resnet50").to_dict() == {"NORMAL": 231, "bacterial": 240, "viral": 147}
    assert summary.loc[("resnet50", "viral"), "mean"] == pytest.approx(0.925, abs=5e-4)
    assert summary.loc[("resnet50", "bacterial"), "mean"] == pytest.approx(0.967, abs=5e-4)
    assert summary.loc[("densenet121", "viral"), "mean"] == pytest.approx(0.977, abs=5e-4)


@pytest.mark.realdata
def test_confirmatory_calibration_as_committed(confirmatory, monkeypatch):
    shown_items(monkeypatch)
    monkeypatch.setattr(reader.plots, "plot_reliability_band", lambda *args: None)
    scores = reader.calibration_section(confirmatory)
    assert set(scores["calibration_source"]) == {"recorded in run.json"} and len(scores) == 28
    wide = scores.pivot_table(index=["model", "seed"], columns="output", values="brier")
    assert (wide["probability"] > wide["score"]).all()  # the calibrated probability is worse on test in every run


@pytest.mark.realdata
def test_the_committed_subgroup_and_calibration_files_are_what_the_records_give(confirmatory, monkeypatch):
    """subgroups.csv and calibration.csv, which the index and docs/MODEL_CARD.md read, match the records."""
    shown_items(monkeypatch)
    monkeypatch.setattr(reader.plots, "plot_reliability_band", lambda *args: None)
    committed = REPO_ROOT / "reports" / "cpu-confirmatory"
    pd.testing.assert_frame_equal(pd.read_csv(committed / SUBGROUPS_FILE),
                                  reader.subgroups_section(confirmatory).reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(committed / CALIBRATION_FILE),
                                  reader.calibration_section(confirmatory).reset_index(drop=True), check_dtype=False)
