"""The batch runner: profiles and --set, the default profile and durations, notebooks, the console and run.log,
the report transaction and --retrain, rendering (paths, alt texts, header bars), runner.json and index.html."""
import base64
import io
import json
import logging
import os
import re
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from cxrlib.contract import REPO_ROOT, repo_relative
from cxrlib import runtime
from helpers import fabricated_record, local_links
from cxrlib.report.format import column_label, display_table
from cxrlib.runner import KERNEL_NAME, RunError, console, index, machine, notebooks, pages, profiles, render, run
from cxrlib.runner.machine import Machine
from cxrlib.runner.transaction import ReportStaging, RetrainGuard, check_dirs

NOTEBOOKS = REPO_ROOT / "notebooks"


def write_profile(path: Path, header: str = "", **params) -> Path:
    path.write_text(header + "".join(f"{key}: {json.dumps(value)}\n" for key, value in params.items()))
    return path


# --- profiles, --set, default profile, expected duration ---------------------------------------------------

def test_profile_path_resolves_names_and_lists_known_profiles(tmp_path):
    assert profiles.profile_path("smoke") == REPO_ROOT / "profiles" / "smoke.yaml"
    custom = write_profile(tmp_path / "mine.yaml", sampling_seed=1)
    assert profiles.profile_path(str(custom)) == custom
    with pytest.raises(RunError, match=r"profile 'nope' not found at profiles/nope\.yaml.*cpu, cpu-confirmatory, cpu-factorial, cpu-tuned, full, smoke"):
        profiles.profile_path("nope")


