"""The two ways to install (pip via pyproject, conda via environment.yml) pin the same versions,
and CI runs exactly the README's test command."""
import re
import tomllib

import yaml
from packaging.specifiers import SpecifierSet

from cxrlib.contract import REPO_ROOT as ROOT


def _pins(requirements: list[str]) -> dict[str, str]:
    """{name: version} of ``name==version`` requirements; anything else (bar the project itself) is an error, so
    that an unpinned or misspelt line cannot drop out of the comparison unnoticed."""
    pins = {}
    for requirement in requirements:
        if requirement.strip() == "-e .":  # environment.yml installs the project itself
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", requirement.strip())
        assert match, f"not a pin (name==version): {requirement!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"] + project["optional-dependencies"]["dev"])


def conda_pins() -> dict[str, str]:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict))
    return _pins(pip_section)


def test_every_runtime_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    unpinned = [r for r in project["dependencies"] if "==" not in r]
    assert not unpinned, f"pin these in pyproject.toml: {unpinned}"


def test_environment_yml_matches_pyproject():
    pins = pyproject_pins()
    assert {"tensorflow", "keras", "numpy", "pytest"} <= set(pins)  # both files were read, not two empty lists
    assert conda_pins() == pins


def test_conda_python_satisfies_requires_python():
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert requires.contains(python.split("=")[1]), f"environment.yml's {python} is outside requires-python {requires}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_commands = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    # The command README's quick start gives for the test suite: the code block followed by "runs the test suite".
    readme_commands = re.findall(r"```bash\n([^`]*)\n```\n\nruns the test suite", readme)
    assert readme_commands == ["./run_tests.sh"]
    assert ci_commands == readme_commands


def test_gpu_extra_installs_the_pinned_tensorflow_with_cuda():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["gpu"] == [f"tensorflow[and-cuda]=={pyproject_pins()['tensorflow']}"]


def test_every_named_command_is_installed_runs_main_and_is_in_readmes_table():
    """pyproject's [project.scripts] are the commands README's "Commands" table lists, each reaching a main()."""
    import importlib
    import importlib.metadata

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    installed = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    for name, target in scripts.items():
        assert installed.get(name) == target, f"{name} is not installed as {target}: run ./run_tests.sh (it reinstalls)"
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands"):readme.index("## Predicting new images")]
    listed = re.findall(r"^\| `(cxr-[a-z-]+)", table, flags=re.MULTILINE)
    assert listed == list(scripts)
