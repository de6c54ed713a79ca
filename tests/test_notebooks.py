"""Notebook hygiene (parameters, kernel, no committed outputs, 02/03 in sync) and the end-to-end smoke run."""
import ast
import dataclasses
import html.parser
import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml
from papermill.exceptions import PapermillExecutionError

from conftest import real_data_path, write_tree
from cxrlib.params import NOTEBOOK_PARAMETERS, TRAIN_CONFIG_PARAMETERS
from cxrlib.runner import KERNEL_NAME, RUNNER_SET

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
TRAIN_NOTEBOOKS = [nb for nb in NOTEBOOKS if "_train_" in nb.name]
EXPECTED = ["01_data_exploration", "02_train_resnet50", "03_train_densenet121", "04_compare_models"]
COMPARISON_COLUMNS = ["accuracy", "roc_auc", "sensitivity", "specificity", "macro_f1", "threshold",
                      *(f"{m}_ci_{side}" for m in ("accuracy", "roc_auc", "sensitivity", "specificity")
                        for side in ("low", "high"))]


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
    assert f'params = notebook_parameters(globals(), "{kind_of(notebook)}")' in next_code.source
    assert nb.metadata.kernelspec.name == KERNEL_NAME


@pytest.mark.parametrize("notebook", TRAIN_NOTEBOOKS, ids=lambda p: p.stem)
def test_training_notebook_defaults_are_the_cpu_profile(notebook):
    cpu = yaml.safe_load((REPO_ROOT / "profiles" / "cpu.yaml").read_text())
    defaults = {name: ast.literal_eval(info["default"])
                for name, info in papermill.inspect_notebook(str(notebook)).items()}
    assert {name: value for name, value in defaults.items() if name in cpu} == cpu


def test_train_notebooks_are_identical_but_for_the_architecture():
    resnet, densenet = (read(REPO_ROOT / "notebooks" / f"{stem}.ipynb") for stem in EXPECTED[1:3])
    assert len(resnet.cells) == len(densenet.cells)
    for index, (a, b) in enumerate(zip(resnet.cells, densenet.cells)):
        if "arch-intro" in a.metadata.get("tags", []):
            continue
        same = a.source.replace("resnet50", "ARCH").replace("ResNet-50", "ARCH") == \
            b.source.replace("densenet121", "ARCH").replace("DenseNet-121", "ARCH")
        assert same, f"cell {index} of 02_train_resnet50 and 03_train_densenet121 differ: edit both alike"


def test_train_config_parameters_exist_in_train_config():
    from cxrlib.train import TrainConfig

    assert set(TRAIN_CONFIG_PARAMETERS) <= {field.name for field in dataclasses.fields(TrainConfig)}


def test_notebook_stops_on_a_wrong_parameter_with_a_clear_message(tmp_path):
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "01_data_exploration.ipynb"),
                                   str(tmp_path / "out.ipynb"), parameters={"profile": "smoke", "seed": "x"},
                                   kernel_name=KERNEL_NAME, cwd=str(REPO_ROOT / "notebooks"), progress_bar=False)
    assert err.value.ename == "ParameterError"
    assert "parameter 'seed' = 'x' has type str: expected an integer" in err.value.evalue
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


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """./run_all.sh --profile smoke into a tmp dir, on the real data (or a generated tree when it is absent)."""
    tmp = tmp_path_factory.mktemp("smoke")
    data_dir = real_data_path()
    if not (data_dir / "train").is_dir():
        data_dir = write_tree(tmp / "chest_xray", {"train": 30, "val": 4, "test": 12})
    started = time.perf_counter()
    result = subprocess.run(
        [str(REPO_ROOT / "run_all.sh"), "--profile", "smoke", "--reports-dir", str(tmp / "reports"),
         "--runs-dir", str(tmp / "runs")], env={**os.environ, "CXR_DATA_DIR": str(data_dir)},
        capture_output=True, text=True, timeout=1200)
    print(f"smoke run: {time.perf_counter() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return tmp / "reports" / "smoke", tmp / "runs" / "smoke"


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
    assert list(table["model"]) == ["resnet50", "densenet121", "ensemble"]
    values = table[COMPARISON_COLUMNS]
    assert values.notna().all().all() and values.apply(pd.api.types.is_numeric_dtype).all()
    assert ((values >= 0) & (values <= 1)).all().all()
    assert (reports / "comparison.md").is_file() and (reports / "comparison.html").is_file()
    first = table.iloc[0]
    auc = f"{first['roc_auc']:.3f} ({first['roc_auc_ci_low']:.3f}–{first['roc_auc_ci_high']:.3f})"
    index = "".join(parse_html(reports / "index.html").text)
    assert auc in index and "peak memory" in index
    assert auc in "".join(parse_html(reports / "04_compare_models.html").text)
    for arch in ("resnet50", "densenet121"):
        assert json.loads((runs / arch / "run.json").read_text())["config"]["epochs"] == 1


@pytest.mark.slow
def test_smoke_run_injected_the_profile(smoke_run):
    reports, runs = smoke_run
    profile = yaml.safe_load((REPO_ROOT / "profiles" / "smoke.yaml").read_text())
    for stem in EXPECTED:
        injected = read(reports / "executed" / f"{stem}.ipynb").metadata.papermill.parameters
        declared = NOTEBOOK_PARAMETERS[kind_of(Path(stem))]
        assert set(injected) == set(declared) & (set(profile) | set(RUNNER_SET))
        assert {name: injected[name] for name in injected if name in profile} == \
            {name: profile[name] for name in injected if name in profile}
        assert injected["profile"] == "smoke"
        if "runs_dir" in injected:
            assert injected["runs_dir"] == str(runs)
