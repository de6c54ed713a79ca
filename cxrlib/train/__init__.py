"""Training: `train(frame, run_dir, TrainConfig(...))` runs one resumable run into a self-describing run directory.

Modules, one job each: config (TrainConfig and its checks), rundir (state.json, atomic epoch commits,
same-run checks), callbacks (the callbacks of a phase and the run checkpoint), cluster (distribution
strategy, chief and worker directories), phases (build, compile, feed and fit each phase), record
(predictions, threshold, latency, run.json), run (train() itself), replicates (a notebook profile's replicates
trained and their records copied next to the reports).
"""
from .cluster import make_strategy
from .config import TrainConfig
from .phases import Phase
from .run import train

__all__ = ["Phase", "TrainConfig", "make_strategy", "train"]
