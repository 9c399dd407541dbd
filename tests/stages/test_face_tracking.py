"""IoU tracker and identity splitting (pure logic, synthetic boxes and embeddings)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.face_tracking import (
    Detection,
    IouTracker,
    choose_cut_frame,
    compute_iou,
    cosine_to_mean,
    distance_to_mean,
    find_distance_breaks,
    find_identity_breaks,
    match_greedy,
    split_track,
)


def det(x: float, y: float, size: float = 40.0, score: float = 0.9) -> Detection:
    return Detection(box=np.array([x, y, x + size, y + size], np.float32), score=score)


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([[0, 0, 10, 10]], np.float32)
    assert compute_iou(a, a)[0, 0] == pytest.approx(1.0)
    assert compute_iou(a, a + 20)[0, 0] == 0.0
    half = np.array([[5, 0, 15, 10]], np.float32)
    assert compute_iou(a, half)[0, 0] == pytest.approx(50 / 150)


def test_greedy_matching_takes_best_pairs_once():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(match_greedy(iou, 0.3)) == [(0, 0)]  # row 1's only good column is taken; 0.1 < threshold
    assert sorted(match_greedy(iou, 0.05)) == [(0, 0), (1, 1)]


def test_two_moving_faces_keep_their_ids():
    tr = IouTracker(iou_threshold=0.3, max_missed_frames=2)
    for f in range(10):
        ids = tr.update([det(10 + 2 * f, 10), det(200 - 2 * f, 50)])
        assert ids == [0, 1]
    tracks = tr.finish()
    assert [t.track_id for t in tracks] == [0, 1]
    assert all(len(t.detections) == 10 and t.n_detected == 10 for t in tracks)


def test_short_miss_coasts_long_miss_starts_a_new_track():
    tr = IouTracker(iou_threshold=0.3, max_missed_frames=2)
    seq = [[det(10, 10)]] * 3 + [[]] * 2 + [[det(11, 10)]] * 3 + [[]] * 3 + [[det(12, 10)]] * 2
    ids = [tr.update(d) for d in seq]
    assert ids[5] == [0]  # after a 2-frame gap: same track
    assert ids[-1] == [1]  # after a 3-frame gap: a new one
    first, second = tr.finish()
    assert len(first.detections) == 8 and first.detections[3] is None  # coasted rows kept, trailing trimmed
    assert first.first_frame == 0 and second.first_frame == 11


def test_identity_break_found_and_track_cut_where_the_box_jumps():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=512), rng.normal(size=512)
    tr = IouTracker(iou_threshold=0.1, max_missed_frames=2)
    for f in range(20):
        # Person B steps into almost the same place at frame 12: the IoU tracker follows.
        tr.update([det(100 + (8 if f >= 12 else 0), 100, 60)])
    (track,) = tr.finish()
    frames = [0, 5, 10, 15]
    embs = np.stack([a + 0.1 * rng.normal(size=512) for _ in range(3)] + [b])
    breaks = find_identity_breaks(frames, embs, min_cos=0.5)
    assert breaks == [3]
    cut = choose_cut_frame(track, frames[2], frames[3])
    assert cut == 12
    pieces = split_track(track, [cut], next_id=7)
    assert [(p.track_id, p.first_frame, len(p.detections)) for p in pieces] == [(0, 0, 12), (7, 12, 8)]


def test_one_identity_has_no_break_and_high_min_cosine():
    rng = np.random.default_rng(1)
    a = rng.normal(size=512)
    embs = np.stack([a + 0.2 * rng.normal(size=512) for _ in range(6)])
    assert find_identity_breaks(list(range(0, 30, 5)), embs, min_cos=0.5) == []
    mean, cos = cosine_to_mean(embs)
    assert np.linalg.norm(mean) == pytest.approx(1.0, abs=1e-5)
    assert cos.min() > 0.9


def test_distance_breaks_find_a_new_person_and_confirm_skips_an_outlier():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 0.1, 128), rng.normal(0, 0.1, 128)  # ~1.4 apart, like two people's dlib descriptors
    near = [a + rng.normal(0, 0.02, 128) for _ in range(4)]  # ~0.2-0.3 from each other
    embs = np.stack(near[:2] + [b] + near[2:])  # one far descriptor in the middle (a laugh, a blur)
    frames = list(range(0, 25, 5))
    assert find_distance_breaks(frames, embs, max_dist=0.6, confirm=1) == [2, 3]  # out to b and back
    assert find_distance_breaks(frames, embs, max_dist=0.6, confirm=2) == []  # b alone is an outlier
    switch = np.stack(near[:2] + [b + rng.normal(0, 0.02, 128) for _ in range(3)])
    assert find_distance_breaks(frames, switch, max_dist=0.6, confirm=2) == [2]
    assert find_distance_breaks(frames, switch, max_dist=0.6, confirm=4) == []  # not enough rows to confirm
    mean, dist = distance_to_mean(np.stack(near))
    assert np.allclose(mean, np.mean(near, axis=0), atol=1e-6) and dist.max() < 0.6


def test_cosine_breaks_honour_confirm_too():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=512), rng.normal(size=512)
    embs = np.stack([a + 0.1 * rng.normal(size=512) for _ in range(3)] + [b] + [a + 0.1 * rng.normal(size=512)])
    frames = list(range(0, 25, 5))
    assert find_identity_breaks(frames, embs, min_cos=0.5) == [3, 4]
    assert find_identity_breaks(frames, embs, min_cos=0.5, confirm=2) == []


def test_split_track_marks_every_piece_with_its_origin():
    tr = IouTracker(iou_threshold=0.1, max_missed_frames=2)
    for _ in range(10):
        tr.update([det(100, 100, 60)])
    (track,) = tr.finish()
    assert split_track(track, [], next_id=5)[0].split_from is None
    pieces = split_track(track, [4], next_id=5)
    assert [(p.track_id, p.split_from) for p in pieces] == [(0, 0), (5, 0)]
