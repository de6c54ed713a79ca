"""cxrlib: data, models, training, evaluation, plots and explanations for the cxr-compare notebooks.

Importing it changes nothing in the caller's process; the environment TensorFlow should start with
(``contract.ONEDNN_ENV``) is set where processes start: the kernel spec, the runner, the command lines.
"""
__version__ = "0.1.0"
