"""The factorial study's analysis (cxrlib.factorial) on fake records: cells read from the studies that hold them,
refused until complete or when a replicate's splits differ; contrasts, intervals and the plan's decisions."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import t

from cxrlib import factorial, plan
from helpers import FACTORIAL, VALID, fake_predictions, write_run

SEEDS = (11, 12, 13)


@pytest.fixture
def studies(tmp_path, monkeypatch):
    """Plans 'other' (two-model, holds ResNet-50 at S and DenseNet-121 at T) and 'test' (the factorial, holds the
    two other cells), both reading their records under tmp_path."""
    folder = tmp_path / "studies"
    folder.mkdir()
    monkeypatch.setattr(plan, "STUDIES_DIR", folder)
    (folder / "other.yaml").write_text(yaml.safe_dump({**VALID, "profile": "other", "records": "reports/other/runs",
                                                       "seeds": list(SEEDS), "focus_seed": SEEDS[0]}))
    (folder / "test.yaml").write_text(yaml.safe_dump({**FACTORIAL, "seeds": list(SEEDS), "focus_seed": SEEDS[0]}))
    return tmp_path


def write_cell_run(root, holder, arch, seed, separation, split="split-a", cpu_bf16=()):
    """One run of a cell, as the trainer records it (split fingerprint, data fingerprint, CPU, training time)."""
    run_dir = write_run(root / "reports" / holder / "runs" / arch / f"seed-{seed}", arch, separation=separation,
                        seed=seed, predictions=fake_predictions(separation=separation, seed=seed), policy="fixed")
    info = json.loads((run_dir / "run.json").read_text())
    info.update(split_fingerprint=split, data_fingerprint="data", device={"cpu": "AMD EPYC", "cpu_bf16": list(cpu_bf16)})
    info["threshold"]["value"] = 0.5
    (run_dir / "run.json").write_text(json.dumps(info))


def write_study(root, seeds=SEEDS, odd_split_seed=None):
    """All four cells: separations make DenseNet-121 at T the best cell."""
    holders = {("resnet50", "S"): "other", ("densenet121", "T"): "other", ("resnet50", "T"): "smoke",
               ("densenet121", "S"): "smoke"}
    separation = {("resnet50", "S"): 1.0, ("resnet50", "T"): 1.5, ("densenet121", "S"): 1.2, ("densenet121", "T"): 3.0}
    for (arch, recipe), holder in holders.items():
        for seed in seeds:
            split = "split-b" if seed == odd_split_seed and holder == "smoke" else "split-a"
            write_cell_run(root, holder, arch, seed, separation[(arch, recipe)] + 0.1 * seed, split,
                           cpu_bf16=("avx512_bf16",) if holder == "smoke" else ())


def images_of(root) -> pd.DataFrame:
    """The data index the merge of byte-identical images needs: every fake image, each its own content."""
    relpaths = sorted({f"test/{label}/img{i:03d}.jpeg" for label in ("NORMAL", "PNEUMONIA") for i in range(80)})
    return pd.DataFrame({"relpath": relpaths, "sha256": relpaths})


def test_cells_come_from_the_studies_that_hold_them(studies):
    write_study(studies)
    loaded = plan.load_factorial("test")
    records = factorial.cell_records(loaded, studies)
    assert records[("resnet50", "S")] == studies / "reports/other/runs"
    assert records[("resnet50", "T")] == studies / "reports/smoke/runs"
    cells = factorial.load_cells(loaded, images_of(studies), root=studies)
    assert {key: [run.seed for run in runs] for key, runs in cells.items()} == {key: list(SEEDS) for key in records}
    assert all(run.arch == arch for (arch, _), runs in cells.items() for run in runs)


def test_a_cell_is_not_read_before_every_replicate_is_committed(studies):
    write_study(studies, seeds=SEEDS[:2])
    with pytest.raises(ValueError, match=r"cell \w+/[ST] .* holds seeds \[11, 12\], not the plan's \[11, 12, 13\] "
                                         r"\(missing: \[13\]\).*scripts/run_planned_study.sh test"):
        factorial.load_cells(plan.load_factorial("test"), images_of(studies), root=studies)


def test_a_replicate_whose_cells_used_different_splits_is_refused(studies):
    write_study(studies, odd_split_seed=12)
    with pytest.raises(ValueError, match="replicate 12 of the factorial study used different patient splits"):
        factorial.load_cells(plan.load_factorial("test"), images_of(studies), root=studies)


def test_cell_metrics_score_each_run_at_the_primary_policy_with_its_cpu_and_time(studies):
    write_study(studies)
    cells = factorial.load_cells(plan.load_factorial("test"), images_of(studies), root=studies)
    per_cell = factorial.cell_metrics(cells, "fixed", fixed_threshold=0.5)
    assert list(per_cell.columns) == factorial.CELL_COLUMNS and len(per_cell) == 4 * len(SEEDS)
    assert (per_cell["threshold"] == 0.5).all()
    best = per_cell.groupby(["arch", "recipe"])["roc_auc"].mean().idxmax()
    assert best == ("densenet121", "T")
    kinds = factorial.cpu_kinds(per_cell)
    assert set(kinds["resnet50/T"]) == {"AMD EPYC (avx512_bf16)"} and set(kinds["resnet50/S"]) == {"AMD EPYC"}
    assert not kinds["one_kind"].any()


def per_cell_frame(values: dict[str, list[float]]) -> pd.DataFrame:
    """A per-cell frame with the given ROC-AUCs per cell (accuracy = ROC-AUC − 0.05)."""
    rows = [{"arch": cell.split("/")[0], "recipe": cell.split("/")[1], "seed": seed, "roc_auc": value,
             "accuracy": value - 0.05} for cell, column in values.items() for seed, value in zip(SEEDS, column)]
    return pd.DataFrame(rows)


def test_contrasts_are_the_planned_sums_of_cells_per_replicate(studies):
    loaded = plan.load_factorial("test")
    per_cell = per_cell_frame({"resnet50/S": [0.90, 0.91, 0.92], "resnet50/T": [0.93, 0.93, 0.95],
                               "densenet121/S": [0.90, 0.92, 0.91], "densenet121/T": [0.97, 0.96, 0.99]})
    values = factorial.contrast_values(per_cell, loaded).set_index(["contrast", "metric", "seed"])["difference"]
    assert values[("architecture_T", "roc_auc", 11)] == pytest.approx(0.97 - 0.93)
    assert values[("interaction", "roc_auc", 13)] == pytest.approx((0.99 - 0.95) - (0.91 - 0.92))
    assert values[("interaction", "accuracy", 12)] == pytest.approx((0.96 - 0.93) - (0.92 - 0.91))


def test_the_primary_is_decided_at_the_plans_level_and_the_rest_by_bonferroni(studies):
    loaded = plan.load_factorial("test")
    family = factorial.secondary_family(loaded)
    assert ("architecture_T", "roc_auc") not in family and len(family) == 3  # (2 contrasts x 2 metrics) − 1
    assert factorial.adjusted_level(loaded) == pytest.approx(1 - 0.05 / 3)
    per_cell = per_cell_frame({"resnet50/S": [0.90, 0.91, 0.92], "resnet50/T": [0.93, 0.93, 0.95],
                               "densenet121/S": [0.90, 0.92, 0.91], "densenet121/T": [0.97, 0.96, 0.99]})
    summary = factorial.summarise_contrasts(factorial.contrast_values(per_cell, loaded), loaded)
    primary = summary.set_index(["contrast", "metric"]).loc[("architecture_T", "roc_auc")]
    differences = np.array([0.04, 0.03, 0.04])
    half = t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    assert primary["ci_low"] == pytest.approx(differences.mean() - half)
    assert primary["decided_by"] == "primary" and primary["decided"] == "above"
    wider = summary.set_index(["contrast", "metric"]).loc[("architecture_T", "accuracy")]
    assert wider["decided_by"] == "bonferroni"
    assert wider["adjusted_high"] - wider["adjusted_low"] > wider["ci_high"] - wider["ci_low"]
    interaction = summary.set_index(["contrast", "metric"]).loc[("interaction", "roc_auc")]
    assert interaction["decided"] in ("above", "not detected") and interaction["n_above"] == 3


def test_a_contrast_another_study_decided_is_restated_not_decided(studies):
    values = {**FACTORIAL, "seeds": list(SEEDS), "focus_seed": SEEDS[0],
              "contrasts": [*FACTORIAL["contrasts"], {"name": "confirmatory", "role": "decided",
                                                      "terms": {"densenet121/T": 1, "resnet50/S": -1}}]}
    (studies / "studies" / "test.yaml").write_text(yaml.safe_dump(values))
    loaded = plan.load_factorial("test")
    per_cell = per_cell_frame({"resnet50/S": [0.90, 0.91, 0.92], "resnet50/T": [0.93, 0.93, 0.95],
                               "densenet121/S": [0.90, 0.92, 0.91], "densenet121/T": [0.97, 0.96, 0.99]})
    summary = factorial.summarise_contrasts(factorial.contrast_values(per_cell, loaded), loaded)
    restated = summary[summary["contrast"] == "confirmatory"]
    assert (restated["decided"] == "").all() and (restated["role"] == "decided").all()
    assert len(factorial.secondary_family(loaded)) == 3  # a decided contrast is not in the family


def test_expectations_are_reported_met_or_not(studies):
    values = {**FACTORIAL, "seeds": list(SEEDS), "focus_seed": SEEDS[0], "expectations": [
        {"of": "architecture_T", "metric": "roc_auc", "statistic": "half_width", "bound": "at_most", "value": 0.5},
        {"of": "resnet50/T", "metric": "roc_auc", "statistic": "mean", "bound": "at_least", "value": 0.99},
        {"of": "interaction", "metric": "accuracy", "statistic": "mean", "bound": "at_least", "value": 0.0}]}
    (studies / "studies" / "test.yaml").write_text(yaml.safe_dump(values))
    loaded = plan.load_factorial("test")
    per_cell = per_cell_frame({"resnet50/S": [0.90, 0.91, 0.92], "resnet50/T": [0.93, 0.93, 0.95],
                               "densenet121/S": [0.90, 0.92, 0.91], "densenet121/T": [0.97, 0.96, 0.99]})
    summary = factorial.summarise_contrasts(factorial.contrast_values(per_cell, loaded), loaded)
    results = factorial.expectation_results(loaded, factorial.summarise_cells(per_cell, ("roc_auc", "accuracy")),
                                            summary)
    assert list(results["met"]) == [True, False, True]
    assert results.loc[1, "measured"] == pytest.approx(np.mean([0.93, 0.93, 0.95]))


def test_the_report_section_leads_with_the_answer_and_feeds_the_index(studies, monkeypatch):
    from cxrlib.report import factorial as section
    from cxrlib.runner import index

    write_study(studies)
    monkeypatch.setattr(factorial, "REPO_ROOT", studies)
    report_dir = studies / "reports" / "test"
    report_dir.mkdir(parents=True)
    record = section.section({"study": "test", "report_dir": str(report_dir)}, images_of(studies), None,
                             fixed_threshold=0.5)
    assert record["answer"].startswith("At equal recipes (T), ")
    assert "secondary (contrast, metric) pairs by its Bonferroni interval" in record["answer_details"]
    assert sorted((row[0], row[1][0], row[2]) for row in record["cells"]["rows"]) == [
        ("DenseNet-121", "S", "new"), ("DenseNet-121", "T", "committed (other)"),
        ("ResNet-50", "S", "committed (other)"), ("ResNet-50", "T", "new")]
    assert (report_dir / "factorial.png").is_file() and (report_dir / "factorial_cells.csv").is_file()
    shown = index.factorial_record(report_dir)
    assert shown["cells"].headers[:3] == ["Model", "Recipe", "Records"]
    assert section.section({"study": "other", "report_dir": str(report_dir)}, images_of(studies), None) is None
    assert not (report_dir / "factorial.json").exists(), "a two-model study must not keep an earlier factorial's answer"


@pytest.mark.parametrize("terms, title", [
    ({"densenet121/T": 1, "resnet50/T": -1}, "architecture at T: DenseNet-121 − ResNet-50"),
    ({"resnet50/T": 1, "resnet50/S": -1}, "recipe for ResNet-50: T − S"),
    ({"densenet121/T": 1, "resnet50/S": -1}, "DenseNet-121 at T − ResNet-50 at S"),
    ({"densenet121/T": 1, "resnet50/T": -1, "densenet121/S": -1, "resnet50/S": 1}, "interaction"),
])
def test_contrasts_are_named_for_readers(terms, title):
    from cxrlib.report.factorial import contrast_title

    assert contrast_title(plan.Contrast("c", "secondary", terms)).startswith(title)


@pytest.mark.realdata
def test_a_committed_cell_scores_exactly_as_its_own_studys_report(real_data_dir):
    """The confirmatory study's two cells, read as the factorial reads its cells, give seeds.csv's values."""
    from cxrlib import compare, data
    from cxrlib.contract import REPO_ROOT

    confirmatory = plan.load_plan("confirmatory-cpu")
    index = data.scan_dataset(real_data_dir)
    runs = compare.merge_duplicates(compare.load_runs(REPO_ROOT / confirmatory.records), index.images)[0]
    cells = {("resnet50", "S"): [r for r in runs if r.arch == "resnet50"],
             ("densenet121", "T"): [r for r in runs if r.arch == "densenet121"]}
    per_cell = factorial.cell_metrics(cells, "fixed", target_sensitivity=0.95, delta=0.02)
    seeds = pd.read_csv(REPO_ROOT / "reports" / "cpu-confirmatory" / "seeds.csv")
    committed = seeds[seeds["policy"] == "fixed"].rename(columns={"model": "arch"}).set_index(["arch", "seed"])
    measured = per_cell.set_index(["arch", "seed"])
    for metric in ("roc_auc", "accuracy", "sensitivity", "specificity", "n_test"):
        assert (measured[metric] == committed.loc[measured.index, metric]).all(), metric
    assert set(per_cell["cpu"]) == {"AMD EPYC (avx2)"}  # as each run.json records it
