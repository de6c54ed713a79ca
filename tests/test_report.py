"""The report layer: number formats, the computed discussion, split and training seeds kept apart."""
import math

import pandas as pd
import pytest

from cxrlib import params, study
from cxrlib.contract import HEADLINE_METRICS, REPO_ROOT
from cxrlib.report import discussion
from cxrlib.report.format import (epoch_number, headline_table, markdown_table, mean_sd_range, model_title, number,
                                  p_value, readable, with_interval)
from cxrlib.report.training import shown_parameters
from helpers import missed_run

MISSED = {"resnet50": {1: 0, 2: 1, 3: 2}, "densenet121": {1: 1, 2: 1, 3: 3}}


@pytest.fixture
def runs():
    return [missed_run(arch, seed, missed) for arch, by_seed in MISSED.items() for seed, missed in by_seed.items()]


@pytest.fixture
def tables(runs):
    return study.seed_study(runs, primary="fixed", reference="resnet50")


# --- formats -------------------------------------------------------------------------------------------

def test_undefined_values_show_as_a_dash_never_nan():
    assert number(float("nan")) == "–" and number(None) == "–" and number(0.91234) == "0.912"
    assert with_interval(0.9, float("nan"), 0.95) == "0.900"
    assert with_interval(0.9, 0.85, 0.95) == "0.900 (0.850–0.950)"
    assert with_interval(-0.011, -0.02, -0.002) == "−0.011 (−0.020 to −0.002)"
    assert mean_sd_range(0.9, float("nan"), 0.9, 0.9) == "0.900"
    assert mean_sd_range(0.9, 0.01, 0.88, 0.91) == "0.900 ± 0.010 (0.880–0.910)"
    assert p_value(0.0004) == "< 0.001" and p_value(0.0625) == "0.062" and p_value(float("nan")) == "–"


def test_epochs_are_shown_counted_from_one_like_keras_logs():
    assert epoch_number(0) == 1 and epoch_number(6) == 7 and epoch_number(None) == "–"


def test_readable_tables_name_columns_and_models_and_hide_the_index():
    frame = pd.DataFrame({"model": ["densenet121", "ensemble"], "roc_auc": [0.9, float("nan")], "n_test": [1234, 5]})
    page = readable(frame).to_html()
    assert "DenseNet-121" in page and "ensemble (mean)" in page and "ROC-AUC" in page and "1,234" in page
    assert "nan" not in page.lower() and "–" in page and "roc_auc" not in page
    assert model_title("resnet50") == "ResNet-50"


def test_markdown_tables_read_like_the_pages_without_nan_or_exponents():
    frame = pd.DataFrame({"model": ["resnet50", "ensemble"], "params_total": [25_690_000, float("nan")],
                          "roc_auc": [0.95271, float("nan")]})  # the symptom of reports/seed43/cpu/comparison.md
    header, rule, *rows = markdown_table(frame).splitlines()
    cells = lambda line: [cell.strip() for cell in line.strip("|").split("|")]
    assert cells(header) == ["Model", "Parameters", "ROC-AUC"] and set(rule) <= set("|:-")
    assert cells(rows[0]) == ["ResNet-50", "25,690,000", "0.953"]
    assert cells(rows[1]) == ["ensemble (mean)", "–", "–"]


def test_comparison_markdown_is_the_headline_as_shown():
    statistics = {"mean": 0.9, "sd": float("nan"), "min": 0.9, "max": 0.9}  # one seed: no SD
    comparison = pd.DataFrame({"model": ["resnet50"], "seeds": [1],
                               **{f"{metric}_{stat}": [value] for metric in (*HEADLINE_METRICS, "threshold")
                                  for stat, value in statistics.items()}})
    text = markdown_table(headline_table(comparison))
    assert text.splitlines()[0].startswith("| Model") and "ROC-AUC" in text and "| ResNet-50 " in text
    assert "0.900" in text and "nan" not in text.lower() and "roc_auc" not in text


