"""A fast stand-in for cxrlib.tune.worker.train_configuration, for the search's bookkeeping tests.

Its validation objective is a fixed function of the configuration (so a seeded search is reproducible), it
reports one value per epoch through the trial's callback (so pruning acts), and it can sleep to let two
workers interleave or a test kill a worker mid-trial. Importable by worker subprocesses (tests/ on PYTHONPATH).
"""
import math
import os
import time

from cxrlib.tune.worker import VAL_OBJECTIVE


def objective_of(values: dict) -> float:
    """The final validation objective of a configuration: best at learning rate 1e-3 and no dropout."""
    return (math.log10(values["learning_rate"]) + 3) ** 2 + values.get("dropout", 0.0) + 0.3


def fake_train(spec, arch, values, training_seed, frame, fingerprint, run_dir, callbacks):
    """Report a falling curve that ends at objective_of(values); sleep FAKE_EPOCH_SECONDS per epoch."""
    seconds = float(os.environ.get("FAKE_EPOCH_SECONDS", "0"))
    final = objective_of(values)
    epochs = values.get("epochs", spec.base_params["epochs"])
    for epoch in range(epochs):
        time.sleep(seconds)
        for callback in callbacks:
            callback.on_epoch_end(epoch, {VAL_OBJECTIVE: final + 1.0 / (epoch + 1)})
    return final, {"epochs_run": epochs, "best_epoch": epochs - 1, "best_val_auc": 0.9}
