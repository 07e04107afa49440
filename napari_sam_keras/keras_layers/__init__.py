"""Keras-only classes: the networks' forward passes, defined at module level.

Importing this package imports Keras with the chosen backend (TensorFlow only on
the tensorflow backend, never keras-cv), the OpenGL-safe way (:func:`napari_sam_keras.runtime.backend.import_keras`),
so import it only when a network is about to be built or run.
"""

from ..runtime.backend import import_keras

import_keras()