def test_readable_shows_a_meaningful_index_once():
    by_split = pd.DataFrame({"images": [10, 20]}, index=pd.Index(["train", "test"], name="split"))
    assert "Split" in readable(by_split).to_html() and "train" in readable(by_split).to_html()
    by_model = pd.DataFrame({"model": ["resnet50"], "seeds": [3]}, index=pd.Index(["resnet50"], name="model"))
    assert readable(by_model).data.columns.tolist() == ["Model", "Seeds"]


def test_shown_parameters_never_print_absolute_paths():
    shown = shown_parameters({"runs_dir": str(REPO_ROOT / "runs" / "cpu"), "data_dir": None, "epochs": 8,
                              "report_dir": str(REPO_ROOT / "reports" / "cpu.staging")})
    assert shown == {"runs_dir": "runs/cpu", "data_dir": None, "epochs": 8, "report_dir": "reports/cpu.staging"}


# --- seeds: the split seed and the training seed control different things ---------------------------------

def test_replicates_draw_their_split_from_their_own_seed_unless_split_seed_is_set():
    assert params.replicate_seeds({"seeds": [3, 5], "split_seed": None}) == [(3, 3), (5, 5)]
    assert params.replicate_seeds({"seeds": [3, 5], "split_seed": 9}) == [(3, 9), (5, 9)]
    values = params.train_config_values({name: 0 for name in params.TRAIN_CONFIG_PARAMETERS}, seed=3, split_seed=9)
    assert values["seed"] == 3 and values["split_seed"] == 9


@pytest.mark.parametrize("value, problem", [([], "non-empty list"), ([1, 1], "repeats a seed"), (3, "non-empty list"),
                                            ([1, -2], "not an integer in range"), ([True], "not an integer")])
def test_bad_seed_lists_are_rejected_with_the_fix(value, problem):
    with pytest.raises(params.ParameterError, match=problem) as err:
        params.check({"seeds": value}, source="profiles/x.yaml")
    assert "e.g. [42] or [1, 2, 3, 4, 5]" in str(err.value) and "profiles/x.yaml" in str(err.value)


# --- the discussion and its tables -------------------------------------------------------------------------

def test_headline_table_shows_mean_sd_and_range_across_seeds(tables):
    summary = tables["summary"][tables["summary"]["is_primary"]]
    accuracy = summary[(summary["model"] == "resnet50") & (summary["metric"] == "accuracy")].iloc[0]
    assert accuracy["mean"] == pytest.approx(0.9) and accuracy["sd"] == pytest.approx(0.1)
    assert discussion.across_seeds(accuracy) == "0.900 ± 0.100 (0.800–1.000)"


def test_difference_table_names_the_models_and_the_decision(tables):
    shown = discussion.difference_table(tables["difference_summary"])
    accuracy = shown[shown["metric"] == "accuracy"].iloc[0]
    assert accuracy["comparison"] == "DenseNet-121 − ResNet-50" and accuracy["seeds"] == 3
    assert accuracy["seeds won / lost"] == "0 / 2"  # seed 2 ties
    assert accuracy["mean difference (95% t-interval)"].startswith("−0.0667 (")
    assert accuracy["Wilcoxon p (smallest possible)"] == "0.5 (0.5)"  # two non-zero differences, both negative


def test_discussion_is_computed_from_the_results(runs, tables):
    text = discussion.discussion(runs, tables, "fixed", "resnet50")
    assert "3 seeds" in text and "fixed 0.5" in text and "from scratch" in text
    assert "accuracy 0.900 ± 0.100 (0.800–1.000)" in text  # ResNet-50
    assert "the interval includes 0, so the study detects no difference" in text
    assert "nan" not in text.lower()


def test_discussion_names_each_models_resolution_when_the_recipes_differ(runs, tables):
    assert "trained from scratch at 96×96 pixels, tested" in discussion.discussion(runs, tables, "fixed", "resnet50")
    for run in runs:
        if run.arch == "densenet121":
            run.info["config"] = {**run.info["config"], "image_size": 128}
    text = discussion.discussion(runs, tables, "fixed", "resnet50")
    assert ("trained ResNet-50 from scratch at 96×96 pixels, DenseNet-121 from scratch at 128×128 pixels, tested"
            in text)


