"""Our label files open in napari as Labels layers with their scale, and save back."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.files.axis_readers import open_axis_image
from napari_sam_keras.files.image_files import write_labels
from napari_sam_keras.files.ome_zarr import write_labels_into_image
from tests.microscopy_files import PX, PY, PZ, ome_zarr_image

pytest.importorskip("ome_zarr")
pytestmark = pytest.mark.gui
SIZES = {"Z": (PZ, "micrometer"), "Y": (PY, "micrometer"), "X": (PX, "micrometer")}


def _labels():
    labels = np.zeros((3, 20, 30), np.uint16)
    labels[1, 4:9, 5:12], labels[2, 10:15, 20:28] = 2, 5
    return labels


def test_label_tiff_and_ome_zarr_open_as_labels_with_scale_and_save_back(
    make_napari_viewer, tmp_path
):
    viewer = make_napari_viewer()
    labels = _labels()
    tif = write_labels(tmp_path / "cells-labels.tif", labels, SIZES, "ZYX")
    image = ome_zarr_image(tmp_path / "img.ome.zarr", np.zeros((3, 20, 30), np.uint16), "ZYX")
    group = write_labels_into_image(image, "sam", labels, None, SIZES, "ZYX")
    for path in (tif, group):
        for plugin in ("napari-sam-keras",):  # napari asks which plugin when several can
            layers = viewer.open(path, plugin=plugin)
            assert len(layers) == 1 and layers[0]._type_string == "labels", (path, plugin)
            np.testing.assert_allclose(layers[0].scale, (PZ, PY, PX))
            np.testing.assert_array_equal(np.asarray(layers[0].data), labels)
            viewer.layers.clear()
    layer = viewer.open(tif, plugin="napari-sam-keras")[0]
    for name in ("saved.tif", "saved.ome.zarr"):
        written = layer.save(str(tmp_path / name), plugin="napari-sam-keras")
        back = open_axis_image(written[0] if isinstance(written, list) else written)
        assert back.pixel_sizes == SIZES
        np.testing.assert_array_equal(np.asarray(back.data[...]), labels)
