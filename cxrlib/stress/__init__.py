"""The stress test: a trained run's test images under declared acquisition shifts (field of view, black frame,
exposure, contrast, gamma, blur, noise, rotation), each image's score and OOD flag recorded in ``stress.csv``.

Modules, one job each: shifts (the declaration, ``stress/shifts.yaml``, read and checked; no TensorFlow), apply (one
shift on a batch of images, with tf.image and Keras ops), record (a model and its OOD detector on every shifted test
image; ``stress.csv``), summary (per shift and strength: share called PNEUMONIA per class, ROC-AUC, share flagged,
decisions flipped; across replicates with t-intervals; no TensorFlow), frame (black pixels, outer band and frame box;
NumPy), border (the black frame of validation images masked or cropped: does the decision depend on it), acquisition
(a model-independent acquisition check: per-image statistics, a reference on training images, a flag at a declared
rate; no TensorFlow), acquisition_check (that check on a run's training and validation images under every shift:
``acquisition.csv``), __main__ (``python -m cxrlib.stress RUN_DIR``).
"""
