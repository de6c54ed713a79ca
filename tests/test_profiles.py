"""Profiles that extend another (params.read_profile) and the one reader of named YAML files (yaml_files)."""
import pytest

from cxrlib import params
from cxrlib.params import ParameterError, read_profile
from cxrlib.plan import PlanError, plan_kind
from cxrlib.tune import SearchError, load_search


def write(folder, name, text):
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_a_profile_states_only_what_differs_from_the_one_it_extends(tmp_path):
    write(tmp_path, "base", "epochs: 8\nimage_size: 96\nrecipes: {resnet50: {epochs: 3}}\n")
    write(tmp_path, "middle", f"extends: {tmp_path / 'base.yaml'}\nimage_size: 128\n")
    child = write(tmp_path, "child", f"extends: {tmp_path / 'middle.yaml'}\nepochs: 2\nrecipes: null\n")
    assert read_profile(child) == {"epochs": 2, "image_size": 128, "recipes": None}


def test_committed_profiles_extend_by_name_and_the_children_differ_from_cpu_only_where_they_say():
    cpu = read_profile("cpu")
    assert read_profile("full")["image_size"] == 224 and cpu["image_size"] == 96
    assert {name: value for name, value in read_profile("smoke").items() if cpu.get(name) != value} == {
        "image_size": 32, "batch_size": 16, "head_units": 64, "epochs": 1, "label_smoothing": 0.0,
        "subsample_per_class": 24, "val_fraction": 0.2, "n_boot": 50, "n_examples": 2, "seeds": [1, 2], "study": None}
    assert set(read_profile("cpu-confirmatory")) == set(cpu) | {"recipes"}


@pytest.mark.parametrize("text, problem", [
    ("extends: loop_b\n", r"extend each other in a loop \(.*loop_a.yaml -> .*loop_b.yaml -> .*loop_a.yaml\)"),
    ("extends: 3\n", r"extends = 3 must name a profile \(e.g. extends: cpu\)"),
    ("extends: absent\n", r"profile 'absent' not found at .*absent.yaml; use one of: .*cpu"),
    ("- 1\n", r"loop_a.yaml must be a mapping of parameter: value, got list; fix the file"),
    ("epochs: [1\n", r"loop_a.yaml is not valid YAML"),
])
def test_a_broken_chain_names_the_file_and_the_fix(tmp_path, monkeypatch, text, problem):
    monkeypatch.setattr(params, "PROFILES_DIR", tmp_path)
    write(tmp_path, "loop_b", "extends: loop_a\n")
    write(tmp_path, "cpu", "epochs: 1\n")
    with pytest.raises(ParameterError, match=problem):
        read_profile(write(tmp_path, "loop_a", text))


def test_every_named_file_kind_is_found_and_refused_the_same_way(tmp_path):
    with pytest.raises(ParameterError, match="profile 'nope' not found at profiles/nope.yaml; use one of: cpu"):
        read_profile("nope")
    with pytest.raises(SearchError, match="search 'nope' not found at searches/nope.yaml; use one of: cpu"):
        load_search("nope")
    broken = write(tmp_path, "broken", "a: [1\n")
    with pytest.raises(SearchError, match="broken.yaml is not valid YAML"):
        load_search(broken)
    assert plan_kind("factorial-cpu") == "factorial"
    with pytest.raises(PlanError, match="no study plan studies/nope.yaml"):
        plan_kind("nope")


def test_the_runner_prints_a_profiles_resolved_parameters_for_papermill(capsys):
    import yaml

    from cxrlib.runner.__main__ import main

    assert main(["--profile", "smoke", "--print-parameters", "--set", "epochs=2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"profile": "smoke", **read_profile("smoke"), "epochs": 2} and "extends" not in printed
    assert main(["--print-parameters"]) == 1
    shown = capsys.readouterr()
    assert "name it with --profile NAME" in shown.out + shown.err
