"""The napari adapter's layer logic, without a window or a model.

Prompt mapping (scale, translate, nD slices, outside points), image slices
(nD, RGB, multiscale, channel axes) and labels writing (new ids, no
overwriting, one undo step) work on napari layer models only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from napari.components import ViewerModel
from napari.layers import Labels

from napari_sam_keras.errors import ImageError, PromptError
from napari_sam_keras.napari_adapter.layers.image_slices import (
    all_slice_indices,
    current_slice,
    make_slice,
    spatial_shape,
)
from napari_sam_keras.napari_adapter.layers.labels_writing import (
    create_labels_layer,
    next_free_label,
    write_label_images,
    write_masks,
)
from napari_sam_keras.napari_adapter.layers.prompts_from_layers import (
    NoPromptsError,
    label_value,
    objects_on_slice,
    prompts_on_slice,
)


def _viewer_with(image, **kwargs):
    viewer = ViewerModel()
    layer = viewer.add_image(image, **kwargs)
    return viewer, layer


# --- prompts ---------------------------------------------------------------------------


def test_points_map_through_world_coordinates_with_scale_and_translate():
    viewer, image = _viewer_with(np.zeros((40, 60)), scale=(2.0, 0.5), translate=(10.0, -4.0))
    # a points layer with its own transform: data (r, c) -> world (r*4 + 2, c*1 + 0)
    points = viewer.add_points(
        [[3.0, 5.0], [7.0, 20.0]], scale=(4.0, 1.0), translate=(2.0, 0.0), ndim=2
    )
    image_slice = current_slice(image, viewer.dims)
    prompts = prompts_on_slice(points, None, image_slice, viewer.dims.point)
    # world (14, 5) -> image data ((14-10)/2, (5+4)/0.5) = (2, 18); (30, 20) -> (10, 48)
    np.testing.assert_allclose(prompts.points_xy, [[18.0, 2.0], [48.0, 10.0]])
    np.testing.assert_array_equal(prompts.point_labels, [1, 1])
    # the adapter's arithmetic equals napari's public per-point API
    for (x, y), p in zip(prompts.points_xy, points.data, strict=True):
        np.testing.assert_allclose(image.world_to_data(points.data_to_world(p)), [y, x])


def test_boxes_from_rectangles_and_bounding_boxes_of_other_shapes():
    viewer, image = _viewer_with(np.zeros((50, 50)), scale=(2.0, 2.0))
    shapes = viewer.add_shapes(scale=(2.0, 2.0))
    shapes.add_rectangles([[[10, 20], [30, 40]]])
    shapes.add_ellipses([[[5, 5], [15, 25]]])  # centre (5, 5) radii (15, 25): clipped at 0
    image_slice = current_slice(image, viewer.dims)
    prompts = prompts_on_slice(None, shapes, image_slice, viewer.dims.point)
    np.testing.assert_allclose(prompts.boxes[0], [20, 10, 40, 30])
    np.testing.assert_allclose(prompts.boxes[1], [0, 0, 30, 20])
    objects = objects_on_slice(prompts)
    assert len(objects) == 2 and all(o.box is not None and not o.has_points for o in objects)


def test_only_prompts_on_the_displayed_slice_are_used():
    viewer, image = _viewer_with(np.zeros((6, 32, 32)), scale=(3.0, 1.0, 1.0))
    points = viewer.add_points([[4, 10, 11], [2, 5, 5], [4, 20, 21]], ndim=3, scale=(3.0, 1.0, 1.0))
    shapes = viewer.add_shapes(ndim=3, scale=(3.0, 1.0, 1.0))
    shapes.add_rectangles([[[4, 1, 1], [4, 1, 9], [4, 9, 9], [4, 9, 1]]])
    shapes.add_rectangles([[[1, 1, 1], [1, 1, 9], [1, 9, 9], [1, 9, 1]]])
    viewer.dims.set_point(0, 12.0)  # world z = 12 -> data z = 4
    image_slice = current_slice(image, viewer.dims)
    assert image_slice.index == (4, None, None)
    prompts = prompts_on_slice(points, shapes, image_slice, viewer.dims.point)
    np.testing.assert_allclose(prompts.points_xy, [[11, 10], [21, 20]])
    np.testing.assert_array_equal(prompts.point_rows, [0, 2])
    np.testing.assert_array_equal(prompts.shape_rows, [0])


def test_2d_points_over_a_stack_belong_to_the_current_slice():
    viewer, image = _viewer_with(np.zeros((5, 20, 20)))
    points = viewer.add_points([[3, 4]], ndim=2)
    viewer.dims.set_point(0, 2)
    image_slice = current_slice(image, viewer.dims)
    prompts = prompts_on_slice(points, None, image_slice, viewer.dims.point)
    np.testing.assert_allclose(prompts.points_xy, [[4, 3]])


def test_point_outside_the_image_is_an_error_not_dropped():
    viewer, image = _viewer_with(np.zeros((20, 30)))
    points = viewer.add_points([[5, 5], [25, 5]])
    image_slice = current_slice(image, viewer.dims)
    with pytest.raises(PromptError, match="outside"):
        prompts_on_slice(points, None, image_slice, viewer.dims.point)


def test_box_entirely_outside_is_an_error_and_partial_boxes_are_clipped():
    viewer, image = _viewer_with(np.zeros((20, 30)))
    shapes = viewer.add_shapes()
    shapes.add_rectangles([[[-5, -5], [10, 40]]])
    image_slice = current_slice(image, viewer.dims)
    prompts = prompts_on_slice(None, shapes, image_slice, viewer.dims.point)
    np.testing.assert_allclose(prompts.boxes, [[0, 0, 29, 10]])
    shapes.add_rectangles([[[40, 40], [50, 50]]])
    with pytest.raises(PromptError, match="outside"):
        prompts_on_slice(None, shapes, image_slice, viewer.dims.point)


def test_point_labels_from_the_label_feature():
    viewer, image = _viewer_with(np.zeros((20, 20)))
    features = pd.DataFrame({"label": ["positive", "negative", 1, 0]})
    points = viewer.add_points([[1, 1], [2, 2], [3, 3], [4, 4]], features=features)
    image_slice = current_slice(image, viewer.dims)
    prompts = prompts_on_slice(points, None, image_slice, viewer.dims.point)
    np.testing.assert_array_equal(prompts.point_labels, [1, 0, 1, 0])
    assert label_value(True) == 1 and label_value("Background") == 0
    with pytest.raises(PromptError):
        label_value("maybe")


def test_grouping_prompts_into_objects():
    viewer, image = _viewer_with(np.zeros((40, 40)))
    image_slice = current_slice(image, viewer.dims)
    with pytest.raises(NoPromptsError):
        objects_on_slice(prompts_on_slice(None, None, image_slice, viewer.dims.point))
    points = viewer.add_points([[5, 5], [30, 30]], features={"label": ["positive", "negative"]})
    shapes = viewer.add_shapes()
    prompts = prompts_on_slice(points, shapes, image_slice, viewer.dims.point)
    (obj,) = objects_on_slice(prompts)
    assert obj.has_points and obj.box is None
    shapes.add_rectangles([[[0, 0], [10, 10]], [[20, 20], [39, 39]]])
    prompts = prompts_on_slice(points, shapes, image_slice, viewer.dims.point)
    first, second = objects_on_slice(prompts)
    np.testing.assert_allclose(first.point_coords, [[5, 5]])
    np.testing.assert_array_equal(second.point_labels, [0])
    points.data = np.array([[15.0, 15.0]])  # in no box: an object of its own
    *_boxes, click = objects_on_slice(
        prompts_on_slice(points, shapes, image_slice, viewer.dims.point)
    )
    assert click.box is None and click.has_points


# --- image slices ----------------------------------------------------------------------


def test_rgb_slice_keeps_colour_and_labels_get_spatial_shape():
    viewer, image = _viewer_with(np.zeros((30, 40, 3), dtype=np.uint8), rgb=True)
    image_slice = current_slice(image, viewer.dims)
    assert image_slice.data.shape == (30, 40, 3)
    assert spatial_shape(image) == (30, 40)
    labels = create_labels_layer(viewer, image)
    assert labels.data.shape == (30, 40)


def test_labels_layer_copies_scale_and_translate():
    viewer, image = _viewer_with(np.zeros((4, 30, 40)), scale=(3, 0.5, 0.5), translate=(1, 2, 3))
    labels = create_labels_layer(viewer, image)
    assert labels.data.shape == (4, 30, 40)
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)


def test_channel_axis_is_refused_with_advice():
    viewer, image = _viewer_with(np.zeros((3, 32, 32, 2)))
    with pytest.raises(ImageError, match="channel"):
        current_slice(image, viewer.dims)


def test_3d_display_is_refused():
    viewer, image = _viewer_with(np.zeros((4, 32, 32)))
    viewer.dims.ndisplay = 3
    with pytest.raises(ImageError, match="2D"):
        current_slice(image, viewer.dims)


def test_multiscale_uses_a_level_that_fits_and_maps_back():
    full = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    viewer, image = _viewer_with([full, full[::2, ::2]], multiscale=True)
    image_slice = make_slice(image, (None, None), (0, 1), max_side=40)
    assert image_slice.level == 1 and image_slice.data.shape == (32, 32)
    assert image_slice.downsample == (2.0, 2.0)
    # full-res pixel centre 10 -> level pixel 4.75; masks come back at full resolution
    np.testing.assert_allclose(image_slice.to_level_xy([[10.0, 20.0]]), [[4.75, 9.75]])
    mask = np.zeros((32, 32), bool)
    mask[5, 6] = True
    full_mask = image_slice.to_full_resolution(mask)
    assert full_mask.shape == (64, 64)
    assert np.argwhere(full_mask).tolist() == [[10, 12], [10, 13], [11, 12], [11, 13]]
    assert make_slice(image, (None, None), (0, 1), max_side=None).level == 0


def test_every_slice_indices():
    viewer, image = _viewer_with(np.zeros((2, 3, 16, 16)))
    indices = list(all_slice_indices(image, (2, 3)))
    assert len(indices) == 6 and indices[0] == (0, 0, None, None) and indices[-1][:2] == (1, 2)


# --- labels writing --------------------------------------------------------------------


def _labels(data):
    layer = Labels(np.asarray(data, dtype=np.int32))
    return layer


def test_masks_get_the_next_free_ids_and_one_undo_step():
    viewer, image = _viewer_with(np.zeros((3, 10, 10)))
    labels = create_labels_layer(viewer, image)
    labels.data[0, 0, 0] = 4
    viewer.dims.set_point(0, 1)
    image_slice = current_slice(image, viewer.dims)
    a = np.zeros((10, 10), bool)
    a[1:4, 1:4] = True
    b = np.zeros((10, 10), bool)
    b[6:9, 6:9] = True
    assert next_free_label(labels) == 5
    ids = write_masks(labels, image_slice, [a, b])
    assert ids == [5, 6]
    assert set(np.unique(labels.data[1])) == {0, 5, 6}
    assert not labels.data[2].any() and labels.data[0].sum() == 4
    labels.undo()
    assert set(np.unique(labels.data)) == {0, 4} and not labels.data[1].any()
    labels.redo()
    assert set(np.unique(labels.data[1])) == {0, 5, 6}


def test_existing_labels_survive_unless_overwrite():
    viewer, image = _viewer_with(np.zeros((10, 10)))
    labels = create_labels_layer(viewer, image)
    labels.data[0:5, :] = 7
    image_slice = current_slice(image, viewer.dims)
    mask = np.zeros((10, 10), bool)
    mask[3:8, 3:8] = True
    assert write_masks(labels, image_slice, [mask]) == [8]
    assert (labels.data[0:5] == 7).all() and (labels.data[5:8, 3:8] == 8).all()
    labels.undo()
    assert write_masks(labels, image_slice, [mask], overwrite=True) == [8]
    assert (labels.data[3:8, 3:8] == 8).all() and (labels.data[0:3] == 7).all()
    # a mask that only covers existing labels writes nothing
    inside = np.zeros((10, 10), bool)
    inside[0:2, 0:2] = True
    assert write_masks(labels, image_slice, [inside]) == []


def test_label_images_from_several_slices_get_consecutive_ids():
    labels = _labels(np.zeros((2, 4, 4)))
    first = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 2, 2], [0, 0, 0, 0]])
    second = np.array([[0, 0, 0, 0], [3, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    ids = write_label_images(labels, [((0, None, None), first), ((1, None, None), second)])
    assert ids == [1, 2, 3]
    assert labels.data[0, 0, 0] == 1 and labels.data[0, 2, 2] == 2 and labels.data[1, 1, 0] == 3
    labels.undo()
    assert not labels.data.any()


def test_label_dtype_too_small_is_a_user_error():
    labels = Labels(np.full((4, 4), 255, dtype=np.uint8))
    labels.data[0, 0] = 0
    piece = np.zeros((4, 4), int)
    piece[0, 0] = 1
    with pytest.raises(ImageError, match="cannot hold"):
        write_label_images(labels, [((None, None), piece)])
    assert labels.data[0, 0] == 0
