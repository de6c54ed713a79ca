"""cxrlib.tune: search files are checked, the budget is exact (pruned trials count, lost ones run again, two
workers share one search), a seeded search is reproducible even when resumed, and no test image is ever read.

Bookkeeping tests use tests/tune_fakes.py (no training); one test trains real tiny models on a generated tree.
"""
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import write_tree
from optuna.trial import TrialState
from helpers import CHROMIUM
from tune_fakes import fake_train, objective_of

from cxrlib import evaluate
from cxrlib.contract import REPO_ROOT
from cxrlib import params as params_module
from cxrlib.params import check, read_profile, train_config_values
from cxrlib.tune import SearchError, adoption, ledger, load_search, recipe, report, results, worker
from cxrlib.report.format import display_table
from cxrlib.tune.__main__ import NOT_FINISHED, main

TESTS_DIR = Path(__file__).parent
SPACE = {
    "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "lr_schedule": {"type": "categorical", "choices": ["cosine", "plateau"]},
    "epochs": {"type": "int", "low": 1, "high": 2},
}


def search_file(folder: Path, **changes) -> Path:
    """A small search on the smoke profile; `changes` replace top-level keys (None deletes one)."""
    declaration = {"name": "t", "base_profile": "smoke", "archs": ["resnet50", "densenet121"], "split_seed": 100,
                   "training_seed": 100, "objective": "balanced_log_loss", "trials_per_arch": 4,
                   "sampler": {"seed": 3, "startup_trials": 2}, "pruner": {"min_epochs": 1, "reduction_factor": 2},
                   "stale_after_minutes": 60, "rerun_seeds": [101], "space": SPACE}
    declaration.update(changes)
    declaration = {key: value for key, value in declaration.items() if value is not None}
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(declaration, sort_keys=False))
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A tiny tree whose test folder holds only files no decoder can read; CXR_DATA_DIR points at it."""
    root = write_tree(tmp_path / "chest_xray", per_class={"train": 12, "val": 2, "test": 4})
    for path in (root / "test").rglob("*.jpeg"):
        path.write_bytes(b"not an image: a search must never open this file")
    monkeypatch.setenv("CXR_DATA_DIR", str(root))
    return root


def params_by_arch(spec, storage) -> dict:
    """Each architecture's search trials' parameters, in trial order."""
    return {arch: [trial.params for trial in ledger.load(spec, storage, arch).get_trials(deepcopy=False)]
            for arch in spec.archs}


def quiet(*args, **kwargs):
    """A log function that prints nothing."""


# ------------------------------------------------------------------ the search file


@pytest.mark.parametrize("changes, expected", [
    ({"trials_per_arch": None}, "key 'trials_per_arch' is missing"),
    ({"trails_per_arch": 3}, "did you mean 'trials_per_arch'"),
    ({"archs": ["resnet50", "vgg16"]}, "archs = ['resnet50', 'vgg16'] must be"),
    ({"objective": "roc_auc"}, "objective = 'roc_auc' must be one of balanced_log_loss"),
    ({"rerun_seeds": [100]}, "other than training_seed"),
    ({"pruner": {"min_epochs": 0, "reduction_factor": 3}}, "pruner ="),
    ({"base_profile": "nope"}, "base_profile = 'nope' names no file in profiles/"),
    ({"space": {"seed": {"type": "int", "low": 1, "high": 3}}}, "space.seed: 'seed' cannot be searched"),
    ({"space": {"dropout": {"type": "float", "low": 0.0, "high": 0.99}}}, "which dropout does not accept"),
    ({"space": {"learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, "a log scale needs"),
    ({"space": {"epochs": {"type": "int", "low": 5, "high": 2}}}, "needs int bounds low < high"),
    ({"space": {"lr_schedule": {"type": "categorical", "choices": ["cosine"]}}}, "at least two distinct values"),
    ({"space": {"dropout": {"low": 0.0, "high": 0.5}}}, "needs type: one of float, int, categorical"),
])
def test_a_bad_search_file_is_rejected_naming_the_key_and_the_fix(tmp_path, changes, expected):
    path = search_file(tmp_path, **changes)
    with pytest.raises(SearchError) as raised:
        load_search(path)
    assert expected in str(raised.value)
    assert "; fix it in " in str(raised.value) and "search.yaml" in str(raised.value)


def test_a_search_file_that_is_not_a_mapping_or_not_yaml_is_rejected(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("- a list\n")
    with pytest.raises(SearchError, match="must be a mapping"):
        load_search(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(SearchError, match="not valid YAML"):
        load_search(path)
    with pytest.raises(SearchError, match="not found at searches/absent.yaml"):
        load_search("absent")


def test_the_committed_cpu_search_declares_the_same_space_and_budget_for_both_architectures():
    spec = load_search("cpu")
    assert spec.archs == ("resnet50", "densenet121") and spec.objective == "balanced_log_loss"
    assert spec.split_seed not in range(1, 6) and spec.split_seed not in (42, 43)
    assert {d.name for d in spec.space} >= {"learning_rate", "weight_decay", "label_smoothing", "augment_strength",
                                           "dropout", "epochs", "image_size"}


# ------------------------------------------------------------------ budget, pruning, reproducibility


def test_each_architecture_gets_exactly_its_budget_with_pruned_trials_counted(tree, tmp_path):
    spec = load_search(search_file(tmp_path, trials_per_arch=6))
    storage = ledger.open_storage(spec, str(tmp_path / "journal.log"))
    worker.work(spec, storage, log=quiet, train_fn=fake_train)
    trials = results.trials_frame(spec, storage)
    search = trials[trials["kind"] == "search"]
    assert search.groupby("arch")["state"].apply(lambda s: s.isin(["COMPLETE", "PRUNED"]).sum()).to_dict() == \
        {"resnet50": 6, "densenet121": 6}
    assert (search["state"] == "PRUNED").any(), "successive halving pruned nothing"
    pruned = search[search["state"] == "PRUNED"]
    assert (pruned["epochs_run"] < pruned["param_epochs"]).all()
    assert ledger.is_finished(spec, storage)


def test_a_seeded_search_asks_the_same_configurations_when_run_again_or_resumed_trial_by_trial(tree, tmp_path):
    spec = load_search(search_file(tmp_path))
    whole = ledger.open_storage(spec, str(tmp_path / "whole.log"))
    worker.work(spec, whole, log=quiet, train_fn=fake_train)
    resumed = ledger.open_storage(spec, str(tmp_path / "resumed.log"))
    while worker.work(spec, ledger.open_storage(spec, str(tmp_path / "resumed.log")), max_trials=1, log=quiet,
                      train_fn=fake_train):
        pass
    assert params_by_arch(spec, whole) == params_by_arch(spec, resumed)
    other_seed = load_search(search_file(tmp_path, sampler={"seed": 4, "startup_trials": 2}))
    other = ledger.open_storage(other_seed, str(tmp_path / "other.log"))
    worker.work(other_seed, other, log=quiet, train_fn=fake_train)
    assert params_by_arch(other_seed, other) != params_by_arch(spec, whole)


def test_reruns_train_the_best_configuration_and_the_base_recipe_with_their_seeds(tree, tmp_path):
    spec = load_search(search_file(tmp_path, rerun_seeds=[101, 102]))
    storage = ledger.open_storage(spec, str(tmp_path / "journal.log"))
    worker.work(spec, storage, log=quiet, train_fn=fake_train)
    trials = results.trials_frame(spec, storage)
    for arch in spec.archs:
        search = trials[(trials["arch"] == arch) & (trials["kind"] == "search") & (trials["state"] == "COMPLETE")]
        best = search.loc[search["value"].idxmin()]
        reruns = trials[(trials["arch"] == arch) & (trials["kind"] == "rerun")]
        tuned, base = reruns[reruns["recipe"] == "tuned"], reruns[reruns["recipe"] == "base"]
        assert sorted(tuned["training_seed"]) == [101, 102] and sorted(base["training_seed"]) == [100, 101, 102]
        assert np.allclose(tuned["param_learning_rate"], best["param_learning_rate"])
        assert (base["param_learning_rate"] == spec.base_params["learning_rate"]).all()
        assert np.allclose(tuned["value"], objective_of({"learning_rate": best["param_learning_rate"],
                                                          "dropout": best["param_dropout"]}))


def test_a_trial_beyond_the_budget_is_refused_before_it_trains(tree, tmp_path):
    spec = load_search(search_file(tmp_path, trials_per_arch=2))
    study = ledger.load(spec, ledger.open_storage(spec, str(tmp_path / "journal.log")), "resnet50")
    numbers = [study.ask().number for _ in range(3)]
    assert [ledger.beyond_budget(study, number, 2) for number in numbers] == [False, False, True]


def test_status_says_whether_work_remains_and_export_writes_the_trials_table(tree, tmp_path, capsys):
    path, journal = search_file(tmp_path, trials_per_arch=2, rerun_seeds=[]), str(tmp_path / "journal.log")
    assert main(["status", str(path), "--storage", journal]) == NOT_FINISHED
    spec = load_search(path)
    worker.work(spec, ledger.open_storage(spec, journal), log=quiet, train_fn=fake_train)
    assert main(["status", str(path), "--storage", journal]) == 0
    assert "resnet50: 2/2 trials counted" in capsys.readouterr().out
    written = results.write_trials(spec, ledger.open_storage(spec, journal), tmp_path / "record")
    table = pd.read_csv(written)
    assert len(table) == 2 * (2 + 1) and {"cpu_seconds", "cpu", "code", "param_learning_rate"} <= set(table)


# ------------------------------------------------------------------ several workers, lost workers


def worker_process(search: Path, journal: Path, tree: Path, epoch_seconds: float) -> subprocess.Popen:
    """A worker in its own process on the shared journal, training with the fake."""
    code = ("import sys; from tune_fakes import fake_train; from cxrlib.tune import ledger, load_search, worker; "
            f"spec = load_search({str(search)!r}); "
            f"worker.work(spec, ledger.open_storage(spec, {str(journal)!r}), train_fn=fake_train)")
    env = {**os.environ, "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{REPO_ROOT}", "CXR_DATA_DIR": str(tree),
           "FAKE_EPOCH_SECONDS": str(epoch_seconds)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.mark.slow
def test_two_worker_processes_share_one_search_and_finish_with_exactly_the_budget(tree, tmp_path):
    path, journal = search_file(tmp_path, trials_per_arch=5, rerun_seeds=[101]), tmp_path / "journal.log"
    workers = [worker_process(path, journal, tree, epoch_seconds=0.2) for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in workers]
    assert all(process.returncode == 0 for process in workers), outputs
    spec = load_search(path)
    trials = results.trials_frame(spec, ledger.open_storage(spec, str(journal)))
    counted = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert counted[counted["kind"] == "search"].groupby("arch").size().to_dict() == {"resnet50": 5, "densenet121": 5}
    assert counted[counted["kind"] == "rerun"].groupby("arch").size().to_dict() == {"resnet50": 3, "densenet121": 3}
    assert not counted.duplicated(["arch", "kind", "number"]).any()
    reruns = counted[counted["kind"] == "rerun"]
    assert not reruns.duplicated(["arch", "recipe", "training_seed"]).any(), "a rerun ran twice"
    storage = ledger.open_storage(spec, str(journal))
    pids = {trial.user_attrs[ledger.WORKER].rsplit("/", 1)[1] for arch in spec.archs
            for trial in ledger.load(spec, storage, arch).get_trials(deepcopy=False, states=ledger.COUNTED)}
    assert pids == {str(process.pid) for process in workers}, "both workers ran search trials"


@pytest.mark.slow
def test_a_trial_lost_with_its_worker_runs_again_with_the_same_configuration_and_counts_once(tree, tmp_path):
    path, journal = search_file(tmp_path, trials_per_arch=3, rerun_seeds=[]), tmp_path / "journal.log"
    spec = load_search(path)
    process = worker_process(path, journal, tree, epoch_seconds=30)  # slow: killed during its first trial
    storage = ledger.open_storage(spec, str(journal))
    deadline = time.time() + 120
    while time.time() < deadline:
        running = ledger.load(spec, storage, "resnet50").get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running and ledger.WORKER in running[0].user_attrs:
            break
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the worker never started a trial: " + process.communicate()[0][-3000:])
    lost = running[0]
    process.send_signal(signal.SIGKILL)
    process.wait()
    worker.work(spec, ledger.open_storage(spec, str(journal)), log=quiet, train_fn=fake_train)
    trials = ledger.load(spec, storage, "resnet50").get_trials(deepcopy=False)
    failed = [t for t in trials if t.number == lost.number][0]
    assert failed.state == TrialState.FAIL and failed.user_attrs[ledger.FAILURE].startswith("lost")
    retry = [t for t in trials if t.user_attrs.get(ledger.RETRY_OF) == lost.number]
    assert len(retry) == 1 and retry[0].params == lost.params and retry[0].state in ledger.COUNTED
    assert sum(t.state in ledger.COUNTED for t in trials) == 3


# ------------------------------------------------------------------ real training: the objective, and no test image


@pytest.mark.slow
def test_a_real_search_trial_is_scored_on_validation_and_never_reads_a_test_image(tree, tmp_path, monkeypatch):
    opened = []
    real_facts, real_load = worker.data.index.read_image_facts, worker.data.pipeline.load_image
    monkeypatch.setattr(worker.data.index, "read_image_facts", lambda path: opened.append(str(path)) or real_facts(path))
    monkeypatch.setattr(worker.data.pipeline, "load_image",
                        lambda path, size: opened.append(str(path)) or real_load(path, size))
    monkeypatch.setattr(worker, "RUNS_DIR", tmp_path / "runs")
    path = search_file(tmp_path, archs=["resnet50"], trials_per_arch=1, rerun_seeds=[],
                       space={"learning_rate": SPACE["learning_rate"], "epochs": {"type": "int", "low": 1, "high": 2}})
    spec = load_search(path)
    storage = ledger.open_storage(spec, str(tmp_path / "journal.log"))
    assert worker.work(spec, storage, log=quiet) == 2  # the search trial and the base recipe's rerun
    assert opened and not [p for p in opened if f"{os.sep}test{os.sep}" in p], "a test image was opened"
    trial = ledger.load(spec, storage, "resnet50").get_trials(deepcopy=False)[0]
    run_dir = tmp_path / "runs" / "tune-t" / "resnet50" / f"search-{trial.number}"
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert set(predictions["subset"]) == {"val"}
    val = predictions[predictions["subset"] == "val"]
    assert trial.value == pytest.approx(evaluate.balanced_log_loss(val["target"], val["prob"]))
    assert set(trial.intermediate_values) == set(range(1, trial.params["epochs"] + 1))
    assert not (run_dir / "model.keras").exists(), "a trial's model files are deleted"
    assert "ood" not in json.loads((run_dir / "run.json").read_text()), "a search trial fits no OOD detector"
    assert trial.user_attrs["cpu_seconds"] > 0 and trial.user_attrs["cpu"]


def test_the_search_frame_refuses_rows_from_outside_the_train_folder(tree, tmp_path, monkeypatch):
    spec = load_search(search_file(tmp_path))
    frame, _ = worker.tuning_frame(spec)
    assert set(frame["split"]) == {"train"} and set(frame["subset"]) == {"train", "val"}
    monkeypatch.setattr(worker.data, "replicate_frame", lambda images, params, seed: frame.assign(split="test"))
    with pytest.raises(RuntimeError, match="may only read the train folder"):
        worker.tuning_frame(spec)



# ------------------------------------------------------------------ the product: report and tuned profile


def test_a_finished_search_writes_its_report_and_a_tuned_profile_the_runner_accepts(tree, tmp_path):
    spec = load_search(search_file(tmp_path, rerun_seeds=[101, 102]))
    storage = ledger.open_storage(spec, str(tmp_path / "journal.log"))
    worker.work(spec, storage, log=quiet, train_fn=fake_train)
    page = report.write_report(spec, storage, tmp_path / "record").read_text()
    assert "The search is finished" in page and "ResNet-50: the search&#39;s best trial" in page
    assert "test images were never read" in page
    for figure in ("search_history.png", "quality_vs_cpu.png"):
        assert (tmp_path / "record" / figure).stat().st_size > 1000
    profile = recipe.write_tuned_profile(spec, storage, tmp_path / "smoke-tuned.yaml")
    params = check(read_profile(profile))
    assert "# expected minutes: 2-core CPU" in profile.read_text()
    assert set(yaml.safe_load(profile.read_text())) == {"extends", "study", "recipes"}  # only what differs
    for arch in spec.archs:
        best = ledger.best_values(ledger.load(spec, storage, arch))
        tuned = train_config_values(params, seed=1, split_seed=1, arch=arch)
        assert tuned["learning_rate"] == pytest.approx(best["learning_rate"], rel=1e-5)
        assert tuned["lr_schedule"] == best["lr_schedule"] and tuned["epochs"] == best["epochs"]
    assert train_config_values(params, seed=1, split_seed=1)["learning_rate"] == spec.base_params["learning_rate"]


def test_the_tuned_profile_does_not_inherit_the_base_profiles_study_plan(tree, tmp_path, monkeypatch):
    spec = load_search(search_file(tmp_path, rerun_seeds=[101, 102]))
    storage = ledger.open_storage(spec, str(tmp_path / "journal.log"))
    worker.work(spec, storage, log=quiet, train_fn=fake_train)
    base = (recipe.PROFILES_DIR / f"{spec.base_profile}.yaml").read_text()
    planned = shutil.copytree(recipe.PROFILES_DIR, tmp_path / "profiles")  # the profiles the base extends
    (planned / f"{spec.base_profile}.yaml").write_text(base.replace("\nstudy: null", "\nstudy: exploratory-cpu"))
    assert "\nstudy: exploratory-cpu" in (planned / f"{spec.base_profile}.yaml").read_text()
    monkeypatch.setattr(recipe, "PROFILES_DIR", planned)
    monkeypatch.setattr(params_module, "PROFILES_DIR", planned)
    profile = recipe.write_tuned_profile(spec, storage, tmp_path / "tuned.yaml")
    assert read_profile(profile)["study"] is None and read_profile(spec.base_profile)["study"] == "exploratory-cpu"
    assert "exploratory-cpu" not in profile.read_text()


def test_an_unfinished_search_reports_interim_numbers_and_names_no_best_configuration_too_early(tree, tmp_path):
    path, journal = search_file(tmp_path), str(tmp_path / "journal.log")
    spec = load_search(path)
    worker.work(spec, ledger.open_storage(spec, journal), max_trials=1, log=quiet, train_fn=fake_train)
    page = report.write_report(spec, ledger.open_storage(spec, journal), tmp_path / "record").read_text()
    assert "every number below is interim" in page
    with pytest.raises(ValueError, match="no complete trial"):
        ledger.best_values(ledger.load(spec, ledger.open_storage(spec, journal), "densenet121"))


def test_the_trials_tables_read_as_a_page_in_the_budget_tables_words():
    trials = pd.DataFrame({"arch": ["resnet50"] * 4 + ["densenet121"], "kind": ["search"] * 4 + ["rerun"],
                           "number": [0, 1, 2, 3, 0], "state": ["COMPLETE", "PRUNED", "FAIL", "COMPLETE", "COMPLETE"],
                           "value": [0.0855, 0.5, np.nan, 0.1, 0.13], "recipe": [None] * 4 + ["base"],
                           "training_seed": [1000.0] * 4 + [1001.0], "epochs_run": [8.0, 3.0, np.nan, 8.0, 8.0],
                           "best_epoch": [4.0, np.nan, np.nan, 8.0, 7.0], "val_auc": [0.99, np.nan, np.nan, 0.99, 0.98],
                           "cpu_seconds": [120.0, 60.0, np.nan, 130.0, 90.0], "cpu": ["AMD EPYC (avx512_bf16)"] * 5,
                           "failure": [None, None, "lost: worker vm/84ffed74/5813 stopped", None, None],
                           "retry_of": [np.nan, np.nan, np.nan, 2.0, np.nan],
                           "param_learning_rate": [0.00146123, 0.001, 0.002, 0.002, 0.001],
                           "param_weight_decay": [6.711e-05, 0.0, 0.1, 0.1, 0.0], "param_epochs": [8, 12, 8, 8, 8]})
    search = display_table(report.search_trials_table(trials, "resnet50", ["learning_rate", "weight_decay", "epochs"]))
    assert search.headers == ["Trial", "State", "Validation balanced log loss", "Best epoch", "Learning rate",
                              "Weight decay", "Epochs run of planned"]
    assert search.rows[0] == ["0", "complete", "0.0855", "4", "0.00146", "0.0000671", "8 of 8"]
    assert [row[1] for row in search.rows] == ["complete", "pruned", "lost and run again (trial 3)",
                                               "complete (retry of trial 2)"]  # the budget table's words
    assert search.rows[1][3] == "–" and search.rows[1][-1] == "3 of 12"
    assert not [cell for row in search.rows for cell in row if "worker" in cell or "fail" in cell]
    reruns = display_table(report.rerun_trials_table(trials))
    assert reruns.rows == [["DenseNet-121", "0", "shared", "1001", "complete", "0.1300", "7", "8", "0.980", "2"]]


def test_trials_csv_and_the_page_count_epochs_from_1(tree, tmp_path):
    spec = load_search(search_file(tmp_path, rerun_seeds=[101]))
    storage = ledger.open_storage(spec, str(tmp_path / "journal.log"))
    worker.work(spec, storage, log=quiet, train_fn=fake_train)  # the fake's best epoch is its last: run.json's epochs - 1
    csv = pd.read_csv(results.write_trials(spec, storage, tmp_path / "record"))
    complete = csv[csv["state"] == "COMPLETE"]
    assert (complete["best_epoch"] == complete["epochs_run"]).all()
    journal = [t.user_attrs["best_epoch"] for t in ledger.load(spec, storage, "resnet50").get_trials(deepcopy=False)
               if t.state == TrialState.COMPLETE]
    assert journal == list(complete[(complete["arch"] == "resnet50") & (complete["kind"] == "search")]["best_epoch"] - 1)
    page = report.write_report(spec, storage, tmp_path / "record").read_text()
    assert "<strong>Epochs count from 1</strong>, here and in trials.csv" in page
    names = [d.name for d in spec.space]
    for arch in spec.archs:
        shown = display_table(report.search_trials_table(csv, arch, names))
        column = shown.headers.index("Best epoch")
        in_csv = csv[(csv["arch"] == arch) & (csv["kind"] == "search")]["best_epoch"]
        assert [row[column] for row in shown.rows] == ["–" if pd.isna(v) else str(int(v)) for v in in_csv]


COMMITTED_SEARCH = REPO_ROOT / "reports" / "tune-cpu"


def test_the_objective_axis_stops_below_a_diverged_trial_and_names_it_in_the_legend():
    from cxrlib import plots

    trials = pd.read_csv(COMMITTED_SEARCH / "trials.csv")
    searched = trials[(trials["kind"] == "search") & trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert searched["value"].max() == pytest.approx(4.147, abs=0.001)
    for figure in (plots.plot_search_history(trials, "balanced_log_loss"),
                   plots.plot_quality_vs_cost(trials, "balanced_log_loss")):
        legends = " ".join(text.get_text() for ax in figure.axes for text in ax.get_legend().get_texts())
        assert "4.15 (trial 1)" in legends and "1.42 (trial 2)" in legends and "0.88 (trial 16)" in legends
        for ax in figure.axes:
            bottom, top = ax.get_ylim()
            assert ax.get_yscale() == "log" and bottom < searched["value"].min() and 0.3 < top < 0.8, (bottom, top)


def test_the_committed_plans_say_which_recipes_each_study_took_from_the_search():
    spec = load_search("cpu")
    tuned = yaml.safe_load((REPO_ROOT / "profiles" / "cpu-tuned.yaml").read_text())["recipes"]
    found = {study.plan_file.stem: study for study in adoption.adoptions(spec, tuned, {"resnet50": 3, "densenet121": 6})}
    assert set(found) == {"confirmatory-cpu", "factorial-cpu"}  # the exploratory study trains the shared recipe only
    confirmatory = found["confirmatory-cpu"]
    assert confirmatory.recipes == {"resnet50": "the shared recipe", "densenet121": "its tuned recipe (trial 6)"}
    assert confirmatory.document == REPO_ROOT / "docs" / "CONFIRMATORY.md"
    assert confirmatory.report == REPO_ROOT / "reports" / "cpu-confirmatory" / "index.html"
    factorial = found["factorial-cpu"]
    assert factorial.recipes == {"resnet50": "DenseNet-121's tuned recipe (trial 6)", "densenet121": "the shared recipe"}
    assert factorial.document == REPO_ROOT / "docs" / "FACTORIAL.md" and factorial.report is None


@pytest.fixture(scope="module")
def committed_search_page(tmp_path_factory):
    """The cpu search's report rendered from a copy of its committed journal (nothing trained) in a folder of its own."""
    directory = tmp_path_factory.mktemp("reports") / "tune-cpu"
    directory.mkdir()
    shutil.copy(COMMITTED_SEARCH / "journal.log", directory / "journal.log")
    spec = load_search("cpu")
    storage = ledger.open_storage(spec, str(directory / "journal.log"))
    results.write_trials(spec, storage, directory)
    return report.write_report(spec, storage, directory)


