"""Parameter validation: every committed profile passes; bad values fail with a message that says the fix."""

import pytest

from cxrlib.contract import PROFILES_DIR

from cxrlib import params
from cxrlib.params import (NOTEBOOK_PARAMETERS, PARAMETERS, ParameterError, check, notebook_parameters,
                           read_profile, source_of)

PROFILES = sorted(PROFILES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_committed_profiles_are_valid(profile):
    params = read_profile(profile)
    assert check(params, source=str(profile)) == params


def test_profiles_exist():
    assert {p.stem for p in PROFILES} >= {"full", "cpu", "smoke"}


def test_wrong_type_names_parameter_value_expectation_and_profile():
    with pytest.raises(ParameterError) as err:
        check({"profile": "smoke", "epochs": "3"})
    message = str(err.value)
    assert "'epochs' = '3' has type str" in message
    assert "an integer in [1, 1000]" in message
    assert "profiles/smoke.yaml" in message


@pytest.mark.parametrize("name, value, problem", [
    ("image_size", 8, "out of range"),
    ("learning_rate", 0.0, "out of range"),
    ("weights", "imagnet", "not an allowed value"),
    ("augment", 1, "has type int"),
    ("epochs", True, "has type bool"),
    ("sampling_seed", None, "must not be null"),
    ("threshold_policy", "best", "not an allowed value"),
    ("lr_schedule", "step", "not an allowed value"),
    ("label_smoothing", 0.7, "out of range"),
])
def test_bad_values_are_rejected(name, value, problem):
    with pytest.raises(ParameterError, match=problem):
        check({name: value})


def test_int_is_accepted_where_a_number_is_expected_and_null_where_allowed():
    values = {"learning_rate": 1, "weights": None, "subsample_per_class": None}
    assert check(values) is values  # accepted and returned unchanged, not a converted copy
    assert PARAMETERS["learning_rate"].problem(1) is None and PARAMETERS["subsample_per_class"].problem(None) is None
    # ... while the converse is refused: a float where an integer is expected, null where it is not allowed
    assert PARAMETERS["epochs"].problem(1.0) == "has type float"
    assert PARAMETERS["image_size"].problem(None) == "must not be null"


def test_unknown_parameter_suggests_the_close_name():
    with pytest.raises(ParameterError, match=r"unknown parameter 'epoch'.*did you mean 'epochs'"):
        check({"epoch": 3})


def test_a_renamed_parameter_is_told_its_new_name():
    with pytest.raises(ParameterError, match=r"unknown parameter 'seed' in .*did you mean 'sampling_seed'"):
        check({"seed": 42})


def test_every_error_is_reported_at_once():
    with pytest.raises(ParameterError) as err:
        check({"epochs": 0, "batch_size": "x"})
    assert "'epochs'" in str(err.value) and "'batch_size'" in str(err.value)


def test_source_falls_back_to_the_parameters_cell_for_unknown_profiles():
    assert source_of("smoke") == "profiles/smoke.yaml"
    assert source_of("interactive") == "the parameters cell"


def test_notebook_parameters_collects_declared_names_and_requires_all():
    names = NOTEBOOK_PARAMETERS["compare"]
    namespace = {"profile": "smoke", "data_dir": None, "runs_dir": "r", "report_dir": "d", "threshold_policy": "fixed",
                 "youden_delta": 0.02, "target_sensitivity": 0.95, "focus_seed": None, "study": None, "n_boot": 100,
                 "n_examples": 2, "sampling_seed": 0, "unrelated": object()}
    assert set(notebook_parameters(namespace, "compare")) == set(names)
    del namespace["n_boot"]
    with pytest.raises(ParameterError, match="'n_boot' is missing"):
        notebook_parameters(namespace, "compare")


def test_notebook_groups_use_only_known_parameters():
    for names in NOTEBOOK_PARAMETERS.values():
        assert set(names) <= set(PARAMETERS)


def test_fine_tuning_needs_a_frozen_first_phase():
    with pytest.raises(ParameterError, match="finetune_epochs = 3 needs train_base false"):
        check({"finetune_epochs": 3, "train_base": True})
    for accepted in ({"finetune_epochs": 3, "train_base": False}, {"finetune_epochs": 0, "train_base": True}):
        assert check(accepted) is accepted  # no error raised


@pytest.mark.parametrize("weights", [
    None, "imagenet", "/models/resnet50.weights.h5", "weights/{arch}_radiology.h5",
    {"resnet50": "weights/r.keras", "densenet121": "imagenet"}, {"resnet50": None, "densenet121": "d.hdf5"},
])
def test_weights_accepts_null_imagenet_a_file_a_template_and_a_mapping(weights):
    assert PARAMETERS["weights"].problem(weights) is None
    values = {"weights": weights}
    assert check(values) is values


@pytest.mark.parametrize("weights, problem", [
    ("weights/resnet50.npz", "is not an allowed value"),
    ({"resnet50": "r.h5"}, "has no entry for densenet121"),
    ({"resnet50": "r.h5", "densenet121": "d.h5", "vgg16": "v.h5"}, r"unknown backbone\(s\) \['vgg16'\]"),
    ({"resnet50": "r.h5", "densenet121": 3}, "densenet121: 3 has type int"),
    (["r.h5"], "has type list"),
])
def test_bad_weights_name_the_value_and_the_accepted_forms(weights, problem):
    with pytest.raises(ParameterError, match=problem) as err:
        check({"profile": "smoke", "weights": weights})
    assert "{arch}" in str(err.value) and "profiles/smoke.yaml" in str(err.value)


def test_recipes_override_the_shared_values_for_their_architecture_only():
    shared = {name: 0 for name in params.TRAIN_CONFIG_PARAMETERS} | {"learning_rate": 1e-3, "recipes": None}
    tuned = {**shared, "recipes": {"densenet121": {"learning_rate": 5e-4, "image_size": 128}}}
    assert PARAMETERS["recipes"].problem(tuned["recipes"]) is None
    densenet = params.train_config_values(tuned, 1, 1, "densenet121")
    resnet = params.train_config_values(tuned, 1, 1, "resnet50")
    assert (densenet["learning_rate"], densenet["image_size"], densenet["batch_size"]) == (5e-4, 128, 0)
    assert (resnet["learning_rate"], resnet["image_size"]) == (1e-3, 0)  # the shared values
    assert params.train_config_values(shared, 1, 1, "resnet50")["learning_rate"] == 1e-3


@pytest.mark.parametrize("recipes, problem", [
    ({"vgg16": {"epochs": 3}}, "unknown backbone(s) ['vgg16']"),
    ({"resnet50": {"precision": "float32"}}, "resnet50.precision: not a recipe parameter"),
    ({"resnet50": {"dropout": 2.0}}, "resnet50.dropout = 2.0 is out of range"),
    ({"resnet50": "fast"}, "resnet50: 'fast' is not a mapping"),
    ([1, 2], "has type list"),
])
def test_bad_recipes_name_the_architecture_the_parameter_and_the_fix(recipes, problem):
    with pytest.raises(params.ParameterError) as raised:
        params.check({"recipes": recipes}, source="profiles/x.yaml")
    assert problem in str(raised.value) and "fix it in profiles/x.yaml" in str(raised.value)
