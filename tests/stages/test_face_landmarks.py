"""stages/face_landmarks.py on small synthetic tracks: rows per source frame, identity pieces, segment cuts.

The real-media side (every source frame of a 29.97 fps clip, the alignment fixture, visual fitting
the rows without decoding) is in test_faces.py, test_alignment.py and test_visual.py.
"""

from __future__ import annotations

import math

import numpy as np

from stages.face_landmarks import collect_track_landmarks, scale_measure, select_landmarks
from stages.face_tracking import CropMeasure, Detection, RawTrack
from stages.item import TrackLandmarks


def measure(value: float) -> CropMeasure:
    return CropMeasure(np.full((478, 3), value, np.float32), np.eye(4, dtype=np.float32),
                       np.full(52, 0.5, np.float32))


def detection(value: float | None) -> Detection:
    return Detection(np.array([0, 0, 10, 10], np.float32), 0.9, landmarks=None if value is None else measure(value))


def test_rows_cover_detections_coasted_frames_and_frames_between_grid_times() -> None:
    # grid frames 0..4 at 25 Hz; frame 2 coasted (None), frame 3 detected but not landmarked
    frame_pts = [0.0, 0.04, 0.08, 0.12, 0.16, 0.20]
    raw = RawTrack(track_id=7, first_frame=0, detections=[detection(1), detection(2), None, detection(None),
                                                          detection(5)])
    extra = {7: {0.02: measure(1.5), 0.08: measure(3), 0.18: measure(6), 0.30: measure(9)},
             8: {0.06: measure(-1)}}
    lm = collect_track_landmarks(raw, frame_pts, extra)
    assert lm is not None
    # 0.18 lies between the last grid frame (0.16) and the next (0.20): this track's; 0.30 after it is not
    np.testing.assert_allclose(lm.times_s, [0.0, 0.02, 0.04, 0.08, 0.12, 0.16, 0.18])
    assert lm.found.tolist() == [True, True, True, True, False, True, True]
    assert lm.points[:, 0, 0][lm.found].tolist() == [1, 1.5, 2, 3, 5, 6]  # the coasted frame got its follow-up
    assert np.isnan(lm.points[4]).all() and (lm.scores[4] == 0).all()


def test_identity_pieces_take_the_extra_rows_of_their_own_time_span() -> None:
    frame_pts = [0.0, 0.04, 0.08, 0.12]
    first = RawTrack(track_id=3, first_frame=0, detections=[detection(1), detection(2)], split_from=3)
    second = RawTrack(track_id=9, first_frame=2, detections=[detection(3), detection(4)], split_from=3)
    extra = {3: {0.06: measure(2.5), 0.10: measure(3.5)}}  # measured on the tracker's track 3, before the cut
    a, b = (collect_track_landmarks(r, frame_pts, extra) for r in (first, second))
    np.testing.assert_allclose(a.times_s, [0.0, 0.04, 0.06])
    np.testing.assert_allclose(b.times_s, [0.08, 0.10, 0.12])


def test_frames_with_no_picture_are_skipped_and_points_scale_to_source_pixels() -> None:
    raw = RawTrack(track_id=0, first_frame=0, detections=[detection(1), detection(2)])
    lm = collect_track_landmarks(raw, [math.nan, 0.04], {})
    np.testing.assert_allclose(lm.times_s, [0.04])
    assert scale_measure(measure(2.0), 1.5).landmarks[0, 0] == 3.0


def rows(times: np.ndarray, found: np.ndarray | None = None) -> TrackLandmarks:
    n = len(times)
    pts = np.repeat(times[:, None, None], 478, axis=1).repeat(3, axis=2).astype(np.float32)
    return TrackLandmarks(times_s=times, points=pts, scores=np.zeros((n, 52), np.float32),
                          matrices=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
                          found=np.ones(n, bool) if found is None else found)


def test_a_segment_gets_the_frame_on_screen_at_each_end_and_faceless_padding_where_the_track_is_not() -> None:
    lm = rows(np.arange(26) * 0.04)  # 0 .. 1.0 s
    inside = select_landmarks(lm, 0.21, 0.59, 640, 360)
    assert inside.times_s[0] == 0.2 and inside.times_s[-1] == 0.6  # the frames around the ends
    assert inside.face_mask.all() and inside.width_px == 640 and inside.height_px == 360
    past = select_landmarks(lm, 0.8, 1.4, 640, 360)
    assert past.times_s[-1] >= 1.4 - 1e-9 and not past.face_mask[past.times_s > 1.0 + 1e-9].any()
    assert np.isnan(past.landmarks[past.times_s > 1.0 + 1e-9]).all()
    np.testing.assert_allclose(np.diff(past.times_s), 0.04, atol=1e-9)  # padded at the track's frame rate
    assert 0.5 < past.faceless_frac < 0.7  # 0.4 s of the 0.6-s segment has no row of this face
    before = select_landmarks(rows(np.arange(10) * 0.04 + 1.0), 0.6, 1.3, 640, 360)
    assert before.times_s[0] <= 0.6 + 1e-9 and not before.face_mask[before.times_s < 1.0 - 1e-9].any()
    assert select_landmarks(lm, 2.0, 3.0, 640, 360) is None  # the track is not on screen then
