"""Offline diarization with the GE2E voice encoder: windows over the speech, clustering, change points.

The diarize stage uses this when no pyannote pipeline is configured (``diarize.backend``).

1. **Windows.** Every VAD segment of the file is covered by 1.6-s windows every ``voice_hop_s``
   (a segment shorter than a window gets one window centred on it). Each window *owns* the part
   of its segment nearest its centre.
2. **Embeddings.** One batched GE2E pass over all windows of the file (``stages/voice.py``).
3. **Clustering.** Average-linkage agglomerative clustering on cosine distance over the whole
   file: two groups of windows merge while their mean cosine is at least ``voice_min_cluster_cos``.
   A cluster of fewer than ``voice_min_speaker_windows`` windows is folded into the nearest other
   cluster (one odd window is noise, not a speaker). Labels ``spk0, spk1, ...`` follow first
   appearance, so they are deterministic.
4. **Change points.** Where consecutive windows of one segment change label, windows every
   ``voice_refine_hop_s`` between the two centres (each ``voice_refine_window_s`` long, shorter than
   the clustering windows so they blur less) are assigned to the nearer of the two speakers'
   centroids; the change point is midway between the last window of the first speaker and the
   first of the second. Resolution: about ``voice_refine_hop_s`` plus the GE2E window's blur.

Speaker turns ``(start_s, end_s, label)`` then go through the same single-speaker checks as
pyannote's (``stages/diarize.py``). The window embeddings stay on the item
(``FileItem.voice_windows``), so each kept clip gets a voice embedding without a second pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.item import MODEL_SR, VoiceWindows
from stages.voice import (
    EMBED_DIM,
    WINDOW_FRAMES,
    VoiceEncoder,
    compute_voice_mel,
    mel_frames_per_s,
    normalize,
    raise_volume,
)

Turn = tuple[float, float, str]  # (start_s, end_s, speaker label), source seconds


@dataclass
class WindowPlan:
    """Windows over a file's speech: mel start frames, centres and owned spans (seconds), segment index."""

    starts: np.ndarray  # (W,) int mel frames
    centres_s: np.ndarray  # (W,) float seconds
    owned: np.ndarray  # (W, 2) float seconds: the part of its segment each window labels
    span_index: np.ndarray  # (W,) int: which speech span the window belongs to


def window_s() -> float:
    return WINDOW_FRAMES / mel_frames_per_s()


def plan_windows(spans_s: list[tuple[float, float]], hop_s: float, duration_s: float) -> WindowPlan:
    """Windows every ``hop_s`` seconds over each ``(start_s, end_s)`` span of a ``duration_s`` file."""
    fps, win = mel_frames_per_s(), window_s()
    starts, centres, owned, index = [], [], [], []
    for i, (s, e) in enumerate(spans_s):
        if e - s <= win:
            cs = [0.5 * (s + e)]
        else:
            n = int(np.floor((e - s - win) / hop_s + 1e-9)) + 1
            cs = [s + 0.5 * win + k * hop_s for k in range(n)]
            if e - 0.5 * win - cs[-1] > 1e-6:
                cs.append(e - 0.5 * win)
        bounds = [s] + [0.5 * (a + b) for a, b in zip(cs[:-1], cs[1:], strict=True)] + [e]
        for k, c in enumerate(cs):
            first = min(max(0.0, c - 0.5 * win), max(0.0, duration_s - win))
            starts.append(int(round(first * fps)))
            centres.append(c)
            owned.append((bounds[k], bounds[k + 1]))
            index.append(i)
    return WindowPlan(np.asarray(starts, int), np.asarray(centres, float), np.asarray(owned, float).reshape(-1, 2),
                      np.asarray(index, int))


