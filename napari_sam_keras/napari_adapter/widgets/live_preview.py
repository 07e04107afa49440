"""The live preview: predict whenever the prompts change, show it in a layer of its own.

Clicks always win.  A change of the prompt layers only *schedules* a preview
(:meth:`LivePreview.schedule`); the preview starts from the Qt event loop
(``QTimer.singleShot(0)``), never inside the layer's callback, so no progress
bar or other event processing runs while napari is still handling the click.
While a preview runs, later clicks are collected: when it ends, one new
preview of *all* prompts starts, and the outdated result is not drawn.

The preview is drawn distinctly from committed labels: outlines in one fixed
colour (:data:`PREVIEW_COLOUR`), in the ``SAM preview`` layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
from qtpy.QtCore import QTimer

from ...segmentation.labels import masks_to_labels
from ..background.task_runner import TaskRunner
from ..layers.active_layer import keeping_active_layer
from ..layers.image_slices import ImageSlice
from ..layers.layer_pickers import PREVIEW_ROLE
from ..layers.prompt_requests import PromptRequest
from ..layers.prompts_from_layers import NoPromptsError

PREVIEW_NAME = "SAM preview"
#: The preview's colour, for every object: not one of napari's label colours.
PREVIEW_COLOUR = "#00e5ff"
#: Outline width of the preview, in screen pixels.
PREVIEW_CONTOUR = 2
_DATA_DONE = {"added", "changed", "removed"}


def preview_colormap():
    """Every label in :data:`PREVIEW_COLOUR`, background transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: PREVIEW_COLOUR, 0: "transparent"})


@dataclass(eq=False)
class Preview:
    """A preview on screen: the request it answers and its masks."""

    request: PromptRequest
    masks: list


