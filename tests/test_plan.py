"""Study plans as data (cxrlib.plan) and the words of the decision and expectations (report.discussion)."""
import numpy as np
import pandas as pd
import pytest
import yaml

from cxrlib import plan, study
from cxrlib.report import discussion
from helpers import FACTORIAL, VALID


@pytest.fixture
def studies_dir(tmp_path, monkeypatch):
    """An empty studies/ folder that cxrlib.plan reads."""
    monkeypatch.setattr(plan, "STUDIES_DIR", tmp_path)
    return tmp_path


def write_plan(folder, values, name="test"):
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(values))
    return name


def test_the_committed_exploratory_plan_loads_and_matches_its_records():
    exploratory = plan.load_plan("exploratory-cpu")
    assert exploratory.seeds == (1, 2, 3, 4, 5) and exploratory.primary_policy == "fixed"
    assert len(exploratory.expectations) == 7


def test_a_valid_plan_loads(studies_dir):
    loaded = plan.load_plan(write_plan(studies_dir, VALID))
    assert loaded.seeds == (11, 12, 13) and loaded.expectations[0].holds(0.95)
    assert not loaded.expectations[0].holds(0.85)


@pytest.mark.parametrize("change, message", [
    ({"seeds": [1, 1]}, "distinct integers"),
    ({"kind": "final"}, "kind = 'final' is not one of"),
    ({"compared": "resnet50"}, "name two architectures"),
    ({"decision_metrics": ["brier"]}, "decision_metrics"),
    ({"level": 95}, "confidence level"),
    ({"focus_seed": 3}, "focus_seed = 3 is not one of the seeds"),
    ({"document": "docs/NOPE.md"}, "document = 'docs/NOPE.md' does not exist"),
    ({"expectations": [{"model": "vgg", "metric": "roc_auc", "statistic": "mean", "bound": "at_least", "value": 1}]},
     "model = 'vgg'"),
    ({"seedz": [1]}, "unknown key 'seedz' \\(did you mean 'seeds'\\?\\)"),
    ({"beside": "nope"}, "beside = 'nope' must name another study plan in studies/"),
    ({"records": "reports/elsewhere/runs"}, "not where ./run_all.sh --profile smoke --only 04 reads them; set "
                                            "records: reports/smoke/runs"),
    ({"beside": "test"}, "beside = 'test' must name another study plan"),
])
def test_a_bad_plan_is_refused_naming_the_file_and_key(studies_dir, change, message):
    with pytest.raises(plan.PlanError, match=message) as error:
        plan.load_plan(write_plan(studies_dir, {**VALID, **change}))
    assert "test.yaml" in str(error.value)


def test_a_plan_may_name_an_earlier_study_to_show_beside_it(studies_dir):
    assert plan.load_plan(write_plan(studies_dir, VALID)).beside is None
    write_plan(studies_dir, {**VALID, "seeds": [1, 2], "focus_seed": 1}, "earlier")
    assert plan.load_plan(write_plan(studies_dir, {**VALID, "beside": "earlier"})).beside == "earlier"


def test_a_missing_plan_names_the_known_ones(studies_dir):
    write_plan(studies_dir, VALID, "known")
    with pytest.raises(plan.PlanError, match=r"set `study` to one of \['known'\] or null"):
        plan.load_plan("unknown")


def test_records_must_hold_exactly_the_planned_replicates_and_policy(studies_dir):
    loaded = plan.load_plan(write_plan(studies_dir, VALID))
    plan.check_runs(loaded, [13, 11, 12, 11], "fixed")
    with pytest.raises(plan.PlanError, match=r"hold seeds \[11, 12\] but .* planned \[11, 12, 13\]"):
        plan.check_runs(loaded, [11, 12], "fixed")
    with pytest.raises(plan.PlanError, match="pre-registered 'fixed'"):
        plan.check_runs(loaded, [11, 12, 13], "youden")


