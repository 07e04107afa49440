"""Compiling a Keras model's forward pass once, the fastest way each backend offers.

* jax: ``jax.jit`` of the model's stateless call (XLA).
* tensorflow: ``tf.function`` (XLA when ``jit_compile``), one trace per input shape.
* torch: eager execution under ``torch.no_grad()``.

``CompiledCall.trace_count`` counts how often the Python forward pass was
traced, which is how tests prove that changing the prompt kind does not
recompile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import import_keras


class CompiledCall:
    """``fn(inputs) -> outputs`` (numpy in, numpy out) for a Keras model or layer."""

    def __init__(self, model: Any, jit_compile: bool = True) -> None:
        self.keras = import_keras()
        self.model = model
        self.backend = self.keras.backend.backend()
        self.jit_compile = jit_compile
        self.trace_count = 0
        self._fn = self._build()

    def _forward(self, inputs: Any) -> Any:
        self.trace_count += 1
        return self.model(inputs, training=False)

    def _build(self):
        if self.backend == "jax":
            import jax

            model = self.model

            def stateless(trainable, non_trainable, inputs):
                self.trace_count += 1
                out, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
                return out

            jitted = jax.jit(stateless) if self.jit_compile else stateless
            # Collecting a model's variables walks all its layers; the variables stay
            # the same objects (loading weights assigns new values to them).
            trainable = list(model.trainable_variables)
            non_trainable = list(model.non_trainable_variables)

            def run(inputs):
                return jitted(
                    [v.value for v in trainable], [v.value for v in non_trainable], inputs
                )

            return run
        if self.backend == "tensorflow":
            import tensorflow as tf

            traced = tf.function(self._forward, jit_compile=self.jit_compile, autograph=False)

            def run(inputs):
                # Tensors, not numpy arrays: the trace then depends on shapes only.
                return traced(tf.nest.map_structure(tf.convert_to_tensor, inputs))

            return run
        if self.backend == "torch":
            import torch

            def run(inputs):
                with torch.no_grad():
                    return self._forward(inputs)

            return run
        raise RuntimeError(f"Unsupported Keras backend {self.backend!r}")

    def call_tensors(self, inputs: Any) -> Any:
        """The outputs as the backend's tensors (no copy to numpy), e.g. to feed another call."""
        return self._fn(inputs)

    def __call__(self, inputs: Any) -> Any:
        outputs = self._fn(inputs)
        return self.keras.tree.map_structure(
            lambda t: np.asarray(self.keras.ops.convert_to_numpy(t)), outputs
        )
