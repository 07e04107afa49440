"""A Labels layer as the prompt: refine one label (from Cellpose, StarDist, a threshold, ...).

The label's mask on the displayed slice becomes SAM's mask input and its
bounding box the box prompt; positive/negative points on the slice are
added.  SAM's mask then replaces that label only: its pixels outside the new
mask become background, background pixels inside it take the label, and
other labels are kept (unless *overwrite*).
"""

from __future__ import annotations

import numpy as np

from ...errors import ImageError
from ..jobs.refine_job import RefineJob
from .labels_writing import check_labels_fit, replace_label
from .prompt_requests import PromptRequest, image_slice_of, note_used, read_prompts
from .prompts_from_layers import NoPromptsError


def refine_request(image, dims, target, label_id: int, points, source: str) -> PromptRequest:
    """The request refining ``label_id`` of ``target`` on the displayed slice of ``image``."""
    image_slice = image_slice_of(image, dims)
    if target is None:
        raise ImageError("Choose the Labels layer whose label to refine in 'labels (target)'.")
    check_labels_fit(target, image_slice.layer)
    mask = np.asarray(target.data[image_slice.region]) == int(label_id)
    if not mask.any():
        raise ImageError(
            f"Label {label_id} is not on this slice of {target.name!r}: pick a label on the "
            "slice (the layer's label picker, or 'label to refine')."
        )
    try:
        prompts = read_prompts(points, None, image_slice, dims)
    except NoPromptsError:
        prompts = None
    job = RefineJob(image_slice, mask, prompts, source)
    request = PromptRequest(job=job, signature=("refine", target, int(label_id)))
    return note_used(request, points, None)


def write_refined(viewer, request: PromptRequest, masks, overwrite: bool) -> str:
    """Replace the request's label by SAM's mask; returns what was done (for the status)."""
    _, target, label_id = request.signature
    if target not in viewer.layers:
        raise ImageError(f"Labels layer {target.name!r} was removed; nothing refined.")
    if not np.any(masks[0]):
        raise ImageError(f"SAM returned an empty mask for label {label_id}; nothing changed.")
    changed = replace_label(target, request.image_slice, label_id, masks[0], overwrite)
    return f"refined label {label_id} in {target.name!r} ({changed} pixels changed)"
