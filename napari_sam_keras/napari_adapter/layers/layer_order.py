"""Keeping the prompt layers visible: above every image and labels layer.

A layer added later (another image opened while the widget is in use) lands
on top and would hide the prompts, so that new clicks add points nobody can
see.  :func:`raise_layers` moves the given layers back to the top, in order.
"""

from __future__ import annotations

from .active_layer import keeping_active_layer


def raise_layers(viewer, layers) -> bool:
    """Move ``layers`` (bottom to top, ``None`` skipped) to the top; True if anything moved."""
    wanted = [layer for layer in layers if layer is not None and layer in viewer.layers]
    if not wanted:
        return False
    top = list(viewer.layers)[-len(wanted) :]
    if all(a is b for a, b in zip(top, wanted, strict=True)):
        return False
    with keeping_active_layer(viewer):
        for layer in wanted:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    return True
