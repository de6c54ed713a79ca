"""Batch runner behind ``run_all.sh``: execute the notebooks of one profile with papermill, render HTML reports.

``python -m cxrlib.runner -h`` lists the options. One module per job:

- ``profiles``: profile files, ``--set`` overrides, the default profile and the expected duration;
- ``machine``: what this machine has (GPU, ImageNet weights), probed without starting TensorFlow here;
- ``notebooks``: which notebooks, what they declare, executing them with papermill on the project kernel
  (encrypted transport, the kernel's own output into the run log), stripping outputs;
- ``render``: executed notebook -> code-free HTML with a header bar, figure alt texts and no local paths;
- ``pages`` and ``index``: ``index.html``, ``comparison.html`` (and the search report of ``cxrlib.tune``) from the
  Jinja2 templates in ``templates/``;
- ``transaction``: reports built in a staging directory swapped in on success; ``--retrain`` for run dirs;
- ``console``: one progress line per notebook on the terminal, everything in ``run.log``;
- ``run``: one run from start to finish; ``__main__``: the command line.

This package file stays light (no papermill, no TensorFlow): ``cxrlib.tune`` imports ``pages``.
"""
from __future__ import annotations

import os

# The Jupyter kernel the notebooks run on (scripts/ensure_env.sh registers it).
KERNEL_NAME = os.environ.get("CXR_KERNEL", "cxr-compare")
# Parameters the runner injects; a profile must not set them.
RUNNER_SET = ("profile", "runs_dir", "report_dir")


class RunError(RuntimeError):
    """A run cannot start or did not finish; the message says which file or notebook and what to do."""
