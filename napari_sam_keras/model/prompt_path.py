"""The prompt path: prompt encoder + mask decoder, compiled once per model and backend.

The official prompt encoder makes a different number of tokens for each kind
of prompt (points, box, both, the pad point), which would mean one
compilation per kind.  Here every prompt is padded to a fixed number of
point slots and one box, and the padding tokens are masked out of every
attention in which they are keys.  Real tokens then see exactly what they
see in the official model, so outputs match it to float round-off, while
the compiled function keeps one input signature.

The decoder's image side that does not depend on the prompt (the image
embedding plus the "no mask" embedding, and the first two-way layer's
projections of it) is computed once per embedding by a second compiled
function and shared by every prompt on that image.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

import numpy as np

from ..runtime.compiled_call import CompiledCall
from .config import SAMConfig

#: Point slots per prompt in the compiled function.  More points use the next
#: power of two (one extra compilation per size).
DEFAULT_POINT_SLOTS = 16


def point_slots_for(num_points: int, minimum: int = DEFAULT_POINT_SLOTS) -> int:
    """Point slots of the compiled function that can hold ``num_points`` (+ the pad point)."""
    slots = minimum
    while slots < num_points + 1:
        slots *= 2
    return slots


def batch_slots_for(batch: int) -> int:
    """Prompt batches are padded to a power of two so few batch sizes get compiled."""
    return 1 << max(0, int(batch - 1).bit_length())


_running_warm_ups: set[threading.Thread] = set()
_exit_hook_lock = threading.Lock()
_exit_hook_registered = False


def _track_at_exit(thread: threading.Thread) -> None:
    """Have the interpreter wait for ``thread`` before it tears itself down.

    A daemon thread still inside XLA's (or TensorFlow's) C++ compiler when
    Python finalizes is unwound by force, and the process aborts ("terminate
    called without an active exception", exit 134).  The warm-up stays a
    daemon thread (it never blocks the program itself), but an ``atexit``
    hook joins it.  The hook is registered after Keras and its backend were
    imported, so it runs before their own exit hooks.
    """
    global _exit_hook_registered
    with _exit_hook_lock:
        _running_warm_ups.add(thread)
        if not _exit_hook_registered:
            atexit.register(wait_for_warm_ups)
            _exit_hook_registered = True


def wait_for_warm_ups() -> None:
    """Wait for the background compilations still running (called at interpreter exit).

    A Ctrl-C while waiting ends the process at once with status 130, without
    the interpreter teardown that would abort under the running compiler.
    """
    with _exit_hook_lock:
        threads = list(_running_warm_ups)
        _running_warm_ups.clear()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def padded_prompts(
    config: SAMConfig,
    point_coords: list[np.ndarray | None],
    point_labels: list[np.ndarray | None],
    boxes: list[np.ndarray | None],
    mask_inputs: list[np.ndarray | None] | None,
    slots: int,
    batch: int,
) -> dict[str, np.ndarray]:
    """The prompt decoder's inputs for a list of prompts, padded to ``batch`` x ``slots``.

    Each list has one entry per prompt (see :meth:`PromptPath.run`); the pad
    point is added here, as the official prompt encoder does.  With
    ``mask_inputs=None`` the dict has no mask inputs.
    """
    pts = np.zeros((batch, slots, 2), np.float32)
    labels = np.full((batch, slots), -1, np.int32)
    valid = np.zeros((batch, slots), np.float32)
    box_arr = np.zeros((batch, 2, 2), np.float32)
    box_valid = np.zeros((batch,), np.float32)
    for i in range(len(point_coords)):
        p, lab, box = point_coords[i], point_labels[i], boxes[i]
        k = 0 if p is None else len(p)
        if k:
            pts[i, :k] = p
            labels[i, :k] = lab
            valid[i, :k] = 1.0
            if box is None:  # the official pad point: (0, 0) with label -1
                valid[i, k] = 1.0
        if box is not None:
            box_arr[i] = np.asarray(box, np.float32).reshape(2, 2)
            box_valid[i] = 1.0
    inputs = {
        "points": pts,
        "point_labels": labels,
        "point_valid": valid,
        "boxes": box_arr,
        "box_valid": box_valid,
    }
    if mask_inputs is not None:
        m = config.low_res_mask_size
        masks = np.zeros((batch, m, m, 1), np.float32)
        has_mask = np.zeros((batch,), np.float32)
        for i, mask in enumerate(mask_inputs):
            if mask is not None:
                masks[i, :, :, 0] = mask
                has_mask[i] = 1.0
        inputs.update(mask_input=masks, has_mask=has_mask)
    return inputs


class PromptPath:
    """Runs padded prompts through the compiled prompt encoder + mask decoder.

    Coordinates are in the model's input frame (after the longest-side resize).
    """

    def __init__(
        self,
        sam_model: Any,
        config: SAMConfig,
        jit_compile: bool = True,
        fold_weights: bool | None = None,
    ) -> None:
        from ..keras_layers.prompt_decoder import ImagePreparation, PromptDecoder

        self.config = config
        # same dtype policy as the network, so float inputs are cast to its compute dtype
        self.decoder = PromptDecoder(
            sam_model.prompt_encoder,
            sam_model.mask_decoder,
            config,
            fold_weights=fold_weights,
            dtype=sam_model.dtype_policy,
        )
        self.compiled = CompiledCall(self.decoder, jit_compile=jit_compile)
        self.preparation = CompiledCall(ImagePreparation(self.decoder), jit_compile=jit_compile)
        self._lock = threading.Lock()
        self._warm_thread: threading.Thread | None = None
        # the embedding the prepared image side belongs to (kept, so its id stays unique)
        self._prepared_for: np.ndarray | None = None
        self._prepared: dict[str, Any] = {}

    def start_warm_up(self) -> None:
        """Compile for single prompts in a background thread (e.g. while an embedding runs).

        The first real prompt then does not wait for the compiler.
        """
        if self._warm_thread is not None:
            return
        cfg = self.config
        dummy = np.zeros(
            (1, cfg.embedding_size, cfg.embedding_size, cfg.prompt_embed_dim), np.float32
        )

        def warm():
            try:
                self.run(
                    dummy, [np.zeros((1, 2), np.float32)], [np.ones(1, np.int32)], [None], [None]
                )
            except Exception:  # a failure shows again, with its message, on the first real call
                pass
            finally:
                with _exit_hook_lock:
                    _running_warm_ups.discard(threading.current_thread())

        self._warm_thread = threading.Thread(target=warm, name="sam-prompt-warm-up", daemon=True)
        _track_at_exit(self._warm_thread)
        self._warm_thread.start()

    @property
    def trace_count(self) -> int:
        return self.compiled.trace_count

    def forget_prepared(self) -> None:
        """Drop the prepared image side (after the decoder's weights changed, e.g. in training)."""
        with self._lock:
            self._prepared_for = None
            self._prepared = {}

    def _prepare(self, image_embedding: np.ndarray) -> dict[str, Any]:
        """The decoder's prompt-independent image side, computed once per embedding."""
        if self._prepared_for is not image_embedding:
            self._prepared = self.preparation.call_tensors(
                image_embedding.astype(np.float32, copy=False)
            )
            self._prepared_for = image_embedding
        return self._prepared

    def run(
        self,
        image_embedding: np.ndarray,
        point_coords: list[np.ndarray | None],
        point_labels: list[np.ndarray | None],
        boxes: list[np.ndarray | None],
        mask_inputs: list[np.ndarray | None] | None,
        min_point_slots: int = DEFAULT_POINT_SLOTS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode a batch of prompts; returns (low-res logits (B, 4, m, m), IoU (B, 4)).

        Each list has one entry per prompt: points (N, 2) and labels (N,) or
        None, a box (4,) or None, a low-res mask (m, m) or None.  The pad point
        is added here, as the official prompt encoder does.  ``mask_inputs=None``
        uses a compiled function without mask inputs (the automatic generator's).
        """
        n = len(point_coords)
        most = max((len(p) for p in point_coords if p is not None), default=0)
        inputs = padded_prompts(
            self.config,
            point_coords,
            point_labels,
            boxes,
            mask_inputs,
            point_slots_for(most, min_point_slots),
            batch_slots_for(n),
        )
        with self._lock:
            out = self.compiled({**inputs, **self._prepare(image_embedding)})
        low_res = out["low_res_logits"][:n].astype(np.float32, copy=False)
        return low_res, out["iou_predictions"][:n].astype(np.float32, copy=False)
