"""Keras-only classes: the networks' forward passes, defined at module level.

Importing this package imports Keras (and keras-cv, TensorFlow) with the chosen
backend, the OpenGL-safe way (:func:`napari_sam_keras.runtime.backend.import_keras`),
so import it only when a network is about to be built or run.
"""

from ..runtime.backend import import_keras

import_keras()
