# Sourced by run_all.sh and run_tests.sh: make sure a Python environment with cxrlib and its pinned
# dependencies is active, creating the project's .venv on first use. Idempotent and fast when done.
# Uses the active virtualenv/conda env if there is one, else ./.venv (created with python3 >= 3.11).
# Exports CXR_PYTHON (the interpreter to use) and CXR_KERNEL (the registered Jupyter kernel's name).

cxr_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CXR_KERNEL="cxr-compare"

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
    cxr_env="$VIRTUAL_ENV"
elif [[ -n "${CONDA_PREFIX:-}" && "${CONDA_DEFAULT_ENV:-base}" != "base" ]]; then
    cxr_env="$CONDA_PREFIX"
else
    cxr_env="$cxr_root/.venv"
    if [[ ! -x "$cxr_env/bin/python" ]]; then
        base_python="$(command -v python3 || true)"
        if [[ -z "$base_python" ]] || ! "$base_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "error: cxr-compare needs Python 3.11 or newer as 'python3' (found: ${base_python:-none})." >&2
            echo "       Install it, or activate an environment made from environment.yml, then run again." >&2
            return 1 2>/dev/null || exit 1
        fi
        echo "==> creating the project environment in $cxr_env"
        "$base_python" -m venv "$cxr_env" || { return 1 2>/dev/null || exit 1; }
    fi
fi

CXR_PYTHON="$cxr_env/bin/python"
cxr_stamp="$cxr_env/.cxr-compare.stamp"
cxr_want="$(cat "$cxr_root/pyproject.toml" "$cxr_root/scripts/ensure_env.sh" | sha256sum | cut -d' ' -f1) $cxr_root"
# Facts defined in cxrlib/contract.py, printed as shell assignments: the environment TensorFlow starts with
# (ONEDNN_ENV) as the array cxr_tf_env=(NAME VALUE ...). (The shared data copy beside the repository needs nothing
# here: cxrlib.data.locate_data finds it.)
cxr_facts() {
    (cd "$cxr_root" && "$CXR_PYTHON" -c 'import shlex
from cxrlib.contract import ONEDNN_ENV
pairs = [shlex.quote(item) for pair in ONEDNN_ENV.items() for item in pair]
print("cxr_tf_env=(" + " ".join(pairs) + ")")')
}
if [[ ! -f "$cxr_stamp" || "$(cat "$cxr_stamp")" != "$cxr_want" ]]; then
    echo "==> installing cxrlib and its pinned dependencies into $cxr_env (first run takes a few minutes)"
    # The kernel spec carries ONEDNN_ENV, so notebooks in JupyterLab start TensorFlow as the runner's do.
    "$CXR_PYTHON" -m pip install --quiet --upgrade pip \
        && "$CXR_PYTHON" -m pip install --quiet -e "$cxr_root[dev]" \
        && eval "$(cxr_facts)" \
        && "$CXR_PYTHON" -m ipykernel install --sys-prefix --name "$CXR_KERNEL" \
               --display-name "Python (cxr-compare)" $(printf -- '--env %s %s ' "${cxr_tf_env[@]}") >/dev/null \
        || { echo "error: installing the environment failed (see pip's message above)." >&2; return 1 2>/dev/null || exit 1; }
    echo "$cxr_want" > "$cxr_stamp"
fi
eval "$(cxr_facts)"

# oneDNN kernels train ~1.6x faster on CPUs where TensorFlow leaves them off (reports/benchmarks.md); a value
# already set wins.
for (( cxr_i = 0; cxr_i < ${#cxr_tf_env[@]}; cxr_i += 2 )); do
    [[ -n "${!cxr_tf_env[cxr_i]:-}" ]] || export "${cxr_tf_env[cxr_i]}=${cxr_tf_env[cxr_i + 1]}"
done
unset -f cxr_facts
export CXR_PYTHON CXR_KERNEL
export PATH="$cxr_env/bin:$PATH"