def test_one_seed_discussion_says_there_is_no_interval_across_seeds():
    one = [missed_run("resnet50", 1, 0), missed_run("densenet121", 1, 2)]
    tables = study.seed_study(one, primary="fixed", reference="resnet50")
    text = discussion.discussion(one, tables, "fixed", "resnet50")
    assert "one seed: no interval across seeds" in text and "nan" not in text.lower()
    assert discussion.randomised_sources(one).startswith("One replicate (seed 1)")


def test_randomised_sources_says_whether_the_split_varied(runs):
    assert "each drew its own validation patients" in discussion.randomised_sources(runs)
    fixed_split = [missed_run("resnet50", seed, 0, split_seed=7) for seed in (1, 2)]
    assert "share one patient split (split seed 7)" in discussion.randomised_sources(fixed_split)


def test_pair_table_names_models_instead_of_a_and_b():
    pair = pd.DataFrame({"test": ["image-level McNemar exact"], "a": [0.9], "b": [0.8], "difference": [0.1],
                         "ci_low": [math.nan], "ci_high": [math.nan], "p_value": [0.03],
                         "note": ["discordant images: only a correct 20, only b correct 12"]})
    shown = discussion.pair_table(pair, "DenseNet-121", "ResNet-50")
    assert list(shown.columns[1:3]) == ["DenseNet-121", "ResNet-50"]
    assert shown["note"].iloc[0] == "discordant images: only DenseNet-121 right 20, only ResNet-50 right 12"


def test_paths_outside_the_repository_are_shown_relative_to_it_too():
    assert shown_parameters({"data_dir": str(REPO_ROOT.parent / "shared" / "data")}) == {"data_dir": "../shared/data"}


@pytest.mark.parametrize("profile, command", [("cpu", "--profile cpu --only 02"), ("interactive", "--profile smoke")])
def test_comparison_without_runs_names_a_command_that_works(tmp_path, profile, command):
    from cxrlib.report import comparison

    namespace = {"profile": profile, "data_dir": None, "runs_dir": str(tmp_path), "report_dir": str(tmp_path),
                 "threshold_policy": "fixed", "youden_delta": 0.02, "target_sensitivity": 0.95, "focus_seed": None, "study": None,
                 "n_boot": 10, "n_examples": 1, "sampling_seed": 1}
    with pytest.raises(FileNotFoundError, match=f"./run_all.sh {command}"):
        comparison.setup(namespace)


def test_seed_pair_row_names_the_level_of_each_test(runs):
    from cxrlib import compare

    densenet, resnet = runs[3], runs[0]  # seed 1 of each
    pair = compare.compare_pair(densenet, resnet, n_boot=50, seed=0)
    row = discussion.seed_pair_row(1, pair, "DenseNet-121", "ResNet-50")
    assert row["seed"] == 1 and row["comparison"] == "DenseNet-121 − ResNet-50"
    assert row["accuracy difference (patient 95% CI)"].startswith("−0.1000 (")
    assert set(row) >= {"image-level DeLong p", "image-level McNemar p"}


def test_parameters_are_shown_as_set_accepts_them():
    from cxrlib.report.format import parameters_text, value_text
    from cxrlib.runner.profiles import parse_overrides

    params = {"profile": "cpu", "data_dir": None, "seeds": [1, 2], "augment": True, "learning_rate": 0.001}
    assert parameters_text(params) == "profile=cpu, data_dir=null, seeds=[1, 2], augment=true, learning_rate=0.001"
    for name, value in params.items():
        assert parse_overrides([f"{name}={value_text(value)}"]) == {name: value}


def test_the_comparison_without_records_names_the_committed_study_to_read(tmp_path):
    from cxrlib.report import comparison
    from cxrlib.runner.profiles import load_profile, profile_path
    namespace = {name: value for name, value in load_profile(profile_path("smoke")).items()
                 if name in params.NOTEBOOK_PARAMETERS["compare"]}
    namespace.update(profile="smoke", report_dir=str(tmp_path / "empty"), runs_dir=str(tmp_path / "runs"))
    with pytest.raises(FileNotFoundError, match=r'report_dir = "\.\./reports/cpu"'):
        comparison.setup(namespace)


