"""vad_segment: speech regions from silero-vad, inside each shot.

Silero's ONNX model scores 32 ms windows (512 samples at 16 kHz). Regions
follow the model's hysteresis (enter at ``threshold``, leave below
``threshold - hysteresis``), gaps shorter than ``merge_gap_s`` are merged,
regions are padded, cut at shot boundaries, and regions longer than
``max_segment_s`` are split at their least speech-like window. Regions
shorter than ``min_segment_s`` are ledgered as too_short. The segmentation is
provisional: ASR later refines it to sentence boundaries.

Segment bounds are snapped to 24 kHz samples (``Segment.start_sample``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import numpy as np

from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FileItem, Reject, Segment
from stages.models import PackagedModel, locate_packaged_model

SILERO_ONNX = PackagedModel(
    distribution="silero-vad",
    version="6.2.3",
    relpath="silero_vad/data/silero_vad.onnx",
    sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    config_field="vad.model_path",
)
WINDOW = 512  # samples at 16 kHz per VAD decision
CONTEXT = 64  # samples of left context the model expects
FRAME_S = WINDOW / MODEL_SR  # seconds per VAD decision (0.032)


@dataclass
class VadConfig:
    model_path: str | None = None  # local silero_vad.onnx; default: the copy in the silero-vad wheel
    threshold: float = 0.5  # speech probability that opens a region
    hysteresis: float = 0.15  # a region closes below threshold - hysteresis
    min_speech_s: float = 0.25  # seconds: shorter bursts are ignored as clicks
    merge_gap_s: float = 0.5  # seconds: pauses shorter than this are merged
    pad_s: float = 0.1  # seconds of context added on each side (within the shot)
    min_segment_s: float = 1.0  # seconds: shorter segments are rejected (too_short)
    max_segment_s: float = 30.0  # seconds: longer regions are split at their quietest window


class SileroVad:
    """silero-vad's ONNX model, run window by window without torch."""

    def __init__(self, model_path: str | None = None) -> None:
        import onnxruntime as ort

        path = locate_packaged_model(SILERO_ONNX, model_path)
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.name = f"silero-vad-{SILERO_ONNX.version}:{path.name}"

    def compute_speech_probs(self, audio_16k: np.ndarray) -> np.ndarray:
        """Speech probability per 32 ms window of 16 kHz mono audio."""
        n = int(np.ceil(len(audio_16k) / WINDOW))
        x = np.zeros(n * WINDOW + CONTEXT, dtype=np.float32)
        x[CONTEXT:CONTEXT + len(audio_16k)] = audio_16k
        state = np.zeros((2, 1, 128), dtype=np.float32)
        sr = np.array(MODEL_SR, dtype=np.int64)
        probs = np.empty(n, dtype=np.float32)
        run = self.session.run
        for i in range(n):
            chunk = x[i * WINDOW: i * WINDOW + WINDOW + CONTEXT][None, :]
            out, state = run(None, {"input": chunk, "state": state, "sr": sr})
            probs[i] = out[0, 0]
        return probs


def find_speech_regions(probs: np.ndarray, cfg: VadConfig) -> list[tuple[int, int]]:
    """Hysteresis regions ``[(start_window, end_window)]`` after dropping clicks and merging pauses."""
    regions: list[list[int]] = []
    active = False
    off = cfg.threshold - cfg.hysteresis
    for i, p in enumerate(probs):
        if not active and p >= cfg.threshold:
            active, start = True, i
        elif active and p < off:
            active = False
            regions.append([start, i])
    if active:
        regions.append([start, len(probs)])
    min_w = cfg.min_speech_s / FRAME_S
    regions = [r for r in regions if r[1] - r[0] >= min_w]
    merged: list[list[int]] = []
    gap_w = cfg.merge_gap_s / FRAME_S
    for r in regions:
        if merged and r[0] - merged[-1][1] < gap_w:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [(a, b) for a, b in merged]


