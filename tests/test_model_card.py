"""docs/MODEL_CARD.md is generated from the committed records: regenerating it gives the committed file; on a small
generated study its numbers are the records' own; missing records are named with the command that writes them."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cxrlib import compare, plan
from cxrlib.contract import ARCHS, CALIBRATION_FILE, REPO_ROOT, SEEDS_FILE, STUDY_FILE, SUBGROUPS_FILE
from cxrlib.report import model_card
from cxrlib.runner import index
from reader_fakes import fake_run, index_images, study_runs
from helpers import fabricated_record

CONFIRMATORY = plan.load_plan("confirmatory-cpu")
SENSITIVITY, SPECIFICITY = {"resnet50": 0.95, "densenet121": 0.98}, {"resnet50": 0.80, "densenet121": 0.82}
CALIBRATION = {"method": "platt", "slope": 2.0, "intercept": 1.0, "prevalence": 0.74, "images": 10, "fitted_on": "val"}


def test_the_committed_card_is_what_the_records_give():
    assert model_card.CARD_FILE.read_text() == model_card.model_card(model_card.read_records()), (
        "docs/MODEL_CARD.md differs from its records: run python -m cxrlib.report.model_card")


def run_record(arch: str, seed: int) -> dict:
    """A run.json with the fields the card reads."""
    return {"config": {"weights": None, "image_size": 96 if arch == "resnet50" else 128, "epochs": 8,
                       "batch_size": 32, "optimizer": "adam", "learning_rate": 0.001, "lr_schedule": "cosine",
                       "weight_decay": 0.0, "label_smoothing": 0.1, "augment_strength": 1.0, "dropout": 0.5,
                       "head_units": 1024, "precision": "float32"},
            "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}, "params": {"total": 1000},
            "timing": {"training": 600.0 * seed}, "best_epoch": 6, "best_val_auc": 0.99,
            "device": {"cpu_kind": "AMD EPYC (avx2)"}, "counts": {"train": 90, "val": 10, "test": 12}}


@pytest.fixture
def study_root(tmp_path, monkeypatch):
    """A repository root holding a generated confirmatory study's records (the real plan, seeds 2001-2007)."""
    report_dir = tmp_path / CONFIRMATORY.records.removesuffix("/runs")
    for arch in ARCHS:
        for seed in CONFIRMATORY.seeds:
            run_dir = report_dir / "runs" / arch / f"seed-{seed}"
            run_dir.mkdir(parents=True)
            (run_dir / "run.json").write_text(json.dumps(run_record(arch, seed)))
    rows = [{"model": arch, "seed": seed, "policy": "fixed", "is_primary": True, "threshold": 0.5, "roc_auc": 0.96,
             "accuracy": 0.9, "sensitivity": SENSITIVITY[arch] + 0.001 * (seed - 2004),
             "specificity": SPECIFICITY[arch], "n_val": 10, "n_test": 12}
            for arch in ARCHS for seed in CONFIRMATORY.seeds]
    pd.DataFrame(rows).to_csv(report_dir / SEEDS_FILE, index=False)
    table = {"headers": ["Group", "Model"], "rows": [["square 227×227", "ResNet-50"]]}
    study = {"title": "A study", "kind": "confirmatory", "plan": "studies/confirmatory-cpu.yaml",
             "document": "docs/CONFIRMATORY.md", "document_added": {"commit": "abc1234", "date": "2026-12-07"},
             "seeds": list(CONFIRMATORY.seeds), "policy": "fixed 0.5", "decision": "The decision.",
             "decision_details": "Its details.", "differences": table, "expectations": table, "within_group": table,
             "within_group_notes": "", "beside": None}
    (report_dir / STUDY_FILE).write_text(json.dumps(study))
    runs = [run for seed in CONFIRMATORY.seeds for run in study_runs(seeds=(seed,))]
    compare.subgroup_rows(runs, index_images()).to_csv(report_dir / SUBGROUPS_FILE, index=False)
    calibrated = [fake_run(run.arch, run.seed, run.predictions.loc[run.predictions["subset"] == "test", "prob"],
                           CALIBRATION) for run in runs]
    compare.calibration_scores(calibrated).to_csv(report_dir / CALIBRATION_FILE, index=False)
    monkeypatch.setattr(model_card, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(model_card, "CARD_FILE", tmp_path / "docs" / "MODEL_CARD.md")
    return tmp_path


def test_the_card_states_the_records_numbers(study_root):
    card = model_card.model_card(model_card.read_records())
    assert "**Not for clinical use.**" in card and "one hospital" in card and "children aged 1–5" in card
    ppv, npv = model_card.predictive_values(0.98, 0.82, 0.10)
    assert "| DenseNet-121 | 0.100" in card and f"{ppv:.3f}" in card and f"{npv:.3f}" in card
    assert "| ResNet-50    | 7 " in card and "0.950 (" in card  # mean sensitivity with its interval
    assert "committed in abc1234 on 2026-12-07" in card and "The decision. Its details." in card
    assert "| held-out test X-rays | 624 |" in card and "Run `RUN_DIR`" in card  # the OOD measurement, as committed
    assert "viral pneumonia" in card and "ResNet-50 3×3, DenseNet-121 4×4" in card
    assert "viral 4: 4 square 227×227" in card and "no: fewer than 30" in card
    assert [line for line in card.splitlines() if len(line) > 120 and len(line.split()) > 1 and line[0] != "|"] == []


def test_the_command_writes_the_card_and_then_finds_it_current(study_root, capsys):
    assert model_card.main(["--check"]) == 1 and "is not what the records give" in capsys.readouterr().out
    (study_root / "docs").mkdir()
    assert model_card.main([]) == 0 and model_card.main(["--check"]) == 0
    model_card.CARD_FILE.write_text(model_card.CARD_FILE.read_text().replace("0.950", "0.951"))
    assert model_card.main(["--check"]) == 1


def test_a_missing_record_is_named_with_the_command_that_writes_it(study_root, capsys):
    (study_root / "reports" / "cpu-confirmatory" / SUBGROUPS_FILE).unlink()
    assert model_card.main(["--check"]) == 1
    said = capsys.readouterr().out
    assert "reports/cpu-confirmatory/subgroups.csv is missing" in said
    assert './run_all.sh --profile cpu-confirmatory --only 01 --only 04 --set "seeds=[2001, 2002' in said


def test_every_planned_replicate_is_needed(study_root):
    shutil.rmtree(study_root / "reports" / "cpu-confirmatory" / "runs" / "densenet121" / "seed-2007")
    with pytest.raises(model_card.CardError, match=r"densenet121/seed-2007/run\.json missing"):
        model_card.read_records()


def test_the_ood_table_is_read_from_its_section(tmp_path):
    report = tmp_path / "ood.md"
    report.write_text("# OOD\n\nRun `R`: a model,\nseed 1.\n\n## Flagged images\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                      "## Next\n| x |\n")
    assert model_card.ood_flag_table(report) == "| a | b |\n|---|---|\n| 1 | 2 |"
    assert model_card.ood_measured_run(report) == "Run `R`: a model, seed 1."
    report.write_text("# OOD\n\nno table\n")
    with pytest.raises(model_card.CardError, match="no '## Flagged images' section.*measure_ood.py"):
        model_card.ood_flag_table(report)
    with pytest.raises(model_card.CardError, match="names no measured run.*measure_ood.py"):
        model_card.ood_measured_run(report)


def test_predictive_values_follow_bayes_rule():
    ppv, npv = model_card.predictive_values(np.array([0.9]), np.array([0.8]), 0.5)
    assert ppv[0] == pytest.approx(0.9 / 1.1) and npv[0] == pytest.approx(0.8 / 0.9)


def test_reflow_wraps_prose_and_leaves_tables_and_names_whole():
    long = "- **A bullet** " + "ResNet-50 and DenseNet-121 " * 8
    wrapped = model_card.reflow(long)
    assert all(len(line) <= model_card.LINE_WIDTH for line in wrapped.splitlines())
    assert wrapped.splitlines()[1].startswith("  ") and "ResNet-\n" not in wrapped
    table = "| a | b |\n|---|---|"
    assert model_card.reflow(table) == table


def test_the_index_shows_the_reader_tables_and_links_the_card_only_for_its_study(study_root, tmp_path):
    report_dir = study_root / "reports" / "cpu-confirmatory"
    record = index.reader_record(report_dir)
    assert record["card_href"] is None  # no card is written in this generated root
    assert record["subgroups"].headers == ["Model", "Subgroup", "Measured", "Images", "Mean ± SD"]
    assert record["calibration"].headers == ["Model", "Output", "Brier score", "ECE"]
    page = index.write_index(report_dir, fabricated_record(), "a study").read_text()
    assert "For a reader of a medical model" in page and "not for clinical use" in page
    assert page.index('id="for-a-reader"') < page.index('id="reports"')
    assert "Framing and exposure move the decisions" in page and "threshold 0.5); every shift and strength is in docs/STRESS.md" in page
    assert index.reader_record(tmp_path / "elsewhere") is None


def test_the_confirmatory_index_links_the_committed_card_also_from_the_runners_staging_copy(tmp_path):
    report_dir = REPO_ROOT / "reports" / "cpu-confirmatory"
    assert model_card.describes(report_dir) and not model_card.describes(REPO_ROOT / "reports" / "cpu")
    assert index.reader_record(report_dir)["card_href"] == "../../docs/MODEL_CARD.md"
    staging = tmp_path / "cpu-confirmatory.staging"
    staging.mkdir()
    shutil.copy(report_dir / STUDY_FILE, staging)
    assert model_card.describes(staging)


def test_the_card_refuses_to_be_written_without_the_stress_measurement(monkeypatch, tmp_path):
    monkeypatch.setattr(model_card.stress, "MEASUREMENT_RUNS", tmp_path)
    with pytest.raises(model_card.CardError, match="holds no stress record under crop 0.9 and exposure 0.8; make it as "
                                                   r"docs/STRESS.md says \(python -m cxrlib.stress RUN_DIR\)"):
        model_card.stress_measured()