@pytest.mark.parametrize("name, value, shown", [
    ("weights", None, "none (from scratch)"), ("train_base", True, "yes"), ("augment", False, "no"),
    ("learning_rate", 0.000320526, "0.000321"), ("lr_schedule", "cosine", "cosine"),
    ("threshold_policy", "youden_midpoint", "Youden plateau midpoint"), ("seeds", [2001, 2002], "2001, 2002"),
    ("subsample_per_class", None, "all images"), ("split_seed", None, "the replicate's seed"),
    ("recipes", {"densenet121": {"image_size": 128, "learning_rate": 0.000320526}},
     "DenseNet-121: image size 128, learning rate 0.000321"),
])
def test_a_setting_reads_as_words_not_yaml(name, value, shown):
    from cxrlib.report.format import setting_text

    assert setting_text(name, value) == shown


def test_the_index_parameters_read_as_words_with_the_profile_file_for_exact_values(tmp_path):
    from cxrlib.runner import index
    from helpers import fabricated_record

    page = index.write_index(tmp_path, fabricated_record(), "A description.").read_text()
    parameters = page[page.index("Profile parameters of the last run"):]
    assert "null" not in parameters and "true" not in parameters
    assert "<th scope=\"row\">Learning rate</th><td>0.001</td>" in parameters
    assert "found by cxrlib" in parameters and "1, 2" in parameters


def test_columns_that_never_vary_become_a_sentence():
    from cxrlib.report.format import Table, without_constant_columns

    table = Table(["Model", "Seed", "Threshold", "Test images", "ROC-AUC"],
                  [["ResNet-50", "1", "0.500", "618", "0.960"], ["DenseNet-121", "1", "0.500", "618", "0.950"]])
    shown, same = without_constant_columns(table)
    assert shown.headers == ["Model", "ROC-AUC"]
    assert same == "The same in every row: seed 1; threshold 0.500; test images 618."
    single = Table(["Model", "Threshold"], [["ResNet-50", "0.500"]])
    assert without_constant_columns(single) == (single, "")
    assert mean_sd_range(0.5, 0.0, 0.5, 0.5) == "0.500"


def test_numbers_use_a_minus_sign_and_never_show_a_signed_zero_or_a_bare_p_of_1():
    from cxrlib.report.format import p_value

    assert number(-0.0064, 4) == "−0.0064" and number(-0.00001, 4) == "0.0000"
    assert discussion.signed(-0.00003) == "0.0000" and discussion.signed(0.0089) == "+0.0089"
    assert p_value(1.0) == "> 0.99" and p_value(0.45) == "0.45" and p_value(0.0001) == "< 0.001"


def test_within_group_notes_name_small_groups_the_pooled_gap_and_near_baseline_accuracy():
    from cxrlib.report.comparison import within_group_notes

    rows = pd.DataFrame([
        {"group": group, "model": model, "seed": seed, "roc_auc": auc, "accuracy": accuracy, "images": images,
         "always_pneumonia_accuracy": baseline}
        for seed in (1, 2)
        for group, model, auc, accuracy, images, baseline in [
            ("all", "resnet50", 0.96, 0.90, 618, 0.62), ("all", "densenet121", 0.97, 0.92, 618, 0.62),
            ("224×224", "resnet50", 0.90, 0.946, 300, 0.929), ("224×224", "densenet121", 0.93, 0.99, 300, 0.929),
            ("other sizes", "resnet50", 0.99, 0.80, 11, 0.27), ("other sizes", "densenet121", 0.99, 0.8, 11, 0.27)]])
    notes = within_group_notes(rows)
    assert "Too small to read (fewer than 30 test images): other sizes (11 images)." in notes
    assert "pooled ROC-AUC (all test images) is higher than its ROC-AUC within each group" in notes
    assert "In the 224×224 group ResNet-50's accuracy (0.946) is barely above always answering PNEUMONIA (0.929)." \
        in notes and "DenseNet-121's accuracy (0.990)" not in notes
