"""The sparse identity schedule (stages/identity_sampler.py) on synthetic identities.

The embedder here returns the vector a test puts in the face's box, so the schedule's logic is checked
frame by frame; the real dlib and ArcFace embedders run on real media in test_face_identity.py and
test_faces.py.
"""

from __future__ import annotations

import numpy as np

from stages.face_tracking import Detection, find_distance_breaks
from stages.identity_sampler import IdentitySampler

A, B = np.zeros(4, np.float32), np.full(4, 1.0, np.float32)  # two people, 2.0 apart (threshold 0.6)


class VectorEmbedder:
    """crop = the vector in ``det.keypoints``; embedding = that vector; counts the embeddings."""

    model_id = "test"
    metric = "euclidean"

    def crop(self, rgb, det):
        return det.keypoints[0]

    def embed_crop(self, crop):
        return np.asarray(crop, np.float32)

    def embed(self, rgb, det):
        return self.embed_crop(self.crop(rgb, det))


def run_track(identities: list[np.ndarray], every_n: int = 5, max_every_n: int = 25) -> list[Detection]:
    """One track whose n-th detected frame shows ``identities[n]``; returns its detections."""
    sampler = IdentitySampler(VectorEmbedder(), every_n, max_every_n, "euclidean", 0.6)
    dets = []
    for n, ident in enumerate(identities, start=1):
        det = Detection(box=np.zeros(4, np.float32), score=1.0, keypoints=ident[None].copy())
        sampler.offer(7, n, None, det)
        dets.append(det)
    sampler.flush()
    assert not sampler.tracks
    return dets


def embedded(dets: list[Detection]) -> list[int]:
    return [i for i, d in enumerate(dets) if d.embedding is not None]


def test_an_agreeing_track_is_embedded_ever_more_sparsely_up_to_the_cap():
    dets = run_track([A] * 200)
    # Due frames every 5; embedded at due 0, 1, 3, 7, then every 5th due frame (25 frames), the last at flush.
    assert embedded(dets) == [0, 5, 15, 35, 60, 85, 110, 135, 160, 185, 195]
    assert all(i % 5 == 0 for i in embedded(dets))


def test_max_equal_to_every_n_embeds_every_due_frame():
    assert embedded(run_track([A] * 60, max_every_n=5)) == list(range(0, 60, 5))


def test_a_change_of_identity_is_found_at_the_same_frame_as_the_dense_schedule():
    for change in (41, 66, 90, 133):
        idents = [A] * change + [B] * (200 - change)
        sparse, dense = run_track(idents), run_track(idents, max_every_n=5)
        for dets in (sparse, dense):
            frames = embedded(dets)
            embs = np.stack([dets[i].embedding for i in frames])
            (k,) = find_distance_breaks(frames, embs, 0.6, confirm=2)
            assert frames[k] == 5 * -(-change // 5), (change, frames)  # the first due frame showing B
            assert frames[k - 1] == frames[k] - 5  # the due frame before it was embedded too
        assert len(embedded(sparse)) < len(embedded(dense))


def test_the_end_of_a_track_is_always_checked():
    dets = run_track([A] * 100 + [B] * 12)  # B only on the last 3 due frames
    assert dets[110].embedding is not None and np.allclose(dets[110].embedding, B)
    frames = embedded(dets)
    assert [i for i in frames if i >= 100] == [100, 105, 110]  # backfilled when the flush saw B
