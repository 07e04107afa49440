"""Prompts grouped into objects (issue 24 item 6): a click outside every box is an object of
its own, never merged into a box's object nor dropped."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.errors import PromptError
from napari_sam_keras.segmentation.prompt_objects import group_by_box, points_owner

BOX_A = [0, 0, 10, 10]
BOX_B = [20, 20, 39, 39]


def test_a_positive_point_outside_the_only_box_is_its_own_object():
    box_object, click_object = group_by_box([[30, 30]], [1], [BOX_A])
    assert box_object.box is not None and not box_object.has_points
    assert click_object.box is None
    np.testing.assert_array_equal(click_object.point_coords, [[30, 30]])


def test_points_inside_join_their_box_and_the_outside_points_make_one_object():
    points = [[5, 5], [30, 30], [15, 15], [16, 14]]
    labels = [1, 0, 1, 0]
    a, b, outside = group_by_box(points, labels, [BOX_A, BOX_B])
    np.testing.assert_array_equal(a.point_coords, [[5, 5]])
    np.testing.assert_array_equal(b.point_labels, [0])
    np.testing.assert_array_equal(outside.point_coords, [[15, 15], [16, 14]])
    np.testing.assert_array_equal(outside.point_labels, [1, 0])
    assert outside.box is None
    np.testing.assert_array_equal(points_owner(points, [BOX_A, BOX_B]), [0, 1, -1, -1])


def test_negative_points_outside_join_a_single_box_and_are_refused_with_several():
    (obj,) = group_by_box([[5, 5], [12, 12]], [1, 0], [BOX_A])  # a negative just outside
    np.testing.assert_array_equal(obj.point_labels, [1, 0])
    assert obj.box is not None
    with pytest.raises(PromptError, match="negative point"):
        group_by_box([[15, 15]], [0], [BOX_A, BOX_B])
