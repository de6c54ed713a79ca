"""The batch runner: profiles, notebook selection, stripping, index page, and keeping good results on failure."""
import json
import os
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cxrlib import runner

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_profile(path: Path, **params) -> Path:
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in params.items()))
    return path


def test_profile_path_resolves_names_and_lists_known_profiles(tmp_path):
    assert runner.profile_path("smoke") == REPO_ROOT / "profiles" / "smoke.yaml"
    custom = write_profile(tmp_path / "mine.yaml", seed=1)
    assert runner.profile_path(str(custom)) == custom
    with pytest.raises(runner.RunError, match=r"profile 'nope' not found.*cpu, full, smoke"):
        runner.profile_path("nope")


def test_load_profile_rejects_bad_values_runner_keys_and_non_mappings(tmp_path):
    bad = write_profile(tmp_path / "bad.yaml", epochs="three")
    with pytest.raises(runner.RunError, match=r"'epochs' = 'three' has type str.*bad\.yaml"):
        runner.load_profile(bad)
    with pytest.raises(runner.RunError, match=r"sets \['runs_dir'\]: the runner sets these"):
        runner.load_profile(write_profile(tmp_path / "paths.yaml", runs_dir="x"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(runner.RunError, match="must be a mapping"):
        runner.load_profile(tmp_path / "list.yaml")


def test_set_overrides_replace_profile_values_and_are_checked_like_them(tmp_path):
    profile = write_profile(tmp_path / "base.yaml", seed=1, epochs=2, augment=True)
    overrides = runner.parse_overrides(["seed=43", "augment=false", "lr_schedule = cosine"])
    assert overrides == {"seed": 43, "augment": False, "lr_schedule": "cosine"}
    assert runner.load_profile(profile, overrides) == {"seed": 43, "epochs": 2, "augment": False,
                                                       "lr_schedule": "cosine"}
    assert runner.load_profile(profile) == {"seed": 1, "epochs": 2, "augment": True}
    with pytest.raises(runner.RunError, match=r"--set 'seed': expected KEY=VALUE"):
        runner.parse_overrides(["seed"])
    with pytest.raises(runner.RunError, match=r"'epochs' = 'three' has type str.*base\.yaml or the --set values"):
        runner.load_profile(profile, runner.parse_overrides(["epochs=three"]))
    with pytest.raises(runner.RunError, match=r"unknown parameter 'seeed'.*did you mean 'seed'"):
        runner.load_profile(profile, {"seeed": 43})
    with pytest.raises(runner.RunError, match=r"sets \['report_dir'\]: the runner sets these"):
        runner.load_profile(profile, {"report_dir": "x"})


@pytest.mark.parametrize("name", ["full", "cpu", "smoke"])
def test_every_profile_key_is_declared_by_some_notebook(name):
    path = runner.profile_path(name)
    runner.check_profile_is_used(runner.load_profile(path), path)


def test_parameters_for_injects_only_what_a_notebook_declares():
    explore = REPO_ROOT / "notebooks" / "01_data_exploration.ipynb"
    params = runner.parameters_for(explore, {"seed": 3, "epochs": 2}, {"profile": "p", "runs_dir": "r"})
    assert params == {"seed": 3, "profile": "p"}


def test_only_selects_by_prefix_and_rejects_unknown():
    assert [nb.name for nb in runner.select_notebooks(["02"])] == ["02_train_resnet50.ipynb"]
    assert len(runner.select_notebooks(None)) == 4
    with pytest.raises(runner.RunError, match="--only 9 matches no notebook"):
        runner.select_notebooks(["9"])


def test_strip_notebook_removes_outputs_counts_and_execution_metadata():
    cell = new_code_cell("1 + 1", execution_count=3, outputs=[new_output("execute_result", {"text/plain": "2"})])
    cell.metadata["papermill"] = {"duration": 1.0}
    nb = new_notebook(cells=[new_markdown_cell("# hi"), cell], metadata={"papermill": {}})
    assert runner.strip_notebook(nb)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert "papermill" not in nb.metadata and "papermill" not in nb.cells[1].metadata
    assert not runner.strip_notebook(nb)


def test_runs_guard_restores_previous_runs_on_failure_and_drops_them_on_success(tmp_path):
    live = tmp_path / "runs" / "p"
    (live / "resnet50").mkdir(parents=True)
    (live / "resnet50" / "run.json").write_text("old")
    (live / "densenet121").mkdir()
    guard = runner.RunsGuard(live, ["resnet50"])
    guard.begin()
    assert not (live / "resnet50").exists() and (live / "densenet121").exists()
    (live / "resnet50").mkdir()
    (live / "resnet50" / "run.json").write_text("new, failed")
    guard.rollback()
    assert (live / "resnet50" / "run.json").read_text() == "old"
    assert (tmp_path / "runs" / "p-failed" / "resnet50" / "run.json").read_text() == "new, failed"
    guard.begin()
    (live / "resnet50").mkdir()
    (live / "resnet50" / "run.json").write_text("new")
    guard.commit()
    assert (live / "resnet50" / "run.json").read_text() == "new"
    assert not guard.previous.exists()


def test_runs_guard_recovers_after_an_interrupted_run(tmp_path):
    live = tmp_path / "p"
    (live / "resnet50").mkdir(parents=True)
    (live / "resnet50" / "run.json").write_text("old")
    runner.RunsGuard(live, ["resnet50"]).begin()
    (live / "resnet50").mkdir()  # partial output of a run that was killed
    runner.RunsGuard(live, []).begin()
    assert (live / "resnet50" / "run.json").read_text() == "old"


def test_headline_table_shows_metrics_with_confidence_intervals(tmp_path):
    pd.DataFrame({"model": ["resnet50"], "accuracy": [0.9], "accuracy_ci_low": [0.85],
                  "accuracy_ci_high": [0.95], "threshold": [0.42]}).to_csv(tmp_path / "c.csv", index=False)
    table = runner.headline_table(tmp_path / "c.csv")
    assert "0.900 (0.850–0.950)" in table and "0.420" in table
    assert "No comparison yet" in runner.headline_table(tmp_path / "missing.csv")


def test_wrong_parameter_type_exits_non_zero_with_a_clear_message(tmp_path):
    bad = write_profile(tmp_path / "bad.yaml", epochs="three")
    result = subprocess.run([str(REPO_ROOT / "run_all.sh"), "--profile", str(bad), "--reports-dir",
                             str(tmp_path / "reports"), "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "parameter 'epochs' = 'three' has type str: expected an integer" in result.stdout
    assert str(bad) in result.stdout
    assert not (tmp_path / "reports").exists() and not (tmp_path / "runs").exists()


# --- a real (tiny) run with the project kernel: success, then a failure that must keep the success ---------

def fake_notebooks(folder: Path, fail: bool) -> None:
    """Two tiny notebooks in the runner's layout: one 'training' into runs_dir/toy, one that may raise."""
    folder.mkdir(exist_ok=True)
    params = new_code_cell('profile = "x"\nruns_dir = "r"\nreport_dir = "d"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    train = new_code_cell("from pathlib import Path\nrun = Path(runs_dir) / 'toy'\nrun.mkdir(parents=True)\n"
                          "(run / 'seed.txt').write_text(str(seed))\nprint('trained', seed)")
    check = new_code_cell("from pathlib import Path\nimport pandas as pd\n"
                          + ("raise ValueError('boom at seed ' + str(seed))\n" if fail else "")
                          + "pd.DataFrame({'model': ['toy'], 'accuracy': [0.5]})"
                            ".to_csv(Path(report_dir) / 'comparison.csv', index=False)")
    for name, cells in (("01_train_toy.ipynb", [params, train]), ("02_check.ipynb", [params, check])):
        nb = new_notebook(cells=[new_markdown_cell("# toy"), *cells])
        nb.metadata["kernelspec"] = {"name": runner.KERNEL_NAME, "display_name": "x", "language": "python"}
        nbformat.write(nb, folder / name)


def test_failed_run_keeps_the_earlier_reports_and_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    fake_notebooks(tmp_path / "notebooks", fail=False)
    # e.g. the README edited while the notebooks ran: the record must name the code as it was at the start
    monkeypatch.setattr(runner, "git_commit", lambda: "abc1234-dirty" if list(runs.rglob("seed.txt")) else "abc1234")
    runner.run_profile(str(write_profile(tmp_path / "toy.yaml", seed=0)), None, reports, runs, overrides={"seed": 1})
    record = json.loads((reports / "toy" / "runner.json").read_text())
    assert record["commit"] == "abc1234"  # the code that ran
    assert record["overrides"] == {"seed": 1} and record["parameters"]["seed"] == 1
    index = (reports / "toy" / "index.html").read_text()
    assert "01_train_toy.html" in index and "0.500" in index and "peak memory" in index and "{&#x27;seed&#x27;: 1}" in index
    assert (reports / "toy" / "executed" / "02_check.ipynb").is_file()
    assert (runs / "toy" / "toy" / "seed.txt").read_text() == "1"

    fake_notebooks(tmp_path / "notebooks", fail=True)
    with pytest.raises(runner.RunError) as err:
        runner.run_profile(str(write_profile(tmp_path / "toy.yaml", seed=2)), None, reports, runs)
    message = str(err.value)
    assert "02_check.ipynb failed in cell In [" in message and "ValueError: boom at seed 2" in message
    assert (runs / "toy" / "toy" / "seed.txt").read_text() == "1"
    assert (runs / "toy-failed" / "toy" / "seed.txt").read_text() == "2"
    assert "seed = 1" in (reports / "toy" / "executed" / "01_train_toy.ipynb").read_text()
    assert "boom at seed 2" in (reports / "toy-failed" / "02_check.html").read_text()
    assert not (reports / "toy.staging").exists() and not (runs / "toy.previous").exists()
    assert sorted(os.listdir(reports)) == ["toy", "toy-failed"]


def test_default_profile_falls_back_to_cpu_loudly_without_imagenet_weights(monkeypatch, caplog):
    monkeypatch.setattr(runner, "imagenet_weights_available", lambda: False)
    assert runner.default_profile() == "cpu"
    assert "Running profile 'cpu'" in caplog.text and "NOT the study's protocol" in caplog.text
    monkeypatch.setattr(runner, "imagenet_weights_available", lambda: True)
    assert runner.default_profile() == "full"


def test_index_warns_when_a_model_was_retrained_after_the_comparison():
    notebooks = {"02_train_resnet50": {"finished": "2026-01-02T10:00:00"},
                 "04_compare_models": {"finished": "2026-01-01T10:00:00"}}
    assert runner.comparison_is_stale(notebooks)
    notebooks["04_compare_models"]["finished"] = "2026-01-03T10:00:00"
    assert not runner.comparison_is_stale(notebooks)