def split_long_region(start_s: float, end_s: float, probs: np.ndarray, cfg: VadConfig) -> list[tuple[float, float]]:
    """Split ``[start_s, end_s)`` until no piece exceeds ``max_segment_s``, at the least speech-like window."""
    if end_s - start_s <= cfg.max_segment_s:
        return [(start_s, end_s)]
    lo = start_s + cfg.min_segment_s
    hi = min(end_s - cfg.min_segment_s, start_s + cfg.max_segment_s)
    wa, wb = int(lo / FRAME_S), int(np.ceil(hi / FRAME_S))
    window = probs[wa:wb]
    cut = (wa + int(np.argmin(window))) * FRAME_S + FRAME_S / 2 if len(window) else (start_s + end_s) / 2
    cut = min(max(cut, lo), hi)
    return split_long_region(start_s, cut, probs, cfg) + split_long_region(cut, end_s, probs, cfg)


def segment_speech(probs: np.ndarray, shots: list[tuple[float, float]], duration_s: float,
                   cfg: VadConfig) -> list[tuple[float, float, int]]:
    """Speech segments ``[(start_s, end_s, shot_index)]`` cut at shot boundaries and split to length."""
    out: list[tuple[float, float, int]] = []
    regions = find_speech_regions(probs, cfg)
    for a, b in regions:
        s = max(0.0, a * FRAME_S - cfg.pad_s)
        e = min(duration_s, b * FRAME_S + cfg.pad_s)
        for k, (shot_s, shot_e) in enumerate(shots):
            lo, hi = max(s, shot_s), min(e, shot_e)
            if hi <= lo:
                continue
            for ps, pe in split_long_region(lo, hi, probs, cfg):
                out.append((ps, pe, k))
    # Padding may make neighbours overlap: cut overlaps at the midpoint.
    out.sort()
    for i in range(1, len(out)):
        ps, pe, pk = out[i - 1]
        s, e, k = out[i]
        if s < pe and pk == k:
            mid = (s + pe) / 2
            out[i - 1] = (ps, mid, pk)
            out[i] = (mid, e, k)
    return out


@dataclass
class VadSegmentStage(Stage):
    name: str = "vad"
    cfg: VadConfig = field(default_factory=VadConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _vad: SileroVad | None = field(default=None, repr=False)

    def setup(self) -> None:
        if self._vad is None:
            self._vad = SileroVad(self.cfg.model_path)

    def process_item(self, item: FileItem) -> None:
        self.setup()
        assert item.audio_16k is not None and item.audio_24k is not None
        probs = self._vad.compute_speech_probs(item.audio_16k)
        item.vad_probs = probs
        item.record_model(self.name, self._vad.name)
        duration_s = len(item.audio_24k) / AUDIO_SR
        shots = item.shots or [(0.0, duration_s)]
        speech_frac = float((probs >= self.cfg.threshold).mean()) if len(probs) else 0.0
        item.provenance["speech_fraction"] = round(speech_frac, 4)
        spans = segment_speech(probs, shots, duration_s, self.cfg)
        if not spans:
            item.reject_file(Reject(stage=self.name, reason="no_speech", value=speech_frac,
                                    threshold=self.cfg.threshold,
                                    detail="no speech region (value: fraction of windows above threshold)"))
            return
        keep: list[Segment] = []
        dropped: list[Reject] = []
        n = len(item.audio_24k)
        for s, e, k in spans:
            seg = Segment(start_sample=int(round(s * AUDIO_SR)), end_sample=min(n, int(round(e * AUDIO_SR))),
                          shot_index=k)
            if seg.duration_s < self.cfg.min_segment_s:
                dropped.append(seg.reject(self.name, "too_short", seg.duration_s, self.cfg.min_segment_s))
            else:
                keep.append(seg)
        item.drop_segments(keep, dropped)


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.vad FILE``: print the speech segments of one file as JSON."""
    from stages.audio import AudioConfig, decode_mono, standardize

    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m stages.vad FILE")
    samples, rate, _ = decode_mono(args[0])
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    cfg = VadConfig()
    probs = SileroVad().compute_speech_probs(a16)
    spans = segment_speech(probs, [(0.0, len(a24) / AUDIO_SR)], len(a24) / AUDIO_SR, cfg)
    print(json.dumps({"segments": [{"start_s": round(s, 3), "end_s": round(e, 3)} for s, e, _ in spans]}, indent=2))


if __name__ == "__main__":
    main()
