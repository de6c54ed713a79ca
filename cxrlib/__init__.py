"""cxrlib: data, models, training, evaluation, plots and explanations for the cxr-compare notebooks."""
import os

# TensorFlow enables its oneDNN kernels by default only on some Intel CPUs; on others (e.g. AMD EPYC)
# they train ~1.6x faster (reports/benchmarks.md). Must be set before TensorFlow is first imported;
# an explicit TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
