"""Fair hyperparameter search: the same space, budget, sampler seed and validation objective for every architecture.

Modules, one job each: spec (the search file and its checks), ledger (budget, lost trials, reruns, next task in
Optuna storage), worker (the search's train-only data and one trial's training with pruning), results (trials
table and status), report (the search's page), recipe (the tuned profile), adoption (which study plans train its
recipes). Command line: ``python -m cxrlib.tune`` (``./tune.sh``); docs: README, "Tuning".
"""
from .spec import SearchError, SearchSpec, load_search

__all__ = ["SearchError", "SearchSpec", "load_search"]