def per_seed_rows(shift: float) -> pd.DataFrame:
    """seed_metrics-like rows at one policy: DenseNet-121 below ResNet-50 by about ``shift`` in every seed."""
    rows = []
    for seed, noise in zip((11, 12, 13), (0.001, -0.002, 0.0015)):
        for model, auc in (("resnet50", 0.96), ("densenet121", 0.96 - shift + noise), ("ensemble", 0.965)):
            rows.append({"model": model, "seed": seed, "policy": "fixed", "is_primary": True, "threshold": 0.5,
                         "roc_auc": auc, "accuracy": 0.9, "sensitivity": 0.95, "specificity": 0.8})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("shift, lead", [
    (0.02, "ResNet-50 has the higher ROC-AUC"),
    (0.0, "The study detects no difference between DenseNet-121 and ResNet-50"),
])
def test_the_decision_follows_the_interval(studies_dir, shift, lead):
    loaded = plan.load_plan(write_plan(studies_dir, VALID))
    per_seed = per_seed_rows(shift)
    summary = study.summarise_differences(study.seed_differences(per_seed, "resnet50", "fixed"))
    sentence, details = discussion.decision(loaded, summary)
    assert sentence == f"Test study. {lead}."
    assert "higher in 0 and lower in 3 of 3 replicates" in details if shift else "of 3 replicates" in details


def test_expectations_are_reported_met_or_not(studies_dir):
    values = {**VALID, "expectations": [
        {"model": "resnet50", "metric": "roc_auc", "statistic": "mean", "bound": "at_least", "value": 0.97},
        {"model": "densenet121", "metric": "roc_auc", "statistic": "sd", "bound": "at_most", "value": 0.01}]}
    loaded = plan.load_plan(write_plan(studies_dir, values))
    results = plan.expectation_results(loaded, *seed_tables(per_seed_rows(0.01)))
    assert results["met"].tolist() == [False, True]
    assert results["measured"].iloc[0] == pytest.approx(0.96)
    table = discussion.expectation_table(loaded, results)
    assert table["expected in advance"].tolist() == ["ResNet-50: mean ROC-AUC ≥ 0.97", "DenseNet-121: SD ROC-AUC ≤ 0.01"]
    assert table["met"].tolist() == ["no", "yes"]
    assert np.isfinite(results["measured"]).all()


