"""The two ways to install (pip via pyproject, conda via environment.yml) pin the same versions,
and CI runs exactly the README's test command."""
import re
import tomllib

import yaml

from cxrlib.contract import REPO_ROOT as ROOT


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.]+)", requirement.strip())
        if match:
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
    assert conda_pins() == pyproject_pins()


def test_conda_python_satisfies_requires_python():
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert tuple(int(p) for p in python.split("=")[1].split(".")) >= (3, 11)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_commands = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci_commands == ["./run_tests.sh"]
    assert "\n./run_tests.sh\n" in readme


def test_gpu_extra_installs_the_pinned_tensorflow_with_cuda():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["gpu"] == [f"tensorflow[and-cuda]=={pyproject_pins()['tensorflow']}"]
