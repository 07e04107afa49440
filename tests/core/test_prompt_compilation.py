"""The prompt path compiles once, whatever the kind of prompt."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras import SAMPredictor


@pytest.mark.other_backends(backends=("tensorflow",))  # torch runs eagerly: nothing compiles
@pytest.mark.skipif(
    __import__("keras").backend.backend() == "torch", reason="torch runs eagerly; nothing compiles"
)
def test_no_retrace_across_prompt_kinds(tiny_network):
    predictor = SAMPredictor(tiny_network)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 255, (120, 90), dtype=np.uint8))
    predictor.predict(point_coords=[[10, 10]], point_labels=[1])
    traces = predictor.prompt_path.trace_count
    assert traces >= 1
    low = None
    for n in (1, 2, 5, 15):  # point counts up to the bound (16 slots, with the pad point)
        pts = rng.uniform(0, 89, (n, 2))
        _, _, low = predictor.predict(point_coords=pts, point_labels=rng.integers(0, 2, n))
    predictor.predict(box=[5, 5, 60, 80])
    predictor.predict(box=[5, 5, 60, 80], point_coords=[[20, 30]], point_labels=[0])
    predictor.predict(point_coords=[[20, 30]], point_labels=[1], mask_input=low[:1])
    predictor.predict(box=[5, 5, 60, 80], multimask_output=False, mask_input=low[:1])
    assert predictor.prompt_path.trace_count == traces
