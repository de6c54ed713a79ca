"""python -m cxrlib.tune {run,status,export} SEARCH [--storage URL]: run, check or write up a search.

  run     work on the search until nothing is left to start (or --max-trials ran); start as many as you like,
          on one machine or several, all with the same --storage
  status  one line per architecture
  export  write trials.csv and the report into reports/tune-<name>/; once finished, also profiles/<base>-tuned.yaml
Exit status: 0 when the search and its reruns are finished (run, export: also when they ran or wrote something),
3 when work remains (run: it started nothing because the remaining trials run elsewhere), 2 for a bad search file.
SEARCH is a name in searches/ or a YAML file; --storage is any Optuna storage URL (postgresql://..., mysql://...,
sqlite:///file.db) or a journal file path; the default is the search's committed journal file.
"""
from __future__ import annotations

import argparse
import sys

import optuna

from cxrlib.contract import repo_relative
from cxrlib.quiet import tensorflow_quietly

from . import ledger, recipe, report, results
from .spec import SearchError, load_search

NOT_FINISHED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxrlib.tune", description=__doc__.split("\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("command", choices=("run", "status", "export"))
    parser.add_argument("search", help="a search name (searches/<name>.yaml) or a YAML file")
    parser.add_argument("--storage", help="Optuna storage URL or journal file (default: the search's journal)")
    parser.add_argument("--max-trials", type=int, help="run: stop after this many trials")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the worker prints one line per trial itself
    try:
        spec = load_search(args.search)
    except SearchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    storage = ledger.open_storage(spec, args.storage)
    if args.command == "run":
        with tensorflow_quietly():
            from .worker import work  # TensorFlow starts here, not for status or export

            ran = work(spec, storage, args.max_trials)
        print(f"ran {ran} trial(s)")
    elif args.command == "export":
        written = [results.write_trials(spec, storage), report.write_report(spec, storage)]
        if ledger.is_finished(spec, storage):
            written.append(recipe.write_tuned_profile(spec, storage))
        print("wrote " + ", ".join(repo_relative(path) for path in written))
    print("\n".join(results.status_lines(spec, storage)))
    finished = ledger.is_finished(spec, storage)
    idle = args.command == "status" or (args.command == "run" and not ran)
    return NOT_FINISHED if idle and not finished else 0


if __name__ == "__main__":
    sys.exit(main())
