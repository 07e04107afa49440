"""Adding or moving layers without stealing the user's active layer.

napari makes every new layer the active one.  The widgets add layers (prompt
layers, the preview, a target Labels layer) and move the prompt layers to the
top; the user's selection must survive that, so each such change runs inside
:func:`keeping_active_layer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def keeping_active_layer(viewer, prefer=None) -> Iterator[None]:
    """Restore the active layer on exit (``prefer`` instead, when given and still present)."""
    active = viewer.layers.selection.active
    try:
        yield
    finally:
        target = prefer if prefer is not None else active
        if target is not None and target in viewer.layers:
            if viewer.layers.selection.active is not target:
                viewer.layers.selection.active = target
