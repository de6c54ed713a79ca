"""Command line of the batch runner (``./run_all.sh`` runs ``python -m cxrlib.runner``).

Executes the numbered notebooks of one profile with papermill and writes code-free HTML reports, the
executed notebooks, runner.json, run.log and index.html to <reports-dir>/<profile>/. A failed run leaves the
earlier reports as they were (its own go to <profile>-failed/). Training notebooks keep finished replicates
in <runs-dir>/<profile>/ and resume interrupted ones; --retrain starts them afresh.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from cxrlib.contract import NOTEBOOKS_DIR, REPORTS_DIR, RUNS_DIR
from cxrlib.runner import RunError
from cxrlib.runner.console import start_console
from cxrlib.runner.machine import look
from cxrlib.runner.notebooks import strip_notebooks
from cxrlib.runner.profiles import default_profile, load_profile, parse_overrides, profile_path
from cxrlib.runner.run import run_profile

log = logging.getLogger("cxrlib.runner")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n\n")[1])
    parser.add_argument("--profile", help="profile name in profiles/ or a YAML file (default: full when a GPU is "
                        "visible and ImageNet weights can be had, else cpu)")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="run only notebooks whose name starts with PREFIX (repeatable), e.g. --only 02")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                        help="replace one profile parameter for this run (repeatable), e.g. --set sampling_seed=43; "
                             "checked like the profile's own values")
    parser.add_argument("--reports-dir", type=Path, default=REPORTS_DIR, help="where <profile>/ reports go (default: reports/)")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR,
                        help="where the <profile>/<arch>/seed-<k>/ run directories go (default: runs/)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every replicate afresh: move <runs-dir>/<profile> aside for the run (deleted on "
                             "success, restored on failure) instead of keeping finished replicates")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show everything on the terminal: papermill's cell messages, all notebook output, "
                             "the kernels' own logs (TensorFlow's C++ logging included); run.log always has it all")
    parser.add_argument("--print-parameters", action="store_true",
                        help="print the profile's parameters as papermill's -f file takes them (its extends chain and "
                             "--set values applied) and exit")
    parser.add_argument("--strip", action="store_true",
                        help="remove outputs and execution counts from notebooks/*.ipynb and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a profile (or strip the notebooks); 0 on success, 1 with the reason on the terminal otherwise."""
    args = parse_args(argv)
    start_console(args.verbose)
    if args.strip:
        changed = strip_notebooks(sorted(NOTEBOOKS_DIR.glob("*.ipynb")))
        log.info(f"stripped {len(changed)} notebook(s): {', '.join(p.name for p in changed) or 'none needed it'}")
        return 0
    try:
        overrides = parse_overrides(args.overrides)
        if args.print_parameters:
            if args.profile is None:
                raise RunError("--print-parameters prints one profile: name it with --profile NAME")
            params = load_profile(profile_path(args.profile), overrides)
            print(yaml.safe_dump({"profile": Path(args.profile).stem, **params}, sort_keys=False), end="")
            return 0
        machine = look(probe=args.profile is None)
        profile, note = (args.profile, "") if args.profile else default_profile(machine)
        run_profile(profile, args.only, args.reports_dir, args.runs_dir, note=note, overrides=overrides,
                    retrain=args.retrain, verbose=args.verbose, machine=machine)
    except RunError as err:
        log.error(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
