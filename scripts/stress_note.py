"""Write the stress-test note (docs/STRESS.md) from runs' records folders:

    python scripts/stress_note.py RECORDS_DIR... [--command "CMD"]... [--acquisition FILE] [--out docs/STRESS.md]

Each RECORDS_DIR holds a run's run.json, predictions.csv and stress.csv (``python -m cxrlib.stress RUN_DIR``), and
optionally border.csv (``--border-check``); each --command is shown in the note as one of the commands that made them.
--acquisition adds the acquisition check's section from its record (``python -m cxrlib.stress.acquisition_check``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from cxrlib.contract import REPO_ROOT  # noqa: E402
from cxrlib.files import write_atomic  # noqa: E402
from cxrlib.report.stress import markdown_note  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write the note; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("records_dirs", nargs="+", type=Path, metavar="RECORDS_DIR")
    parser.add_argument("--command", action="append", default=[], help="a command that made the records (repeat)")
    parser.add_argument("--acquisition", type=Path, metavar="FILE", help="the acquisition check's record, e.g. "
                                                                         "reports/stress-cpu/acquisition.csv")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "STRESS.md")
    args = parser.parse_args(argv)
    try:
        note = markdown_note(args.records_dirs, args.command, args.acquisition)
    except ValueError as error:
        print(f"stress_note: error: {error}", file=sys.stderr)
        return 1
    written = write_atomic(args.out, note + "\n")
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
