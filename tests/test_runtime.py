"""Runtime facts: precision choice from CPU flags / GPU capability, policy switching, versions, memory."""
import json

import keras
import pytest

from cxrlib import runtime


@pytest.fixture
def float32_policy_after():
    """Restore the default Keras dtype policy after a test that changes it."""
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("flags, gpus, expected", [
    ({"avx2", "amx_bf16"}, [], "mixed_bfloat16"),
    ({"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),
    ({"avx2", "avx512f"}, [], "float32"),
    ({"amx_bf16"}, [{"name": "T4", "compute_capability": [7, 5]}], "float32"),
    (set(), [{"name": "A100", "compute_capability": [8, 0]}], "mixed_bfloat16"),
])
def test_auto_precision_uses_bf16_only_where_it_is_native(monkeypatch, flags, gpus, expected):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(runtime, "gpu_details", lambda: gpus)
    assert runtime.choose_precision("auto") == expected


def test_explicit_precision_overrides_and_bad_names_fail():
    assert runtime.choose_precision("float32") == "float32"
    assert runtime.choose_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="bfloat16"):
        runtime.choose_precision("bf16")


def test_apply_precision_sets_the_keras_policy(float32_policy_after):
    runtime.apply_precision("mixed_bfloat16")
    layer = keras.layers.Dense(2)
    assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    runtime.apply_precision("float32")
    assert keras.config.dtype_policy().name == "float32"


def test_describe_environment_is_json_ready_and_complete():
    environment = runtime.describe_environment()
    json.dumps(environment)
    versions = environment["versions"]
    assert versions["tensorflow"] and versions["keras"] == keras.__version__ and versions["python"]
    assert environment["device"]["cpu_count"] >= 1 and environment["device"]["memory_gb"] > 0
    assert environment["precision"] == keras.config.dtype_policy().name
    assert 1 < environment["peak_memory_mb"] < 1e6
