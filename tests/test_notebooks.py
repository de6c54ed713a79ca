"""Notebook hygiene (parameters, kernel, no committed outputs, 02/03 in sync) and the end-to-end smoke run."""
import ast
import dataclasses
import html.parser
import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from cxrlib.backbones import BACKBONES
from cxrlib.contract import REPO_ROOT, RECORD_FILES, THRESHOLD_POLICIES, replicate_dir
from cxrlib.report.format import mean_sd_range
from cxrlib.params import NOTEBOOK_PARAMETERS, TRAIN_CONFIG_PARAMETERS, read_profile
from cxrlib.runner import KERNEL_NAME, RUNNER_SET

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
TRAIN_NOTEBOOKS = [nb for nb in NOTEBOOKS if "_train_" in nb.name]
EXPECTED = ["01_data_exploration", "02_train_resnet50", "03_train_densenet121", "04_compare_models"]
COMPARISON_COLUMNS = [f"{metric}_{stat}" for metric in ("roc_auc", "accuracy", "sensitivity", "specificity", "threshold")
                      for stat in ("mean", "sd", "min", "max")]
# Where a training notebook's defaults (for JupyterLab) knowingly differ from the cpu profile (for the runner).
INTERACTIVE_DEFAULTS = {"verbose": 1}


def kind_of(notebook: Path) -> str:
    return "train" if "_train_" in notebook.name else "compare" if "compare" in notebook.name else "explore"


def read(notebook: Path) -> nbformat.NotebookNode:
    return nbformat.read(notebook, as_version=4)


def test_the_four_notebooks_exist():
    assert [nb.stem for nb in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(notebook):
    dirty = [i for i, cell in enumerate(read(notebook).cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None or "papermill" in cell.metadata)]
    assert not dirty, f"{notebook.name} cells {dirty} hold outputs: run `python -m cxrlib.runner --strip`"
    assert "papermill" not in read(notebook).metadata, "run `python -m cxrlib.runner --strip`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_declaring_the_schema_group_then_validation(notebook):
    nb = read(notebook)
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: {len(tagged)} cells tagged 'parameters'"
    assert set(papermill.inspect_notebook(str(notebook))) == set(NOTEBOOK_PARAMETERS[kind_of(notebook)])
    next_code = next(cell for cell in nb.cells[tagged[0] + 1:] if cell.cell_type == "code")
    checks = (f'notebook_parameters(globals(), "{kind_of(notebook)}")', "report.setup(globals()")
    assert any(check in next_code.source for check in checks), f"{notebook.name}: parameters are not checked first"
    assert nb.metadata.kernelspec.name == KERNEL_NAME


@pytest.mark.parametrize("notebook", TRAIN_NOTEBOOKS, ids=lambda p: p.stem)
def test_training_notebook_defaults_are_the_cpu_profile(notebook):
    cpu = read_profile("cpu")
    defaults = {name: ast.literal_eval(info["default"])
                for name, info in papermill.inspect_notebook(str(notebook)).items()}
    shared = {name: value for name, value in defaults.items() if name in cpu and name not in INTERACTIVE_DEFAULTS}
    assert shared == {name: value for name, value in cpu.items() if name in shared}
    assert {name: defaults[name] for name in INTERACTIVE_DEFAULTS} == INTERACTIVE_DEFAULTS


def _arch_line(cell) -> str | None:
    """The architecture a cell names when it is the one `ARCH = "..."` line, else None."""
    return ast.literal_eval(cell.source.split("=", 1)[1].strip()) if cell.source.startswith("ARCH =") and \
        len(cell.source.splitlines()) == 1 else None


@pytest.mark.parametrize("notebook", TRAIN_NOTEBOOKS, ids=lambda p: p.stem)
def test_training_notebooks_differ_only_in_their_architecture_line(notebook):
    reference = read(TRAIN_NOTEBOOKS[0])
    other = read(notebook)
    assert len(reference.cells) == len(other.cells)
    different = [i for i, (a, b) in enumerate(zip(reference.cells, other.cells)) if a.source != b.source]
    assert len(different) <= 1, f"{notebook.name} differs from {TRAIN_NOTEBOOKS[0].name} in cells {different}"
    arch = next(_arch_line(cell) for cell in other.cells if _arch_line(cell))
    assert notebook.stem.endswith(f"_train_{arch}") and arch in BACKBONES


def test_train_config_parameters_exist_in_train_config():
    from cxrlib.train import TrainConfig

    assert set(TRAIN_CONFIG_PARAMETERS) <= {field.name for field in dataclasses.fields(TrainConfig)}


@pytest.mark.slow  # starts a kernel; the message is checked in-process (test_params), the wiring above
def test_notebook_stops_on_a_wrong_parameter_with_a_clear_message(tmp_path):
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "01_data_exploration.ipynb"),
                                   str(tmp_path / "out.ipynb"), parameters={"profile": "smoke", "sampling_seed": "x"},
                                   kernel_name=KERNEL_NAME, cwd=str(REPO_ROOT / "notebooks"), progress_bar=False)
    assert err.value.ename == "ParameterError"
    assert "parameter 'sampling_seed' = 'x' has type str: expected an integer" in err.value.evalue
    assert "profiles/smoke.yaml" in err.value.evalue


# --- end to end ----------------------------------------------------------------------------------------

class _Tables(html.parser.HTMLParser):
    """Counts tables and collects text, to check that a report opens and shows a table."""

    def __init__(self):
        super().__init__()
        self.tables, self.text = 0, []

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"

    def handle_data(self, data):
        self.text.append(data)