def cluster_embeddings(emb: np.ndarray, min_cos: float, min_windows: int) -> np.ndarray:
    """``(W,)`` int labels by first appearance: average-linkage clusters whose mean cosine is ``>= min_cos``."""
    n = len(emb)
    if n == 0:
        return np.zeros(0, int)
    if n == 1:
        return np.zeros(1, int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    dist = np.clip(pdist(emb.astype(np.float64), metric="cosine"), 0.0, 2.0)
    raw = fcluster(linkage(dist, method="average"), t=1.0 - min_cos, criterion="distance")
    raw = fold_small_clusters(emb, raw, min_windows)
    order = {lab: k for k, lab in enumerate(dict.fromkeys(raw.tolist()))}
    return np.asarray([order[lab] for lab in raw.tolist()], int)


def fold_small_clusters(emb: np.ndarray, labels: np.ndarray, min_windows: int) -> np.ndarray:
    """Move the windows of clusters smaller than ``min_windows`` to the nearest large cluster's centroid."""
    labels = labels.copy()
    ids, counts = np.unique(labels, return_counts=True)
    big = ids[counts >= min_windows]
    if len(big) == 0 or len(big) == len(ids):
        return labels
    cents = np.stack([normalize(emb[labels == b].mean(axis=0)) for b in big])
    for i in np.flatnonzero(~np.isin(labels, big)):
        labels[i] = big[int(np.argmax(cents @ emb[i]))]
    return labels


def build_turns(plan: WindowPlan, labels: np.ndarray) -> list[Turn]:
    """Merge consecutive owned spans of one label (within one speech span) into turns."""
    turns: list[Turn] = []
    for k in range(len(labels)):
        s, e = plan.owned[k]
        lab = f"spk{int(labels[k])}"
        if turns and turns[-1][2] == lab and plan.span_index[k] == plan.span_index[k - 1]:
            turns[-1] = (turns[-1][0], float(e), lab)
        else:
            turns.append((float(s), float(e), lab))
    return turns


@dataclass
class VoiceDiarizer:
    """Speaker turns of a file from GE2E window embeddings (see the module docstring)."""

    encoder: VoiceEncoder
    hop_s: float = 0.8  # seconds between window centres
    min_cluster_cos: float = 0.7  # cosine: groups of windows merge while their mean cosine is at least this
    min_speaker_windows: int = 2  # windows: a smaller cluster is folded into the nearest speaker
    refine_hop_s: float = 0.1  # seconds between windows placed to locate a change point
    refine_window_s: float = 0.8  # seconds: length of those windows (shorter: sharper, noisier)

    @property
    def model_id(self) -> str:
        return f"voice-clustering:{self.encoder.model_id}"

    def diarize(self, audio_16k: np.ndarray, spans_s: list[tuple[float, float]]) -> tuple[list[Turn], VoiceWindows]:
        """``(turns, the window embeddings)`` of a file's speech spans (source seconds)."""
        duration_s = len(audio_16k) / MODEL_SR
        spans_s = [(max(0.0, s), min(duration_s, e)) for s, e in spans_s if min(duration_s, e) > max(0.0, s)]
        speech = np.concatenate([audio_16k[int(s * MODEL_SR):int(e * MODEL_SR)] for s, e in spans_s]) if spans_s else audio_16k
        mel = compute_voice_mel(audio_16k, raise_volume(speech))
        plan = plan_windows(spans_s, self.hop_s, duration_s)
        if len(plan.starts) == 0:
            return [], VoiceWindows(np.zeros(0), np.zeros((0, 2)), np.zeros((0, EMBED_DIM), np.float32), [])
        emb = self.encoder.embed_mel_windows(mel, plan.starts)
        labels = cluster_embeddings(emb, self.min_cluster_cos, self.min_speaker_windows)
        turns = build_turns(plan, labels)
        turns = self.refine_changes(mel, plan, emb, labels, turns, duration_s)
        names = [f"spk{int(x)}" for x in labels]
        return turns, VoiceWindows(plan.centres_s, plan.owned, emb, names)

    def refine_changes(self, mel: np.ndarray, plan: WindowPlan, emb: np.ndarray, labels: np.ndarray,
                       turns: list[Turn], duration_s: float) -> list[Turn]:
        """Move each change point between two windows of one span to where the nearer centroid flips."""
        fps = mel_frames_per_s()
        cents = {int(lab): normalize(emb[labels == lab].mean(axis=0)) for lab in np.unique(labels)}
        moved: dict[float, float] = {}
        for k in range(1, len(labels)):
            if labels[k] == labels[k - 1] or plan.span_index[k] != plan.span_index[k - 1]:
                continue
            c0, c1 = plan.centres_s[k - 1], plan.centres_s[k]
            grid = np.arange(c0, c1 + 1e-9, self.refine_hop_s)
            rw = self.refine_window_s
            starts = np.asarray([int(round(min(max(0.0, c - 0.5 * rw), max(0.0, duration_s - rw)) * fps))
                                 for c in grid])
            e = self.encoder.embed_mel_windows(mel, starts, int(round(rw * fps)))
            second = (e @ cents[int(labels[k])]) > (e @ cents[int(labels[k - 1])])
            flip = int(np.argmax(second)) if second.any() else len(grid) - 1
            point = float(grid[0]) if flip == 0 else 0.5 * float(grid[flip - 1] + grid[flip])
            moved[float(plan.owned[k][0])] = point
        out: list[Turn] = []
        for s, e, lab in turns:
            s2 = moved.get(float(s), s)
            if out and s2 != s:
                ps, _, plab = out[-1]
                out[-1] = (ps, s2, plab)
            out.append((s2, e, lab))
        return [t for t in out if t[1] > t[0]]


def embed_span(windows: VoiceWindows, start_s: float, end_s: float) -> np.ndarray | None:
    """``(E,)`` unit voice embedding of ``[start_s, end_s)``: the mean of the windows centred inside it,
    else of those whose owned span overlaps it; None when no window touches it."""
    if len(windows.centres_s) == 0:
        return None
    inside = (windows.centres_s >= start_s) & (windows.centres_s < end_s)
    if not inside.any():
        inside = (windows.owned[:, 0] < end_s) & (windows.owned[:, 1] > start_s)
    if not inside.any():
        return None
    return normalize(windows.embeddings[inside].mean(axis=0))
