"""The project's named YAML files (profiles/, studies/, searches/): one way to find a file by name and read its mapping,
with errors that name the file and the fix. Each caller passes the error type its users catch."""
from __future__ import annotations

from pathlib import Path

import yaml

from cxrlib.contract import repo_relative


def named_yaml(folder: Path, name_or_file: str | Path, what: str, error: type[Exception] = ValueError) -> Path:
    """``<folder>/<name>.yaml`` for a bare name, else the given YAML file (resolved); ``error`` naming the known
    names when there is no such file. ``what`` says what the file is ('profile', 'search', ...)."""
    path = Path(name_or_file)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(folder) / f"{name_or_file}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(folder).glob("*.yaml"))) or "none"
        raise error(f"{what} {str(name_or_file)!r} not found at {repo_relative(path)}; use one of: {known}, or a "
                    "YAML file path")
    return path.resolve()


def read_mapping(path: Path, holds: str, error: type[Exception] = ValueError) -> dict:
    """The mapping in a YAML file; ``error`` naming the file when it is not valid YAML or holds no mapping
    (``holds`` says what it should hold, e.g. 'parameter: value')."""
    shown = repo_relative(path)
    try:
        values = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise error(f"{shown} is not valid YAML ({err}); fix the file") from None
    if not isinstance(values, dict):
        raise error(f"{shown} must be a mapping of {holds}, got {type(values).__name__}; fix the file")
    return values
