"""The bf16 parity and time-to-quality benchmark's bookkeeping and statistics (docs/BF16_PARITY.md); no training."""
import importlib
import sys

import numpy as np
import pandas as pd
import pytest

from cxrlib.contract import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
bench = importlib.import_module("bench_time_to_quality")


@pytest.fixture(scope="module")
def reference():
    return bench.search_runs(pd.read_csv(bench.SEARCH_RECORD))


def test_the_float32_side_is_the_plans_table_of_search_records(reference):
    values = reference.set_index(["arch", "seed"])["value"].round(4)
    assert values.to_dict() == {("densenet121", 1000): 0.1263, ("densenet121", 1001): 0.1282,
                                ("densenet121", 1002): 0.1309, ("resnet50", 1000): 0.1302,
                                ("resnet50", 1001): 0.1474, ("resnet50", 1002): 0.1407}
    assert round(reference[reference["arch"] == "resnet50"]["value"].std(), 4) == 0.0087


def test_each_architecture_trains_its_confirmatory_recipe_at_full_precision(reference):
    tuned, shared = bench.recipe_values(reference, "densenet121"), bench.recipe_values(reference, "resnet50")
    assert tuned["image_size"] == 128 and tuned["epochs"] == 10 and tuned["lr_schedule"] == "cosine"
    assert tuned["learning_rate"] == pytest.approx(0.000320526, rel=1e-5) and tuned["learning_rate"] != 0.000320526
    assert shared == {"augment_strength": 1.0, "dropout": 0.5, "epochs": 8, "image_size": 96, "label_smoothing": 0.1,
                      "learning_rate": 0.001, "lr_schedule": "cosine", "weight_decay": 0.0}
    assert isinstance(shared["epochs"], int) and isinstance(shared["image_size"], int)


def test_the_plan_runs_each_architectures_float32_check_before_its_bf16_seeds():
    assert bench.PLANNED[:4] == [("resnet50", "float32", 1000), ("resnet50", "mixed_bfloat16", 1000),
                                 ("resnet50", "mixed_bfloat16", 1001), ("resnet50", "mixed_bfloat16", 1002)]
    assert len(bench.PLANNED) == 8 and bench.PLANNED[4] == ("densenet121", "float32", 1000)


def bf16_runs(reference, shift: dict[int, float], arch: str = "resnet50") -> pd.DataFrame:
    """bf16 rows whose loss is the float32 record's plus ``shift[seed]``."""
    own = reference[reference["arch"] == arch].set_index("seed")
    return pd.DataFrame([{"arch": arch, "precision": bench.BF16, "seed": seed, "value": own.loc[seed, "value"] + delta,
                          "val_auc": own.loc[seed, "val_auc"] - delta, "cpu_seconds": 100.0, "wall_seconds": 60.0,
                          "cpu": "x"} for seed, delta in shift.items()])


def test_parity_pairs_each_seed_with_its_record_and_bounds_the_mean_by_hand(reference):
    row = bench.parity(bf16_runs(reference, {1000: 0.001, 1001: 0.003, 1002: 0.005}), reference, "value").iloc[0]
    assert np.allclose(row["differences"], [0.001, 0.003, 0.005]) and row["mean"] == pytest.approx(0.003)
    # SD 0.002, SE 0.002 / sqrt(3); t(0.95, 2) = 2.919986, t(0.975, 2) = 4.302653
    assert row["upper"] == pytest.approx(0.003 + 2.919986 * 0.002 / np.sqrt(3), rel=1e-6)
    assert row["low"] == pytest.approx(0.003 - 4.302653 * 0.002 / np.sqrt(3), rel=1e-6)
    assert bench.verdict(row) == "non-inferior"


@pytest.mark.parametrize("shift, words", [
    ({1000: 0.02, 1001: 0.021, 1002: 0.022}, "bf16 worse (interval above 0)"),
    ({1000: -0.01, 1001: 0.03, 1002: 0.0}, "not shown non-inferior"),
    ({1000: 0.001, 1001: 0.002}, "incomplete (2 of 3 pairs)"),
])
def test_the_verdict_follows_the_plans_rule(reference, shift, words):
    row = bench.parity(bf16_runs(reference, shift), reference, "value").iloc[0]
    assert bench.verdict(row) == words


def test_time_to_target_is_the_first_epoch_at_or_below_it():
    epochs = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_balanced_log_loss": [0.5, 0.14, 0.1394, 0.12],
                           "cpu_seconds": [10.0, 20.0, 30.0, 40.0], "wall_seconds": [6.0, 12.0, 18.0, 24.0]})
    hit = bench.time_to_target(epochs, 0.1394)
    assert hit["epoch"] == 3 and hit["cpu_seconds"] == 30.0
    assert bench.time_to_target(epochs, 0.1) is None


def test_records_grow_run_by_run_and_a_recorded_run_is_skipped(tmp_path):
    row = {"arch": "resnet50", "precision": "float32", "seed": 1000, "value": 0.13, "val_auc": 0.99, "best_epoch": 8,
           "epochs_run": 8, "cpu_seconds": 2000.0, "wall_seconds": 1100.0, "cpu": "x", "code": "abc", "finished": "t"}
    epochs = [{"arch": "resnet50", "precision": "float32", "seed": 1000, "epoch": e, "val_balanced_log_loss": 0.2,
               "val_auc": 0.9, "cpu_seconds": 1.0 * e, "wall_seconds": 1.0 * e} for e in (1, 2)]
    bench.append_records(tmp_path, row, epochs)
    bench.append_records(tmp_path, {**row, "precision": bench.BF16}, epochs)
    runs, epoch_rows = bench.read_records(tmp_path)
    assert len(runs) == 2 and len(epoch_rows) == 4
    assert bench.has_run(runs, "resnet50", bench.BF16, 1000) and not bench.has_run(runs, "resnet50", bench.BF16, 1001)


def test_a_foreign_record_is_refused_naming_the_file(tmp_path):
    (tmp_path / "runs.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="runs.csv lacks columns .*not this benchmark's record"):
        bench.read_records(tmp_path)


def test_only_accepts_the_plans_runs_and_names_them():
    assert bench.parse_only(["densenet121/mixed_bfloat16/1001"]) == [("densenet121", "mixed_bfloat16", 1001)]
    with pytest.raises(SystemExit, match="'resnet50/float32/1001' is not one of the plan's runs: resnet50/float32/1000"):
        bench.parse_only(["resnet50/float32/1001"])


def test_a_cpu_without_native_bf16_is_refused_before_any_training(monkeypatch, tmp_path):
    from cxrlib import runtime

    monkeypatch.setattr(runtime, "has_fast_bf16", lambda: False)
    monkeypatch.setattr(bench, "train_run", lambda *args: pytest.fail("trained on a CPU without native bf16"))
    with pytest.raises(SystemExit, match="has no native bf16 .* run this on one"):
        bench.run([], records=tmp_path)


def test_everything_recorded_exits_3_without_training(monkeypatch, tmp_path, reference):
    from cxrlib import runtime

    monkeypatch.setattr(runtime, "has_fast_bf16", lambda: True)
    monkeypatch.setattr(bench, "train_run", lambda *args: pytest.fail("trained a recorded run"))
    runs = pd.DataFrame([{column: 0 for column in bench.RUN_COLUMNS} | {"arch": a, "precision": p, "seed": s}
                         for a, p, s in bench.PLANNED])
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert bench.run([], records=tmp_path) == 3