class LivePreview:
    """Schedules previews, runs them through the widget's runner, draws them.

    Args:
        viewer: the napari viewer.
        runner: the widget's :class:`TaskRunner`.
        make_request: reads the layers into a request (``embed_only=True``: embedding only);
            raises ``SAMError`` for what the user must fix.
        start: ``start(request, description, on_done)`` runs a request's job.
        on_error: shows a user error.
        on_layer: called with the preview layer when it is created.
        alive: False once the widget is gone (a scheduled preview then does nothing).
    """

    def __init__(
        self,
        viewer,
        runner: TaskRunner,
        make_request: Callable[..., PromptRequest],
        start: Callable,
        on_error: Callable[[BaseException], None],
        on_layer: Callable[[object], None] = lambda layer: None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.viewer = viewer
        self.runner = runner
        self.make_request = make_request
        self.start = start
        self.on_error = on_error
        self.on_layer = on_layer
        self.alive = alive
        self.enabled = False
        self.layer = None
        self.current: Preview | None = None
        self._region = None
        self._wanted = False
        self._prefetch = False
        self._scheduled = False
        self._paused = False
        self._last_step: tuple | None = None

    # --- what triggers a preview -------------------------------------------------------

    def follow(self, live_checkbox, inputs, dims) -> None:
        """Preview while ``live_checkbox`` is ticked: again when an input widget or the slice changes."""
        self.enabled = bool(live_checkbox.value)
        live_checkbox.changed.connect(self._on_toggled)
        for widget in inputs:
            widget.changed.connect(self._on_input_changed)
        self._last_step = tuple(dims.current_step)
        dims.events.current_step.connect(partial(self._on_slice_changed, dims))

    def on_prompt_data(self, event=None) -> None:
        """A prompt layer's data event (inside napari's event: only schedules)."""
        action = getattr(event, "action", None)
        if action is not None and str(getattr(action, "value", action)) not in _DATA_DONE:
            return
        if not self._paused:
            self.schedule()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Prompt changes made by the widget itself (removing used prompts) trigger nothing."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _on_input_changed(self, _value=None) -> None:
        self.schedule()

    def _on_toggled(self, on: bool) -> None:
        self.enabled = bool(on)
        if on:
            self.schedule(prefetch=True)
        else:
            self.cancel()
            self.clear()

    def _on_slice_changed(self, dims, event=None) -> None:
        step = tuple(dims.current_step)
        if step != self._last_step:
            self._last_step = step
            self.clear()
            self.schedule()

    # --- scheduling and running --------------------------------------------------------

    @property
    def pending(self) -> bool:
        """A preview was asked for and has not started yet."""
        return self._wanted or self._scheduled

    def schedule(self, prefetch: bool = False) -> None:
        """Ask for a preview of the current prompts (safe inside any layer callback)."""
        if not self.enabled:
            return
        self._wanted = True
        self._prefetch = self._prefetch or prefetch
        if not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(0, self._kick)

    def cancel(self) -> None:
        """Forget previews asked for and not started."""
        self._wanted = self._prefetch = False

    def flush(self) -> None:
        """Start a scheduled preview now instead of from the event loop."""
        self._kick()

    def _kick(self) -> None:
        self._scheduled = False
        if not (self._wanted and self.enabled and self.alive()):
            self._wanted = False
            return
        if self.runner.busy:  # supersede: run again, with every prompt, once this one ends
            self.runner.after(self._kick)
            return
        self._wanted, prefetch, self._prefetch = False, self._prefetch, False
        try:
            request = self.make_request()
        except NoPromptsError:
            self.clear()
            if prefetch:
                self._start_prefetch()
            return
        except Exception as error:  # a SAMError: shown, the preview cleared
            self.clear()
            self.on_error(error)
            return
        self.start(request, "SAM: live preview", partial(self.show, request))

    def _start_prefetch(self) -> None:
        """Compute the slice's embedding before the first point (when live mode is switched on)."""
        try:
            request = self.make_request(embed_only=True)
        except Exception:  # nothing to prefetch for (no image, 3D view): the click will say
            return
        self.start(request, "SAM: live preview", lambda _masks: None)

    # --- drawing ----------------------------------------------------------------------

    def _layer_for(self, image_slice: ImageSlice):
        layer = self.layer
        shape = tuple(image_slice.spatial_shape)
        if layer is not None and layer in self.viewer.layers and layer.data.shape == shape:
            return layer
        with keeping_active_layer(self.viewer):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            image = image_slice.layer
            layer = self.viewer.add_labels(
                np.zeros(shape, dtype=np.uint8),
                name=PREVIEW_NAME,
                scale=tuple(image.scale),
                translate=tuple(image.translate),
                opacity=0.9,
                colormap=preview_colormap(),
                metadata=dict(PREVIEW_ROLE),
            )
            layer.contour = PREVIEW_CONTOUR
            self.layer = layer
        self.on_layer(layer)
        return layer

    def show(self, request: PromptRequest, masks) -> None:
        """Draw ``masks`` (unless newer prompts are waiting: then the result is outdated)."""
        image_slice = request.image_slice
        if self._wanted or image_slice.layer not in self.viewer.layers:
            return
        layer = self._layer_for(image_slice)
        self._erase(refresh=False)  # one refresh below shows both changes
        label_image = np.clip(
            masks_to_labels(list(masks), shape=image_slice.shape2d, overlap="first"), 0, 255
        )
        layer.data[image_slice.region] = label_image.astype(np.uint8)
        self._region = image_slice.region
        self.current = Preview(request=request, masks=masks)
        layer.refresh()
        n = sum(bool(np.any(m)) for m in masks)
        self.runner.status.show(f"preview of {n} object(s); Commit [C] writes it")

    def _erase(self, refresh: bool = True) -> None:
        layer = self.layer
        if layer is not None and self._region is not None and layer in self.viewer.layers:
            layer.data[self._region] = 0
            if refresh:
                layer.refresh()
        self._region = None

    def clear(self) -> None:
        """Remove the preview from the screen."""
        self.current = None
        self._erase()

    def forget_removed_layer(self) -> None:
        """After layers were removed: drop the preview layer if it was one of them."""
        if self.layer is not None and self.layer not in self.viewer.layers:
            self.layer = None
            self.current = None
            self._region = None