def test_load_profile_rejects_bad_values_runner_keys_and_non_mappings(tmp_path):
    bad = write_profile(tmp_path / "bad.yaml", epochs="three")
    with pytest.raises(RunError, match=r"'epochs' = 'three' has type str.*bad\.yaml"):
        profiles.load_profile(bad)
    with pytest.raises(RunError, match=r"sets \['runs_dir'\]: the runner sets these"):
        profiles.load_profile(write_profile(tmp_path / "paths.yaml", runs_dir="x"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(RunError, match="must be a mapping"):
        profiles.load_profile(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("sampling_seed: [1\n")
    with pytest.raises(RunError, match="broken.yaml is not valid YAML"):
        profiles.load_profile(tmp_path / "broken.yaml")


def test_set_overrides_replace_profile_values_and_are_checked_like_them(tmp_path):
    profile = write_profile(tmp_path / "base.yaml", sampling_seed=1, epochs=2, augment=True)
    overrides = profiles.parse_overrides(["sampling_seed=43", "augment=false", "lr_schedule = cosine"])
    assert overrides == {"sampling_seed": 43, "augment": False, "lr_schedule": "cosine"}
    assert profiles.load_profile(profile, overrides) == {"sampling_seed": 43, "epochs": 2, "augment": False,
                                                         "lr_schedule": "cosine"}
    assert profiles.load_profile(profile) == {"sampling_seed": 1, "epochs": 2, "augment": True}
    with pytest.raises(RunError, match=r"--set 'sampling_seed': expected KEY=VALUE"):
        profiles.parse_overrides(["sampling_seed"])
    with pytest.raises(RunError, match=r"--set 'sampling_seed=\[1': the value is not valid YAML"):
        profiles.parse_overrides(["sampling_seed=[1"])
    with pytest.raises(RunError, match=r"'epochs' = 'three' has type str.*base\.yaml or the --set values"):
        profiles.load_profile(profile, profiles.parse_overrides(["epochs=three"]))
    with pytest.raises(RunError, match=r"unknown parameter 'sampling_sed'.*did you mean 'sampling_seed'"):
        profiles.load_profile(profile, {"sampling_sed": 43})
    with pytest.raises(RunError, match=r"sets \['report_dir'\]: the runner sets these"):
        profiles.load_profile(profile, {"report_dir": "x"})


@pytest.mark.parametrize("name", ["full", "cpu", "smoke"])
def test_every_profile_is_used_by_the_notebooks_and_states_its_expected_minutes(name):
    path = profiles.profile_path(name)
    notebooks.check_profile_is_used(profiles.load_profile(path), path, notebooks.select_notebooks(None))
    labels = set(profiles.expected_minutes(path))
    assert "GPU" in labels and any(label.startswith("2-core CPU") for label in labels), labels
    assert "expected minutes" not in profiles.profile_description(path)


def test_expected_duration_is_the_measured_minutes_of_this_kind_of_machine(tmp_path):
    minutes = 41.6  # fabricated: the announcement must follow whatever the profile measured
    path = write_profile(tmp_path / "p.yaml", f"# expected minutes: 2-core CPU {minutes}, GPU unmeasured\n",
                         sampling_seed=1)
    assert profiles.expected_minutes(path) == {"2-core CPU": minutes, "GPU": None}
    assert profiles.expected_duration(path, Machine(2, False)) == (
        f"about {round(minutes)} min on this machine (2-core CPU, no GPU)")
    assert profiles.expected_duration(path, Machine(2, True)) == (
        f"not measured on this machine (2-core CPU, a GPU) (measured: {round(minutes)} min on a 2-core CPU)")


def test_expected_duration_follows_this_cpus_vector_extension(tmp_path):
    header = "# expected minutes: 2-core CPU avx512_bf16 48, 2-core CPU avx2 76, GPU unmeasured\n"
    path = write_profile(tmp_path / "p.yaml", header, sampling_seed=1)
    assert profiles.expected_duration(path, Machine(2, False, vector="avx512_bf16")) == (
        "about 48 min on this machine (2-core CPU with avx512_bf16, no GPU)")
    assert profiles.expected_duration(path, Machine(2, False, vector="avx2")).startswith("about 76 min")
    assert profiles.expected_duration(path, Machine(2, False, vector="avx512f")) == (
        "not measured on this machine (2-core CPU with avx512f, no GPU) (measured: 48 min on a 2-core CPU with "
        "avx512_bf16; 76 min on a 2-core CPU with avx2)")
    generic = write_profile(tmp_path / "g.yaml", "# expected minutes: 2-core CPU avx2 76, 2-core CPU 60\n",
                            sampling_seed=1)
    assert profiles.expected_duration(generic, Machine(2, False, vector="avx512_bf16")).startswith("about 60 min")
    assert profiles.expected_duration(generic, Machine(2, False, vector="avx2")).startswith("about 76 min")


def test_the_runner_knows_this_machines_cpu_kind():
    assert machine.look().vector in (*runtime.VECTOR_FLAGS, "no avx2")


def test_expected_duration_says_when_this_machine_was_not_measured(tmp_path):
    header = "# For tests.\n# expected minutes: 2-core CPU 76, 8-core CPU 30.5, GPU unmeasured\n"
    path = write_profile(tmp_path / "p.yaml", header, sampling_seed=1)
    assert profiles.expected_minutes(path) == {"2-core CPU": 76.0, "8-core CPU": 30.5, "GPU": None}
    assert profiles.expected_duration(path, Machine(8, False)) == "about 30 min on this machine (8-core CPU, no GPU)"
    assert profiles.expected_duration(path, Machine(4, True)) == (
        "not measured on this machine (4-core CPU, a GPU) (measured: 76 min on a 2-core CPU; 30 min on a 8-core CPU)")
    assert profiles.profile_description(path) == "For tests."
    assert profiles.expected_minutes(write_profile(tmp_path / "none.yaml", sampling_seed=1)) == {}
    bad = write_profile(tmp_path / "bad.yaml", "# expected minutes: laptop 20\n", sampling_seed=1)
    with pytest.raises(RunError, match=r"bad\.yaml: expected-minutes entry 'laptop 20' is not understood.*2-core CPU avx2 76"):
        profiles.expected_minutes(bad)


@pytest.mark.parametrize("found, expected, reason", [
    (Machine(2, True, True), "full", "a GPU is visible and ImageNet weights are available"),
    (Machine(2, False), "cpu", "because no GPU is visible"),
    (Machine(2, True, False), "cpu", "because ImageNet weights are neither in the Keras cache"),
])
def test_default_profile_is_full_only_with_a_gpu_and_imagenet_weights(found, expected, reason):
    name, line = profiles.default_profile(found)
    assert name == expected and reason in line
    assert "\n" not in line and "!!" not in line and line.startswith("No --profile given")


def test_machine_probe_asks_tensorflow_only_when_a_gpu_device_exists(monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        assert kwargs["env"]["TF_CPP_MIN_LOG_LEVEL"] == "2"
        return subprocess.CompletedProcess(command, 0, stdout='noise\n{"gpus": 1, "imagenet_weights": true}\n')

    monkeypatch.setattr(machine.subprocess, "run", fake_run)
    monkeypatch.setattr(machine, "gpu_device_present", lambda: False)
    assert machine.look(probe=True) == Machine(machine.cpu_cores(), False, vector=runtime.widest_vector_flag()) and not calls
    monkeypatch.setattr(machine, "gpu_device_present", lambda: True)
    assert machine.look(probe=False) == Machine(machine.cpu_cores(), True, vector=runtime.widest_vector_flag()) and not calls
    assert machine.look(probe=True) == Machine(machine.cpu_cores(), True, True, runtime.widest_vector_flag())
    assert calls[0][1:] == ["-m", "cxrlib.runner.machine"]

    def failing_run(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="ImportError: no tensorflow")

    monkeypatch.setattr(machine.subprocess, "run", failing_run)
    with pytest.raises(RunError, match="ImportError: no tensorflow.*pass --profile cpu or --profile full"):
        machine.look(probe=True)


def test_gpu_device_check_looks_for_device_files(monkeypatch, tmp_path):
    monkeypatch.setattr(machine.sys, "platform", "linux")
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    monkeypatch.setattr(machine, "GPU_DEVICE_FILES", (str(tmp_path / "nvidiactl"),))
    assert not machine.gpu_device_present()
    (tmp_path / "nvidiactl").touch()
    assert machine.gpu_device_present()


# --- notebooks ----------------------------------------------------------------------------------------------

def test_parameters_for_injects_only_what_a_notebook_declares():
    explore = NOTEBOOKS / "01_data_exploration.ipynb"
    params = notebooks.parameters_for(explore, {"sampling_seed": 3, "epochs": 2}, {"profile": "p", "runs_dir": "r"})
    assert params == {"sampling_seed": 3, "profile": "p"}


def test_only_selects_by_prefix_and_rejects_unknown():
    assert [nb.name for nb in notebooks.select_notebooks(["02"])] == ["02_train_resnet50.ipynb"]
    assert len(notebooks.select_notebooks(None)) == 4
    with pytest.raises(RunError, match="--only 9 matches no notebook in notebooks: 01_data"):
        notebooks.select_notebooks(["9"])


def test_notebook_kind_comes_from_the_declared_parameters_not_the_file_name():
    kinds = [notebooks.notebook_kind(nb) for nb in notebooks.select_notebooks(None)]
    assert kinds == ["explore", "train", "train", "compare"]


def test_notebook_title_prefers_a_heading_the_code_displayed(tmp_path):
    shown = new_code_cell("x", outputs=[new_output("display_data", {"text/markdown": "# Training **ResNet-50**"})])
    nb = new_notebook(cells=[new_markdown_cell("# Training one architecture\n\n## Setup"), shown])
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert notebooks.notebook_title(tmp_path / "a.ipynb") == "Training ResNet-50"
    nbformat.write(new_notebook(cells=[new_markdown_cell("## [Only](x.html) a section")]), tmp_path / "b.ipynb")
    assert notebooks.notebook_title(tmp_path / "b.ipynb") == "b"
    assert notebooks.markdown_headings("## [Only](x.html) a `section`") == [(2, "Only a section")]


def test_strip_notebook_removes_outputs_counts_and_execution_metadata():
    cell = new_code_cell("1 + 1", execution_count=3, outputs=[new_output("execute_result", {"text/plain": "2"})])
    cell.metadata.update(papermill={"duration": 1.0}, execution={"iopub.status.busy": "x"}, tags=["keep"])
    markdown = new_markdown_cell("# hi")
    markdown.metadata["papermill"] = {"status": "completed"}
    nb = new_notebook(cells=[markdown, cell], metadata={"papermill": {}, "kernelspec": {"name": "k", "display_name": "k"}})
    assert notebooks.strip_notebook(nb)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert nb.cells[1].metadata == {"tags": ["keep"]} and nb.cells[0].metadata == {}
    assert "papermill" not in nb.metadata and nb.metadata.kernelspec.name == "k"
    assert not notebooks.strip_notebook(nb)


# --- console and run.log ----------------------------------------------------------------------------------

def record(name: str, message: str, level: int = logging.INFO, **extra) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "msg": message, "levelno": level,
                                  "levelname": logging.getLevelName(level), **extra})


def shown_on(verbose: bool, *records: logging.LogRecord) -> str:
    stream = io.StringIO()
    screen = console.Console(stream, verbose)
    screen.setFormatter(logging.Formatter("%(message)s"))
    for item in records:
        screen.handle(item)
    return stream.getvalue()


KERNEL_CHATTER = [
    record("papermill", "Executing Cell 3---------------------------------------"),
    record("papermill", "Input Notebook:  /work/main/notebooks/02_train_resnet50.ipynb"),
    record("papermill", "Epoch 1/8\n150/150 - 301s - 2s/step - accuracy: 0.81 - loss: 0.43 - val_loss: 0.38\n"),
    record("papermill", "\r 12/150 ━━━━ 30s - loss: 0.61\rEpoch 3: ReduceLROnPlateau reducing learning rate\n"),
    record("papermill", "TqdmWarning: IProgress not found", logging.WARNING),
    record("cxrlib.runner.kernel", "[IPKernelApp] WARNING | Kernel is running over TCP without encryption."),
    record("cxrlib.runner.kernel", "W0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized"),
    record("cxrlib.runner", "[2/4] 02_train_resnet50"),
    record("traitlets", "Alternative text is missing on 1 image(s).", logging.WARNING),
]


def test_console_shows_the_runner_and_epoch_lines_and_hides_the_rest():
    shown = shown_on(False, *KERNEL_CHATTER)
    assert shown.splitlines() == [
        "    Epoch 1/8", "    150/150 - 301s - 2s/step - accuracy: 0.81 - loss: 0.43 - val_loss: 0.38",
        "    Epoch 3: ReduceLROnPlateau reducing learning rate", "[2/4] 02_train_resnet50",
        "Alternative text is missing on 1 image(s)."]


def test_verbose_console_shows_everything():
    shown = shown_on(True, *KERNEL_CHATTER)
    for item in KERNEL_CHATTER:
        assert item.getMessage() in shown


def test_progress_line_off_a_terminal_is_printed_every_interval_and_at_the_end():
    now = [0.0]
    stream = io.StringIO()
    screen = console.Console(stream, interval=60, clock=lambda: now[0])
    progress = console.Progress(2, 4, "02_train_resnet50", clock=lambda: now[0])
    cells = new_notebook(cells=[new_code_cell("a"), new_code_cell(""), new_markdown_cell("m"), new_code_cell("b")])
    for step, seconds in ((lambda: progress.notebook_started(cells), 0), (progress.cell_executed, 30),
                          (progress.cell_executed, 751), (progress.finish, 2468)):
        now[0] = seconds
        step()
        screen.handle(record("cxrlib.runner.progress", progress.line(), progress=progress))
    assert stream.getvalue().splitlines() == ["[2/4] 02_train_resnet50  cell 2/2  12:31 elapsed",
                                              "[2/4] 02_train_resnet50  done in 41:08"]
    assert progress.cells_total == 2


def test_progress_line_on_a_terminal_is_redrawn_in_place_under_new_messages():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    screen = console.Console(stream)
    screen.setFormatter(logging.Formatter("%(message)s"))
    progress = console.Progress(1, 1, "01_data", cells_total=5, cells_done=2, clock=lambda: 75.0)
    progress.started = 0.0
    screen.handle(record("cxrlib.runner.progress", "", progress=progress))
    screen.handle(record("papermill", "Epoch 1/2\n"))
    assert stream.getvalue() == ("\r\x1b[K[1/1] 01_data  cell 2/5  1:15 elapsed"
                                 "\r\x1b[K    Epoch 1/2\n[1/1] 01_data  cell 2/5  1:15 elapsed")


def test_run_log_keeps_everything_but_the_progress_records(tmp_path):
    with console.run_log(tmp_path / "run.log"):
        logging.getLogger("papermill").info("Executing Cell 1---")
        console.KERNEL_LOG.info("absl::InitializeLog noise")
        console.PROGRESS_LOG.info("cell 1/2", extra={"progress": object()})
        logging.getLogger("cxrlib.runner").info("[1/1] x")
    logging.getLogger("papermill").info("after the block")
    text = (tmp_path / "run.log").read_text()
    assert "Executing Cell 1---" in text and "absl::InitializeLog noise" in text and "[1/1] x" in text
    assert "cell 1/2" not in text and "after the block" not in text


def test_elapsed_text():
    assert [console.elapsed_text(s) for s in (0, 59.9, 751, 3751)] == ["0:00", "0:59", "12:31", "1:02:31"]


# --- the report transaction and --retrain -------------------------------------------------------------------

def test_report_staging_keeps_earlier_records_and_swaps_in_only_on_success(tmp_path):
    final = tmp_path / "reports" / "p"
    (final / "runs" / "resnet50" / "seed-1").mkdir(parents=True)
    (final / "runs" / "resnet50" / "seed-1" / "run.json").write_text("kept")
    (final / "index.html").write_text("old")
    staging = ReportStaging(final)
    work = staging.begin()
    assert (work / "runs" / "resnet50" / "seed-1" / "run.json").read_text() == "kept" and (work / "executed").is_dir()
    (work / "index.html").write_text("failed run")
    staging.fail()
    assert (final / "index.html").read_text() == "old" and (staging.failed / "index.html").read_text() == "failed run"
    (staging.begin() / "index.html").write_text("new")
    staging.commit()
    assert (final / "index.html").read_text() == "new" and (final / "runs" / "resnet50" / "seed-1").is_dir()
    assert not staging.failed.exists() and not staging.staging.exists()


def test_report_staging_recovers_reports_from_an_interrupted_swap(tmp_path):
    final = tmp_path / "p"
    (tmp_path / "p.old").mkdir()
    (tmp_path / "p.old" / "index.html").write_text("old")
    assert (ReportStaging(final).begin() / "index.html").read_text() == "old"
    assert (final / "index.html").read_text() == "old"


def test_retrain_guard_moves_the_profiles_runs_aside_and_restores_them_on_failure(tmp_path):
    live = tmp_path / "runs" / "p"
    (live / "resnet50" / "seed-1").mkdir(parents=True)
    (live / "resnet50" / "seed-1" / "run.json").write_text("old")
    guard = RetrainGuard(live)
    guard.begin()
    assert not live.exists()
    (live / "resnet50" / "seed-1").mkdir(parents=True)
    (live / "resnet50" / "seed-1" / "run.json").write_text("new, failed")
    guard.rollback()
    assert (live / "resnet50" / "seed-1" / "run.json").read_text() == "old"
    assert (tmp_path / "runs" / "p-failed" / "resnet50" / "seed-1" / "run.json").read_text() == "new, failed"
    guard.begin()
    (live / "densenet121").mkdir(parents=True)
    guard.commit()
    assert sorted(os.listdir(live)) == ["densenet121"] and not guard.previous.exists()


def test_retrain_guard_recovers_the_runs_of_an_interrupted_retrain(tmp_path):
    live = tmp_path / "p"
    (live / "resnet50").mkdir(parents=True)
    RetrainGuard(live).begin()
    (live / "partial").mkdir(parents=True)  # what a killed --retrain run had written
    RetrainGuard(live).recover()
    assert sorted(os.listdir(live)) == ["resnet50"] and (tmp_path / "p-failed" / "partial").is_dir()
    RetrainGuard(live).recover()  # nothing left aside: nothing happens
    assert sorted(os.listdir(live)) == ["resnet50"]


def test_check_dirs_refuses_overlapping_or_repository_holding_folders(tmp_path):
    check_dirs(tmp_path / "reports" / "p", tmp_path / "runs" / "p")
    with pytest.raises(RunError, match="overlap"):
        check_dirs(tmp_path / "x" / "p", tmp_path / "x" / "p" / "p")
    with pytest.raises(RunError, match=r"--runs-dir .* contains the repository"):
        check_dirs(tmp_path / "reports" / "p", REPO_ROOT.parent)


# --- pages, index.html and runner.json ------------------------------------------------------------------------

def test_display_table_is_readable():
    frame = pd.DataFrame({"model": ["resnet50", "ensemble"], "accuracy": [0.9, 0.91], "accuracy_ci_low": [0.85, np.nan],
                          "accuracy_ci_high": [0.95, np.nan], "params_total": [25686913.0, np.nan],
                          "train_time_s": [2397.937, np.nan], "sensitivity_sd": [0.0123, 0.02]})
    table = display_table(frame)
    assert table.headers == ["Model", "Accuracy", "Parameters", "Training time (s)", "Sensitivity SD"]
    assert table.rows[0] == ["ResNet-50", "0.900 (0.850–0.950)", "25,686,913", "2,398", "0.012"]
    assert table.rows[1] == ["ensemble (mean)", "0.910", "–", "–", "0.020"]
    whole = display_table(pd.DataFrame({"sensitivity": [0.0, 1.0], "seed": [1, 2], "latency_ms": [42.3, 9.0]}))
    assert whole.rows == [["0.000", "1", "42.30"], ["1.000", "2", "9.00"]]  # a column reads alike
    seeds = display_table(pd.DataFrame({"seed": [2001, 10000], "split seed": [None, 2002], "n_test": [1234, 618]}))
    assert seeds.rows == [["2001", "–", "1,234"], ["10000", "2002", "618"]]  # a seed is a name, a count a quantity
    assert column_label("some_new_column") == "Some new column"


def test_shown_path_is_repo_relative_or_named_by_what_it_is(tmp_path):
    assert pages.shown_path(REPO_ROOT / "runs" / "cpu") == "runs/cpu"
    assert pages.shown_path(tmp_path / "runs" / "cpu", "[runs dir]/cpu") == "[runs dir]/cpu"
    assert pages.shown_path(tmp_path / "mine.yaml") == "mine.yaml"


def seed_study_comparison() -> pd.DataFrame:
    frame = pd.DataFrame({"model": ["resnet50", "densenet121", "ensemble"], "seeds": [2, 2, 2]})
    for metric in ("roc_auc", "accuracy", "sensitivity", "specificity", "threshold"):
        frame[f"{metric}_mean"], frame[f"{metric}_sd"] = [0.91, 0.92, 0.93], [0.01, 0.02, np.nan]
        frame[f"{metric}_min"], frame[f"{metric}_max"] = [0.9, 0.9, 0.93], [0.92, 0.94, 0.93]
    return frame


def test_index_shows_readable_tables_the_roc_figure_and_resolvable_links(tmp_path):
    for stem in ("01_data_exploration", "02_train_resnet50", "04_compare_models"):
        (tmp_path / f"{stem}.html").write_text("report")
    for name in ("run.log", "runner.json", "comparison.html"):
        (tmp_path / name).write_text("x")
    Image.new("RGB", (20, 10), "white").save(tmp_path / "roc_curves.png")
    seed_study_comparison().to_csv(tmp_path / "comparison.csv", index=False)
    pd.DataFrame({"model": ["resnet50", "resnet50"], "seed": [1, 1], "policy": ["fixed", "youden"],
                  "is_primary": [True, False], "threshold": [0.5, 0.31], "roc_auc": [0.9612, 0.9612],
                  "n_test": [1624, 1624]}).to_csv(tmp_path / "seeds.csv", index=False)
    page = index.write_index(tmp_path, fabricated_record(), "From scratch on a CPU.").read_text()
    assert "0.910\u00a0±\u00a00.010 (0.900–\u20600.920)" in page  # breaks only before the interval
    assert '<th scope="col" class="word">ROC-AUC</th>' in page
    assert "ResNet-50" in page and "ensemble (mean)" in page and "0.930<" in page
    assert 'src="roc_curves.png" width="10" height="5"' in page and 'alt="ROC curves' in page  # half its pixels
    assert "fixed 0.5" in page and "0.961" in page and "1,624" in page and "0.310" not in page
    assert "2,930 MB" in page and "1 h 16 min" in page and "26 Nov 2026, 02:21" in page
    assert "38ecd93 (modified)" in page and "-dirty" not in page and "sampling_seed=43" in page
    assert "<th scope=\"row\">Seeds</th><td>1, 2</td>" in page and "null" not in page
    assert "NaN" not in page and "nan<" not in page and "train_time_s" not in page and "roc_auc" not in page
    assert 'class="cxr-bar"' in page and 'href="01_data_exploration.html"' in page
    assert all((tmp_path / link).is_file() for link in local_links(page)), local_links(page)


def test_index_without_a_comparison_says_how_to_make_one_and_shows_notes(tmp_path):
    record = fabricated_record(note="No --profile given: using 'cpu'.", code_version={"commit": "abc1234",
                                                                                       "modified": False})
    record["notebooks"]["02_train_resnet50"]["finished"] = "2026-11-27T00:00:00"  # retrained after 04
    page = index.write_index(tmp_path, record, "").read_text()
    assert "No comparison yet" in page and "No --profile given: using &#39;cpu&#39;." in page
    assert "comparison below is out of date" in page and "abc1234</code>" in page and "(modified)" not in page
    assert not (set(local_links(page)) - {"run.log", "runner.json"})  # no link to a report that is absent


def test_index_shows_an_older_comparison_with_bootstrap_intervals(tmp_path):
    pd.DataFrame({"model": ["resnet50"], "accuracy": [0.9], "accuracy_ci_low": [0.85], "accuracy_ci_high": [0.95],
                  "threshold": [0.42]}).to_csv(tmp_path / "comparison.csv", index=False)
    table, meaning = index.headline(tmp_path)
    assert table.rows == [["ResNet-50", "0.900 (0.850–0.950)", "0.420"]] and "bootstrap" in meaning


def test_comparison_is_stale_when_a_training_notebook_finished_after_it():
    notebooks_run = {"02_train_resnet50": {"kind": "train", "finished": "2026-01-02T10:00:00"},
                     "04_compare_models": {"kind": "compare", "finished": "2026-01-01T10:00:00"},
                     "05_extra": {"finished": "2026-01-05T10:00:00"}}  # an entry from an older runner.json
    assert index.comparison_is_stale(notebooks_run)
    notebooks_run["04_compare_models"]["finished"] = "2026-01-03T10:00:00"
    assert not index.comparison_is_stale(notebooks_run)


def test_code_version_is_the_commit_with_modified_spelled_out(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "journal.log").write_text("trial 1")
    subprocess.run([*git, "add", "a.txt", "reports"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    version = runtime.code_version(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7,}", version["commit"]) and not version["modified"]
    (tmp_path / "untracked.txt").write_text("ignored")
    (tmp_path / "reports" / "journal.log").write_text("trial 2")  # records of a running search are outputs
    assert not runtime.code_version(tmp_path)["modified"]
    (tmp_path / "a.txt").write_text("2")
    assert runtime.version_text(runtime.code_version(tmp_path)) == f"{version['commit']} (modified)"
    assert runtime.code_version(tmp_path / "not-a-repo") == {"commit": "unknown", "modified": False}


def test_the_comparison_page_shows_comparison_csv_with_a_header_bar(tmp_path):
    assert index.write_comparison_page(tmp_path) is None  # no comparison.csv: no page
    seed_study_comparison().to_csv(tmp_path / "comparison.csv", index=False)
    (tmp_path / "comparison.md").write_text("| model |")
    page = index.write_comparison_page(tmp_path).read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>Comparison</title>" in page
    assert 'href="index.html"' in page and 'href="comparison.csv"' in page and 'href="comparison.md"' in page
    assert "Sensitivity" in page and "±" in page and "–" in page and "NaN" not in page  # mean ± SD (min–max)
    (tmp_path / "comparison.md").write_text("# Comparison: Test study\n\nTest set; threshold fixed 0.5.\n\n| model |")
    page = index.write_comparison_page(tmp_path).read_text()
    assert "<h1>Comparison: Test study</h1>" in page and '<p class="lead">Test set; threshold fixed 0.5.</p>' in page


# --- rendering: paths, alt texts, figure size, header bar ------------------------------------------------------

def png_bytes(size: int, noisy: bool) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8) if noisy else \
        np.full((size, size, 3), 255, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_output(png: bytes, **metadata):
    return new_output("display_data", {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"},
                      metadata=metadata)


def executed_notebook(folder: Path, stem: str, staging: Path, runs: Path) -> Path:
    cells = [new_markdown_cell("# Training one architecture"),
             new_code_cell("setup", outputs=[
                 new_output("display_data", {"text/markdown": "# Training ResNet-50"}),
                 new_output("stream", name="stdout", text=f"runs in {runs}/resnet50, report in {staging}\n"
                                                          f"code in {REPO_ROOT}/cxrlib, home {Path.home()}/x\n"
                                                          f"printed as {repo_relative(runs)}\n")]),
             new_markdown_cell("## Training history"),
             new_code_cell("plot", outputs=[figure_output(png_bytes(8, False)), figure_output(png_bytes(8, False)),
                                            figure_output(png_bytes(8, False), alt="Loss per epoch")]),
             new_code_cell("fail", outputs=[new_output("error", ename="ValueError", evalue=f"bad {runs}",
                                                       traceback=[f"File {REPO_ROOT}/cxrlib/x.py", f"ValueError: bad {runs}"])])]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), folder / f"{stem}.ipynb")
    return folder / f"{stem}.ipynb"


def test_rendered_report_has_a_header_bar_alt_texts_and_no_local_paths(tmp_path):
    staging, runs = tmp_path / "reports" / "p.staging", tmp_path / "runs" / "p"
    for stem in ("01_a", "02_b", "03_c"):
        executed_notebook(staging / "executed", stem, staging, runs)
    replacements = render.scrub_map({staging: "[reports dir]/p", runs: "[runs dir]/p"})
    pages_made = render.render_all(staging, "p", replacements)
    assert [page.name for page in pages_made] == ["01_a.html", "02_b.html", "03_c.html"]
    page = (staging / "02_b.html").read_text()
    assert '<a class="cxr-home" href="index.html">cxr-compare reports · profile p</a>' in page
    assert 'href="01_a.html" rel="prev"' in page and 'href="03_c.html" rel="next"' in page
    assert 'rel="prev"' not in (staging / "01_a.html").read_text()
    assert "<title>Training ResNet-50</title>" in page
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', page)
    assert alts == ["Figure: Training history (Training ResNet-50)", "Figure 2: Training history (Training ResNet-50)",
                    "Loss per epoch"]
    assert "No description has been provided" not in page and "require.js" not in page
    assert "runs in [runs dir]/p/resnet50, report in [reports dir]/p" in page
    assert "code in cxrlib, home ~/x" in page and "bad [runs dir]/p" in page and "File cxrlib/x.py" in page
    assert f"printed as {repo_relative(runs)}" not in page and "printed as [runs dir]/p" in page
    assert str(tmp_path) not in page and ".staging" not in page and str(REPO_ROOT) not in page


def test_scrub_map_also_replaces_repo_relative_staging_paths():
    staging = REPO_ROOT / "reports" / "cpu.staging"
    replacements = render.scrub_map({staging: "reports/cpu"})
    scrub = render.ScrubPaths(replacements=replacements).scrub
    assert scrub("written to reports/cpu.staging/comparison.csv") == "written to reports/cpu/comparison.csv"
    assert scrub(f"{staging}/x and {REPO_ROOT}") == "reports/cpu/x and ."


def test_large_png_figures_become_jpeg_and_small_ones_stay(tmp_path):
    big, small = png_bytes(400, noisy=True), png_bytes(8, noisy=False)
    assert len(big) > render.LARGE_FIGURE_BYTES
    cell = new_code_cell("x", outputs=[figure_output(big, **{"image/png": {"width": 300}}), figure_output(small)])
    render.ShrinkFigures().preprocess_cell(cell, {}, 0)
    large, kept = cell.outputs
    assert "image/png" not in large.data and large.metadata == {"image/jpeg": {"width": 300}}
    assert len(base64.b64decode(large.data["image/jpeg"])) < len(big)
    assert Image.open(io.BytesIO(base64.b64decode(large.data["image/jpeg"]))).size == (300, 300)
    assert "image/png" in kept.data


# --- the runner end to end with the project kernel: toy notebooks ------------------------------------------

def fake_notebooks(folder: Path, fail: bool) -> None:
    """Two tiny notebooks in the runner's layout: one 'training' into runs_dir/toy, one that may raise."""
    folder.mkdir(exist_ok=True)
    params = new_code_cell('profile = "x"\nruns_dir = "r"\nreport_dir = "d"\nsampling_seed = 0')
    params.metadata["tags"] = ["parameters"]
    train = new_code_cell("import os\nfrom pathlib import Path\nrun = Path(runs_dir) / 'toy'\n"
                          "run.mkdir(parents=True, exist_ok=True)\n(run / 'seed.txt').write_text(str(sampling_seed))\n"
                          "os.write(2, b'fd-level kernel output\\n')\nprint('Epoch 1/1')\n"
                          "print('trained', sampling_seed)")
    check = new_code_cell("from pathlib import Path\nimport pandas as pd\n"
                          + ("raise ValueError('boom at seed ' + str(sampling_seed))\n" if fail else "")
                          + "pd.DataFrame({'model': ['toy'], 'accuracy': [0.5]})"
                            ".to_csv(Path(report_dir) / 'comparison.csv', index=False)")
    for name, title, cells in (("01_train_toy.ipynb", "# Toy training", [params, train]),
                               ("02_check.ipynb", "# Toy check", [params, check])):
        nb = new_notebook(cells=[new_markdown_cell(title), *cells])
        nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "x", "language": "python"}
        nbformat.write(nb, folder / name)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Toy notebooks and a profile; the screen (a Console on a buffer) sees what a terminal would."""
    fake_notebooks(tmp_path / "notebooks", fail=False)
    stream = io.StringIO()
    screen = console.Console(stream)
    screen.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(screen)
    yield {"notebooks": tmp_path / "notebooks", "reports": tmp_path / "reports", "runs": tmp_path / "runs",
           "profile": str(write_profile(tmp_path / "toy.yaml", sampling_seed=0)), "screen": stream}
    logging.getLogger().removeHandler(screen)


def run_toy(toy, **options) -> Path:
    return run.run_profile(toy["profile"], None, toy["reports"], toy["runs"], machine=Machine(2, False),
                           notebooks_dir=toy["notebooks"], **options)


def test_failed_run_keeps_the_earlier_reports_and_leaves_runs_to_resume(toy, monkeypatch):
    reports, runs = toy["reports"], toy["runs"]
    # e.g. the README edited while the notebooks ran: the record names the code as it was at the start
    versions = iter([{"commit": "abc1234", "modified": False}, {"commit": "abc1234", "modified": True}])
    monkeypatch.setattr(run, "code_version", lambda: next(versions))
    run_toy(toy, overrides={"sampling_seed": 1})
    record = json.loads((reports / "toy" / "runner.json").read_text())
    assert record["code_version"] == {"commit": "abc1234", "modified": False}
    assert record["overrides"] == {"sampling_seed": 1} and record["parameters"]["sampling_seed"] == 1
    assert record["notebooks"]["01_train_toy"]["title"] == "Toy training" and record["peak_memory_mb"] > 0
    assert str(toy["profile"]) not in json.dumps(record) and record["profile_file"] == "toy.yaml"
    page = (reports / "toy" / "index.html").read_text()
    assert "Toy training" in page and "0.500" in page and "peak memory" in page and "sampling_seed=1" in page
    log_text = (reports / "toy" / "run.log").read_text()
    assert "Executing Cell" in log_text and "fd-level kernel output" in log_text and "trained 1" in log_text
    screen = toy["screen"].getvalue()
    assert "    Epoch 1/1" in screen and "[2/2] 02_check  done in" in screen
    assert "Executing Cell" not in screen and "fd-level" not in screen and "trained 1" not in screen
    assert (runs / "toy" / "toy" / "seed.txt").read_text() == "1"

    fake_notebooks(toy["notebooks"], fail=True)
    with pytest.raises(RunError) as err:
        run_toy(toy, overrides={"sampling_seed": 2})
    message = str(err.value)
    assert "02_check.ipynb failed in cell In [" in message and "ValueError: boom at seed 2" in message
    assert "were left in place: the next run skips finished replicates" in message
    assert (runs / "toy" / "toy" / "seed.txt").read_text() == "2"  # not moved aside: training resumes
    assert "sampling_seed = 1" in (reports / "toy" / "executed" / "01_train_toy.ipynb").read_text()
    failed = reports / "toy-failed"
    assert "boom at seed 2" in (failed / "02_check.html").read_text() and (failed / "run.log").is_file()
    assert sorted(os.listdir(reports)) == ["toy", "toy-failed"] and sorted(os.listdir(runs)) == ["toy"]


def test_retrain_moves_the_runs_aside_and_restores_them_when_the_run_fails(toy, monkeypatch):
    runs = toy["runs"]
    (runs / "toy" / "old-replicate").mkdir(parents=True)
    run_toy(toy, overrides={"sampling_seed": 1}, retrain=True)
    assert sorted(os.listdir(runs / "toy")) == ["toy"] and sorted(os.listdir(runs)) == ["toy"]
    assert json.loads((toy["reports"] / "toy" / "runner.json").read_text())["retrain"] is True
    fake_notebooks(toy["notebooks"], fail=True)
    with pytest.raises(RunError, match="were restored as they were"):
        run_toy(toy, overrides={"sampling_seed": 2}, retrain=True)
    assert (runs / "toy" / "toy" / "seed.txt").read_text() == "1"
    assert (runs / "toy-failed" / "toy" / "seed.txt").read_text() == "2"
    assert sorted(os.listdir(runs)) == ["toy", "toy-failed"]


@pytest.mark.slow  # run_all.sh itself (environment check, then the runner); the message is also checked in-process
def test_wrong_parameter_type_exits_non_zero_with_a_clear_message(tmp_path):
    bad = write_profile(tmp_path / "bad.yaml", epochs="three")
    result = subprocess.run([str(REPO_ROOT / "run_all.sh"), "--profile", str(bad), "--reports-dir",
                             str(tmp_path / "reports"), "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "parameter 'epochs' = 'three' has type str: expected an integer" in result.stdout
    assert repo_relative(bad) in result.stdout
    assert not (tmp_path / "reports").exists() and not (tmp_path / "runs").exists()


@pytest.fixture
def root_logging():
    """Undo the command line's logging set-up (it replaces the root logger's handlers)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_command_line_picks_the_default_profile_and_passes_the_new_options(monkeypatch, root_logging):
    from cxrlib.runner import __main__ as cli

    calls = []
    monkeypatch.setattr(cli, "look", lambda probe: Machine(2, False) if probe else pytest.fail("probe expected"))
    monkeypatch.setattr(cli, "run_profile", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert cli.main(["--retrain", "--verbose", "--set", "seeds=[3]", "--only", "02"]) == 0
    (profile, only, *_), options = calls[0]
    assert (profile, only) == ("cpu", ["02"]) and options["note"].startswith("No --profile given: using 'cpu'")
    assert options["retrain"] and options["verbose"] and options["overrides"] == {"seeds": [3]}
    assert cli.main(["--set", "seeds"]) == 1


def test_command_line_reports_a_bad_profile_and_exits_1(tmp_path, capsys, root_logging):
    from cxrlib.runner import __main__ as cli

    bad = write_profile(tmp_path / "bad.yaml", epochs="three")
    assert cli.main(["--profile", str(bad), "--reports-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "x")]) == 1
    said = capsys.readouterr().out
    assert "error: invalid notebook parameters" in said
    assert "parameter 'epochs' = 'three' has type str: expected an integer" in said and repo_relative(bad) in said
    assert not (tmp_path / "r").exists() and not (tmp_path / "x").exists()


def test_an_earlier_studys_index_names_the_studies_planned_from_it(tmp_path):
    """The exploratory index links the confirmatory study (planned beside it) with its decision; the confirmatory
    index links the factorial study that completes it (its plan until it is rendered, then its index)."""
    import shutil

    report_dir = tmp_path / "cpu"
    report_dir.mkdir()
    shutil.copy(REPO_ROOT / "reports" / "cpu" / "study.json", report_dir)
    page = index.write_index(report_dir, fabricated_record(), "unused").read_text()  # outside the repository: no link
    banner = page[page.index("A later study was planned from this one"):]
    assert banner.index("Confirmatory study: seven replicates") < banner.index("</p>")
    confirmatory = REPO_ROOT / "reports" / "cpu-confirmatory"
    later = index.later_studies(confirmatory, index.study_record(confirmatory))
    assert len(later) == 1 and later[0]["href"] in ("../../docs/FACTORIAL.md", "../cpu-factorial/index.html")