def test_the_search_page_names_what_the_studies_adopted_and_the_winners_curse(committed_search_page):
    page = html.unescape(committed_search_page.read_text())
    assert ("Confirmatory study</strong> (seven replicates, each architecture at its own recipe) trains ResNet-50 at "
            "the shared recipe and DenseNet-121 at its tuned recipe (trial 6)") in page
    assert "ResNet-50's best trial did not hold up on fresh seeds (0.2051 against the shared recipe's 0.1394)" in page
    assert "scored 0.2051 on fresh seeds 1001, 1002 (their mean) and 0.1652 ± 0.0823 (seeds 1000–1002) with the " \
           "winning trial included, a mean biased low" in page
    assert "The winner's curse." in page and "lowest among 6 (ResNet-50) and 4 (DenseNet-121) complete trials" in page
    assert ("ResNet-50's trials 6 (128 px, 0.0958) and 17 (128 px, 0.1113) also scored below the shared recipe's "
            "0.1302 on seed 1000 and were never trained again") in page
    assert "Indicative only." in page and "6 (ResNet-50) and 4 (DenseNet-121) complete trials over 8" in page
    assert "lost and run again (trial 3)" in page and "lost: worker" not in page


def test_the_search_page_links_the_plans_the_declaration_and_the_studies_and_every_link_resolves(committed_search_page):
    page = committed_search_page.read_text()
    directory = committed_search_page.parent
    links = {(directory / link).resolve() for link in re.findall(r'(?:href|src)="([^"#:]+)"', page)}
    for target in ("docs/CONFIRMATORY.md", "studies/confirmatory-cpu.yaml", "docs/FACTORIAL.md",
                   "studies/factorial-cpu.yaml", "searches/cpu.yaml", "reports/cpu-confirmatory/index.html"):
        assert REPO_ROOT / target in links, target
    assert [link for link in links if not link.exists()] == []
    bar = re.search(r'<header class="cxr-bar">.*?</header>', page, re.S).group(0)
    assert 'class="cxr-home" href="' in bar and 'rel="next"' in bar, bar


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium)")
def test_the_search_page_fits_a_laptop(committed_search_page):
    """At 1,280 px no table scrolls sideways and no figure is wider than the text column."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(committed_search_page.as_uri())
        scrolling = page.evaluate("""() => [...document.querySelectorAll('.table-wrap')]
            .filter(wrap => wrap.scrollWidth > wrap.clientWidth).map(wrap => wrap.textContent.slice(0, 80))""")
        widths = page.evaluate("""() => [document.querySelector('main').clientWidth,
            ...[...document.images].map(image => image.getBoundingClientRect().width)]""")
        browser.close()
    assert scrolling == []
    assert max(widths[1:]) <= widths[0] and len(widths) == 4
