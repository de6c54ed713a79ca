"""cxrlib: data, models, training, evaluation, plots and explanations for the cxr-compare notebooks."""

__version__ = "0.1.0"
