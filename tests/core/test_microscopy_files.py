"""Microscopy files in and out without a model: axes, pixel sizes, OME-Zarr labels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam_keras.errors import ImageError
from napari_sam_keras.files.axis_readers import open_axis_image, open_planes
from napari_sam_keras.files.image_files import write_labels
from napari_sam_keras.files.ome_zarr import (
    read_ome_zarr_attributes,
    read_ome_zarr_labels,
    write_labels_into_image,
    write_ome_zarr_labels,
)
from tests.microscopy_files import (
    DT,
    PX,
    PY,
    PZ,
    array_bytes,
    imagej_hyperstack,
    ome_tiff,
    ome_zarr_image,
    read_with_ome_zarr_py,
    validate_ngff,
)

pytest.importorskip("ome_zarr")
UM = "micrometer"


def test_axes_and_pixel_sizes_of_ome_tiff_imagej_and_ome_zarr(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 3, 2, 16, 20), dtype=np.uint16)  # T, Z, C, Y, X
    cyx = ome_tiff(tmp_path / "cyx.ome.tif", data[0, 0], "CYX")
    tzyx = ome_tiff(tmp_path / "tzyx.ome.tif", data[:, :, 0], "TZYX")
    yxs = ome_tiff(tmp_path / "rgb.ome.tif", rng.integers(0, 255, (16, 20, 3), np.uint8), "YXS")
    hyper = imagej_hyperstack(tmp_path / "hyper.tif", data)
    zarr_in = ome_zarr_image(tmp_path / "img.ome.zarr", data[:, :, 0], "TZYX")

    assert open_axis_image(cyx).axes == "CYX"
    assert open_axis_image(yxs).axes == "YXS"
    image = open_axis_image(tzyx)
    assert image.axes == "TZYX"
    assert image.pixel_sizes == {"X": (PX, UM), "Y": (PY, UM), "Z": (PZ, UM), "T": (DT, "second")}
    image = open_axis_image(hyper)
    assert image.axes == "TZCYX"
    assert image.pixel_sizes == {"X": (PX, UM), "Y": (PY, UM), "Z": (PZ, UM), "T": (DT, "second")}
    image = open_axis_image(zarr_in)
    assert image.axes == "TZYX" and image.ome_zarr_image == zarr_in
    assert image.pixel_sizes == {"T": (DT, "second"), "Z": (PZ, UM), "Y": (PY, UM), "X": (PX, UM)}
    assert not isinstance(image.data, np.ndarray)  # read lazily

    # planes by axis name: the same pixels whichever file they come from
    want = data[1, :, 1]  # t=1, c=1: a Z stack
    for path in (hyper,):
        chosen = open_planes(path, channel=1, t=1, stack=True)
        assert chosen.axes == "ZYX" and chosen.scale() == (PZ, PY, PX)
        np.testing.assert_array_equal(np.asarray(chosen.data), want)
        np.testing.assert_array_equal(chosen.data[2, 3:5], want[2, 3:5])  # lazily, a part
    chosen = open_planes(zarr_in, t=1, z=2)
    assert chosen.axes == "YX"
    np.testing.assert_array_equal(np.asarray(chosen.data), data[1, 2, 0])
    np.testing.assert_array_equal(np.asarray(open_planes(cyx, channel=1).data), data[0, 0, 1])
    assert open_planes(yxs).axes == "YXS" and open_planes(yxs, channel=1).axes == "YX"


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "cyx",
            {"z": 1},
            r"--z 1: .*axes CYX.* has no z axis: its channel axis \(3\) is chosen with --channel",
        ),
        ("cyx", {}, r"has 3 channels: choose one with --channel \(0..2\)"),
        ("cyx", {"channel": 3}, r"--channel 3 is outside 0..2"),
        ("rgb", {"z": 3}, r"--z 3: .*axes YXS.* has no z axis: it is a single 2D image"),
        ("tzyx", {"z": 1}, r"is a stack: choose a plane with --t \(0..1\)"),
        ("tzyx", {"t": 0, "z": 9}, r"--z 9 is outside 0..2"),
    ],
)
def test_axis_mismatches_name_the_axes(tmp_path, name, kwargs, message):
    files = {
        "cyx": (np.zeros((3, 16, 20), np.uint16), "CYX"),
        "rgb": (np.zeros((16, 20, 3), np.uint8), "YXS"),
        "tzyx": (np.zeros((2, 3, 16, 20), np.uint16), "TZYX"),
    }
    path = ome_tiff(tmp_path / f"{name}.ome.tif", *files[name])
    with pytest.raises(ImageError, match=message):
        open_planes(path, **kwargs)


def test_label_tiff_keeps_pixel_sizes(tmp_path):
    image = open_planes(
        imagej_hyperstack(tmp_path / "h.tif", np.zeros((2, 3, 2, 16, 20), np.uint16)),
        channel=0,
        t=1,
        stack=True,
    )
    labels = np.zeros((3, 16, 20), np.uint16)
    labels[1, 2:5, 3:9] = 4
    out = write_labels(tmp_path / "l.tif", labels, image.pixel_sizes, image.label_axes)
    back = open_axis_image(out)
    assert back.axes == "ZYX" and back.pixel_sizes == image.pixel_sizes
    np.testing.assert_array_equal(tifffile.imread(out), labels)
    with tifffile.TiffFile(out) as tif:  # plain TIFF readers (ImageJ's opener): X/Y in cm
        num, den = tif.pages.first.tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / PX)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_labels_validate_and_keep_pixel_sizes(tmp_path, version):
    labels = np.zeros((3, 40, 50), np.uint16)
    labels[1, 5:9, 5:20], labels[2, 20:30, 30:45] = 3, 7
    sizes = {"Z": (PZ, UM), "Y": (PY, UM), "X": (PX, UM)}
    path = write_ome_zarr_labels(
        tmp_path / "l.ome.zarr", labels, {"ours": 1}, sizes, version=version
    )
    validate_ngff(path, version)
    np.testing.assert_array_equal(read_ome_zarr_labels(path), labels)
    assert open_axis_image(path).pixel_sizes == sizes
    assert read_ome_zarr_attributes(path)["ours"] == 1
    nodes, _ = read_with_ome_zarr_py(path, version)
    assert nodes and nodes[0].data[0].shape == labels.shape


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_labels_go_into_the_input_ome_zarr_and_leave_its_arrays_alone(tmp_path, version):
    data = np.random.default_rng(1).integers(0, 4000, (2, 30, 40), dtype=np.uint16)
    image = ome_zarr_image(tmp_path / "img.ome.zarr", data, "ZYX", version)
    before = array_bytes(image)
    selection = open_planes(image, stack=True)
    labels = np.zeros((2, 30, 40), np.uint8)
    labels[0, 3:9, 4:12] = 1
    target = write_labels_into_image(image, "sam", labels, None, selection.pixel_sizes, "ZYX")
    assert target == image / "labels" / "sam"
    assert array_bytes(image) == before  # the image's own arrays and metadata untouched
    validate_ngff(target, version)
    attrs = read_ome_zarr_attributes(target)
    source = attrs.get("ome", attrs)["image-label"]["source"]["image"]
    assert (target / source).resolve() == image.resolve()
    assert open_axis_image(target).pixel_sizes == selection.pixel_sizes
    nodes, problems = read_with_ome_zarr_py(image, version)
    assert problems == []
    label_nodes = [
        n
        for n in nodes
        if "image-label" in str(n.metadata) or n.zarr.path.rstrip("/").endswith("sam")
    ]
    assert label_nodes
    # a second label image joins the list; an existing one is refused without overwrite
    write_labels_into_image(image, "more", labels, None, selection.pixel_sizes, "ZYX")
    listed = read_ome_zarr_attributes(image / "labels")
    listed = listed.get("ome", listed)["labels"]
    assert listed == ["sam", "more"]
    with pytest.raises(Exception, match="exists"):
        write_labels_into_image(image, "sam", labels)
    assert array_bytes(image) == before
