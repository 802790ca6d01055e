"""Tests of dlib's 68-point layout helpers (thflax/face/points.py): the groups and the mouth opening that
the measures, the corpus and dubbing all read."""

from __future__ import annotations

import numpy as np

from thflax.face import points


def test_groups_cover_the_layout_without_overlap() -> None:
    assert points.MOUTH == points.OUTER_LIP + points.INNER_LIP and len(points.MOUTH) == 20
    assert not set(points.JAW) & set(points.NOSE) and not set(points.NOSE) & set(points.MOUTH)
    assert points.NOSE_TIP in points.NOSE and max(points.MOUTH) == points.NUM_POINTS - 1
    assert set(points.UPPER_INNER) | set(points.LOWER_INNER) <= set(points.INNER_LIP)


def _mouth(gap: float, width: float, scale: float = 1.0) -> np.ndarray:
    """[68, 2] points with the corners `width` apart and the inner lip pairs `gap` apart, times `scale`."""
    lm = np.zeros((68, 2))
    lm[points.MOUTH_LEFT], lm[points.MOUTH_RIGHT] = (0, 0), (width, 0)
    for k, (u, d) in enumerate(zip(points.UPPER_INNER, points.LOWER_INNER)):
        lm[u], lm[d] = (k + 1, -gap / 2), (k + 1, gap / 2)
    return lm * scale


def test_mouth_opening_is_gap_over_width_whatever_the_face_size() -> None:
    assert points.mouth_opening(_mouth(2.0, 10.0)) == np.float64(0.2)
    np.testing.assert_allclose(points.mouth_opening(_mouth(2.0, 10.0, scale=3.7)), 0.2)
    batch = np.stack([_mouth(0.0, 10.0), _mouth(4.0, 10.0)])
    np.testing.assert_allclose(points.mouth_opening(batch), [0.0, 0.4])  # [..., 68, 2] -> [...]


def test_zero_width_is_nan_unless_a_minimum_width_is_given() -> None:
    closed_corners = _mouth(1.0, 0.0)
    assert np.isnan(points.mouth_opening(closed_corners))
    assert points.mouth_opening(closed_corners, min_width=2.0) == 0.5
    lost = _mouth(1.0, 10.0)
    lost[62] = np.nan
    assert np.isnan(points.mouth_opening(lost)) and np.isnan(points.mouth_opening(lost, min_width=1.0))