def parse_html(path: Path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_smoke_run_renders_every_report_without_errors(smoke_run):
    reports, _ = smoke_run
    for stem in EXPECTED:
        executed = read(reports / "executed" / f"{stem}.ipynb")
        errors = [output for cell in executed.cells for output in cell.get("outputs", [])
                  if output.output_type == "error"]
        assert not errors, f"{stem}: {errors[0].ename}: {errors[0].evalue}"
        data = [output.get("data", {}) for cell in executed.cells for output in cell.get("outputs", [])]
        blind = [d["text/plain"] for d in data
                 if d.get("text/plain", "").startswith("<Figure") and "image/png" not in d]
        assert not blind, f"{stem}: figures without an image (is the inline backend active?): {blind[:2]}"
        assert any("image/png" in d for d in data), f"{stem} shows no figure"
        page = parse_html(reports / f"{stem}.html")
        assert page.tables >= 1, f"{stem}.html shows no table"
        assert "Traceback" not in "".join(page.text)
    assert not list(reports.parent.glob("smoke.*")) and not list(reports.parent.glob("smoke-failed"))


@pytest.mark.slow
def test_smoke_run_writes_the_comparison_table(smoke_run):
    reports, runs = smoke_run
    table = pd.read_csv(reports / "comparison.csv")
    profile = read_profile("smoke")
    assert list(table["model"]) == ["resnet50", "densenet121", "ensemble"]
    assert (table["seeds"] == len(profile["seeds"])).all()
    values = table[COMPARISON_COLUMNS]
    assert values.notna().all().all() and values.apply(pd.api.types.is_numeric_dtype).all()
    assert ((values >= 0) & (values <= 1)).all().all()
    first = table.iloc[0]
    auc = mean_sd_range(*first[[f"roc_auc_{stat}" for stat in ("mean", "sd", "min", "max")]])
    assert auc in "".join(parse_html(reports / "04_compare_models.html").text)
    assert "peak memory" in "".join(parse_html(reports / "index.html").text)
    seeds = pd.read_csv(reports / "seeds.csv")
    assert set(seeds["seed"]) == set(profile["seeds"]) and set(seeds["policy"]) == set(THRESHOLD_POLICIES)
    for arch in ("resnet50", "densenet121"):
        for seed in profile["seeds"]:
            record = json.loads((replicate_dir(runs, arch, seed) / "run.json").read_text())
            assert record["config"]["epochs"] == 1 and record["seed"] == seed
            committed = replicate_dir(reports / "runs", arch, seed)
            assert sorted(path.name for path in committed.iterdir()) == sorted(RECORD_FILES)


@pytest.mark.slow
def test_smoke_run_injected_the_profile(smoke_run):
    reports, runs = smoke_run
    profile = read_profile("smoke")
    for stem in EXPECTED:
        injected = read(reports / "executed" / f"{stem}.ipynb").metadata.papermill.parameters
        declared = NOTEBOOK_PARAMETERS[kind_of(Path(stem))]
        assert set(injected) == set(declared) & (set(profile) | set(RUNNER_SET))
        assert {name: injected[name] for name in injected if name in profile} == \
            {name: profile[name] for name in injected if name in profile}
        assert injected["profile"] == "smoke"
        if "runs_dir" in injected:
            assert injected["runs_dir"] == str(runs)


@pytest.mark.slow
def test_04_shows_grad_cam_from_the_runs_records_once_the_model_files_are_gone(smoke_result, tmp_path, monkeypatch):
    """04 computes the heatmaps from the model files while no record exists; python -m cxrlib.explain writes
    gradcam.csv and gradcam_sanity.csv from a run's model; 04 without model files draws the same maps from them."""
    import shutil

    from cxrlib.contract import configured_data_dir
    from cxrlib.explain.__main__ import main
    from cxrlib.report import comparison, heatmaps
    from cxrlib.runner.profiles import load_profile, profile_path

    data_dir = configured_data_dir()
    data_dir = data_dir if (data_dir / "train").is_dir() else smoke_result.tmp / "chest_xray"
    shutil.copytree(smoke_result.reports / "runs", tmp_path / "runs")
    focus = min(read_profile("smoke")["seeds"])
    shown, drawn = [], []
    monkeypatch.setattr(comparison, "display", shown.append)
    monkeypatch.setattr(heatmaps, "display", shown.append)
    monkeypatch.setattr(comparison.plots, "plot_gradcam", lambda maps, *args, **kwargs: drawn.append(maps))
    namespace = {name: value for name, value in load_profile(profile_path("smoke")).items()
                 if name in NOTEBOOK_PARAMETERS["compare"]}

    def section(runs_dir):
        setup = comparison.setup({**namespace, "profile": "smoke", "data_dir": str(data_dir),
                                  "report_dir": str(tmp_path), "runs_dir": str(runs_dir)})
        comparison.gradcam_section(setup, comparison.disagreements_section(setup))

    section(smoke_result.runs)  # no record yet: computed from the model files
    for arch in ("resnet50", "densenet121"):
        records, model_file = (replicate_dir(tmp_path / "runs", arch, focus),
                               replicate_dir(smoke_result.runs, arch, focus) / "model.keras")
        assert main([str(records), str(model_file), "--data-dir", str(data_dir)]) == 0
    section(tmp_path / "no-models")
    live, recorded = drawn
    assert list(live) == list(recorded) == ["ResNet-50", "DenseNet-121"]
    for title in live:
        assert abs(live[title].heatmaps - recorded[title].heatmaps).max() < 1e-3
        assert abs(live[title].probs - recorded[title].probs).max() < 1e-3
        assert live[title].method == recorded[title].method and live[title].method.startswith("HiResCAM at conv4")
    texts = [getattr(item, "data", "") for item in shown]
    assert any("computed now from" in text for text in texts) and any("gradcam.csv`" in text for text in texts)