def seed_tables(per_seed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summarise_seeds and summarise_differences (against ResNet-50 at the fixed policy) of per-seed rows."""
    differences = study.summarise_differences(study.seed_differences(per_seed, "resnet50", "fixed"))
    return study.summarise_seeds(per_seed), differences


def test_a_paired_intervals_half_width_is_an_expectation_of_the_compared_model(studies_dir):
    """The hope 'a paired ROC-AUC interval with half-width <= 0.004' is data: measured from the plan's interval."""
    expected = {"model": "densenet121", "metric": "roc_auc", "statistic": "half_width", "bound": "at_most"}
    loaded = plan.load_plan(write_plan(studies_dir, {**VALID, "expectations": [
        {**expected, "value": 0.004}, {**expected, "value": 0.01}]}))
    summary, differences = seed_tables(per_seed_rows(0.01))
    results = plan.expectation_results(loaded, summary, differences)
    row = differences[differences["model"] == "densenet121"].iloc[0]
    assert results["measured"].tolist() == pytest.approx([(row["ci_high"] - row["ci_low"]) / 2] * 2)
    assert 0.004 < results["measured"].iloc[0] < 0.01 and results["met"].tolist() == [False, True]
    assert discussion.expectation_table(loaded, results)["expected in advance"].iloc[0] == (
        "DenseNet-121 − ResNet-50: half-width of the 95% interval of ROC-AUC ≤ 0.004")
    with pytest.raises(plan.PlanError, match=r"expectations\[0\]\.model = 'resnet50': a half_width is of the paired "
                                             r"difference compared − reference; set model: densenet121"):
        plan.load_plan(write_plan(studies_dir, {**VALID, "expectations": [{**expected, "model": "resnet50",
                                                                           "value": 0.004}]}))


def test_a_plans_facts_reach_the_study_script_as_bash_assignments(studies_dir):
    """scripts/run_planned_study.sh evaluates python -m cxrlib.plan NAME; a bad plan stops it with the plan's error."""
    import subprocess
    import sys

    name = write_plan(studies_dir, {**VALID, "profile": "it's here", "records": "reports/it's here/runs"})
    facts = plan.shell_assignments(plan.load_plan(name))
    shown = subprocess.run(["bash", "-c", 'set -eu; eval "$FACTS"; echo "$document|$profile|$records|${seeds[2]}|'
                            '${#seeds[@]}|${archs[0]}>${archs[1]}"'], env={"FACTS": facts, "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "README.md|it's here|reports/it's here/runs|13|3|resnet50>densenet121"
    committed = subprocess.run([sys.executable, "-m", "cxrlib.plan", "exploratory-cpu"], capture_output=True,
                               text=True, check=True)
    assert "seeds=(1 2 3 4 5) archs=(resnet50 densenet121)" in committed.stdout
    missing = subprocess.run([sys.executable, "-m", "cxrlib.plan", "nope"], capture_output=True, text=True)
    assert missing.returncode == 1 and "error: no study plan studies/nope.yaml" in missing.stderr


def test_the_committed_factorial_plan_loads_and_trains_both_missing_cells():
    factorial = plan.load_factorial("factorial-cpu")
    assert factorial.seeds == plan.load_plan("confirmatory-cpu").seeds
    assert factorial.cells == {"resnet50": {"S": "confirmatory-cpu", "T": "factorial-cpu"},
                               "densenet121": {"S": "factorial-cpu", "T": "confirmatory-cpu"}}
    assert factorial.own_archs() == ("resnet50", "densenet121")
    assert [c.name for c in factorial.contrasts if c.role == "primary"] == ["architecture_T"]
    with pytest.raises(plan.PlanError, match="factorial-cpu.yaml is a factorial plan; read it with .*load_factorial"):
        plan.load_plan("factorial-cpu")


def test_a_valid_factorial_plan_loads(studies_dir):
    write_plan(studies_dir, VALID, name="other")
    loaded = plan.load_factorial(write_plan(studies_dir, FACTORIAL))
    assert loaded.own_archs() == ("resnet50", "densenet121") and plan.plan_kind("test") == "factorial"
    assert "archs=(resnet50 densenet121)" in plan.shell_assignments(loaded)


@pytest.mark.parametrize("change, message", [
    ({"cells": {"resnet50": {"S": "other", "T": "test"}}}, "cells must map each of resnet50, densenet121"),
    ({"cells": {"resnet50": {"S": "other"}, "densenet121": {"S": "test", "T": "other"}}},
     "cells.resnet50 = .* must name a study plan for each recipe"),
    ({"cells": {"resnet50": {"S": "nope", "T": "test"}, "densenet121": {"S": "test", "T": "other"}}},
     "cells.resnet50.S = 'nope' is not a study plan"),
    ({"contrasts": [{"name": "a", "role": "primary", "terms": {"densenet121/T": 1}}]}, "coefficients that sum to 0"),
    ({"contrasts": [{"name": "a", "role": "primary", "terms": {"vgg/T": 1, "resnet50/T": -1}}]},
     "must weigh cells of"),
    ({"contrasts": [{"name": "a", "role": "secondary", "terms": {"densenet121/T": 1, "resnet50/T": -1}}]},
     "exactly one with role: primary"),
    ({"contrasts": [{"name": "a", "role": "main", "terms": {}}]}, "role = 'main' is not one of"),
    ({"adjustment": "holm"}, "adjustment = 'holm' is not one of bonferroni"),
    ({"expectations": [{"of": "nothing", "metric": "roc_auc", "statistic": "mean", "bound": "at_least", "value": 1}]},
     "expectations\\[0\\] = .*give of"),
    ({"level": 95}, "confidence level"),
    ({"records": "reports/x/runs"}, "set records: reports/smoke/runs"),
    ({"celss": {}}, "unknown key 'celss' \\(did you mean 'cells'\\?\\)"),
])
def test_a_bad_factorial_plan_is_refused_naming_the_file_and_key(studies_dir, change, message):
    write_plan(studies_dir, VALID, name="other")
    with pytest.raises(plan.PlanError, match=message) as error:
        plan.load_factorial(write_plan(studies_dir, {**FACTORIAL, **change}))
    assert "test.yaml" in str(error.value)


def fake_run(arch: str, **config):
    """A Run with a training config (what recipe_sentence reads) and fake predictions."""
    from cxrlib import compare
    from helpers import fake_predictions

    shared = {"weights": None, "image_size": 96, "epochs": 8, "learning_rate": 0.001, "dropout": 0.5}
    return compare.Run(arch, arch, {"config": {**shared, **config}, "seed": 11}, fake_predictions(), 0.5)


def test_the_decision_says_each_models_recipe_up_front(studies_dir):
    mixed = discussion.recipe_sentence([fake_run("resnet50"), fake_run("densenet121", image_size=128, epochs=10)],
                                       tuned=("densenet121",))
    assert mixed == ("ResNet-50 at the shared recipe (96 px, 8 epochs) and DenseNet-121 at its tuned recipe (128 px, "
                     "10 epochs), both trained from scratch: the difference between them mixes architecture and recipe.")
    shared = discussion.recipe_sentence([fake_run("resnet50"), fake_run("densenet121")])
    assert shared == "Both models trained from scratch at one shared recipe (96 px, 8 epochs); only the architecture differs."
    loaded = plan.load_plan(write_plan(studies_dir, VALID))
    summary = study.summarise_differences(study.seed_differences(per_seed_rows(0.02), "resnet50", "fixed"))
    lead, details = discussion.decision(loaded, summary, mixed)
    assert details.startswith(mixed) and "from scratch" not in lead


def test_only_the_plans_comparison_gets_decision_words(studies_dir):
    per_seed = per_seed_rows(0.02)
    differences = pd.concat([study.seed_differences(per_seed, "resnet50", "fixed"),
                             study.seed_differences(per_seed, "densenet121", "fixed", models=["ensemble"])])
    summary = study.summarise_differences(differences)
    table = discussion.difference_table(summary, {("densenet121", "resnet50")})
    roles = dict(zip(table["comparison"] + " " + table["metric"], table["role"]))
    assert roles["DenseNet-121 − ResNet-50 ROC-AUC"] == "decides"
    assert roles["ensemble (mean) − DenseNet-121 ROC-AUC"] == "descriptive"
    assert "sign test p (smallest possible)" in table.columns
    tables = {"summary": study.summarise_seeds(per_seed), "difference_summary": summary}
    runs = [fake_run("resnet50"), fake_run("densenet121")]
    text = discussion.discussion(runs, tables, "fixed", "resnet50", {("densenet121", "resnet50")})
    ensemble_line = next(line for line in text.splitlines() if line.startswith("- ensemble (mean) − ResNet-50"))
    assert "better" not in ensemble_line and "descriptive" in ensemble_line


def test_a_decision_between_models_at_different_recipes_names_each_ones_recipe(studies_dir):
    loaded = plan.load_plan(write_plan(studies_dir, VALID))
    summary = study.summarise_differences(study.seed_differences(per_seed_rows(0.02), "resnet50", "fixed"))
    lead, _ = discussion.decision(loaded, summary, "", tuned=("densenet121",))
    assert lead == "Test study. ResNet-50 (the shared recipe) has the higher ROC-AUC."
