"""dnsmos: DNSMOS P.835 (sig, bak, ovrl) and P.808 quality per segment.

The ONNX models ship in the ``speechmos`` wheel; they are located on disk,
verified against pinned checksums and loaded once per actor (``setup``). The
scoring follows the DNSMOS reference: 9.01 s windows hopped by 1 s, shorter
segments tiled, the P.835 polynomial calibration, mean over windows.
Segments with ``ovrl < min_dnsmos_ovrl`` are rejected (Emilia uses 3.0).
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

INPUT_LENGTH_S = 9.01  # seconds per DNSMOS window (the reference's INPUT_LENGTH)

DNSMOS_P835 = PackagedModel(
    distribution="speechmos", version="0.0.1.1", relpath="speechmos/dnsmos_models/sig_bak_ovr.onnx",
    sha256="269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd",
    config_field="dnsmos.p835_model_path",
)
DNSMOS_P808 = PackagedModel(
    distribution="speechmos", version="0.0.1.1", relpath="speechmos/dnsmos_models/model_v8.onnx",
    sha256="9246480c58567bc6affd4200938e77eef49468c8bc7ed3776d109c07456f6e91",
    config_field="dnsmos.p808_model_path",
)


@dataclass
class DnsmosConfig:
    min_dnsmos_ovrl: float = 3.0  # P.835 OVRL (1-5): lower segments are rejected (Emilia's practice)
    min_dnsmos_sig: float = 0.0  # P.835 SIG (1-5): 0 disables
    min_dnsmos_bak: float = 0.0  # P.835 BAK (1-5): 0 disables
    p835_model_path: str | None = None  # default: sig_bak_ovr.onnx in the speechmos wheel
    p808_model_path: str | None = None  # default: model_v8.onnx in the speechmos wheel
    onnx_threads: int = 1  # intra-op threads per ONNX session
    max_windows: int = 3  # reference windows scored per segment, evenly spaced; 0 = all (exact reference)


class DnsmosScorer:
    """The two DNSMOS ONNX sessions, built once."""

    def __init__(self, cfg: DnsmosConfig) -> None:
        import onnxruntime as ort
        from speechmos.dnsmos import DNSMOS

        p835 = locate_packaged_model(DNSMOS_P835, cfg.p835_model_path)
        p808 = locate_packaged_model(DNSMOS_P808, cfg.p808_model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cfg.onnx_threads
        opts.inter_op_num_threads = 1
        # speechmos' DNSMOS holds the reference feature code; give it sessions
        # with explicit thread counts instead of its default all-cores ones.
        self._dnsmos = DNSMOS.__new__(DNSMOS)
        self._dnsmos.primary_model_path = str(p835)
        self._dnsmos.onnx_sess = ort.InferenceSession(str(p835), sess_options=opts, providers=["CPUExecutionProvider"])
        self._dnsmos.p808_onnx_sess = ort.InferenceSession(str(p808), sess_options=opts,
                                                           providers=["CPUExecutionProvider"])
        self.name = f"speechmos-{DNSMOS_P835.version}:dnsmos-p835+p808"

    def score(self, audio_16k: np.ndarray, max_windows: int = 0) -> dict[str, float]:
        """Scores (1-5) of 16 kHz mono audio: ``{"ovrl", "sig", "bak", "p808"}``.

        ``max_windows`` > 0 scores that many evenly spaced reference windows.
        """
        audio = np.clip(np.asarray(audio_16k, dtype=np.float32), -1.0, 1.0)
        if len(audio) == 0:
            raise ValueError("empty audio")
        n_in = int(INPUT_LENGTH_S * MODEL_SR)
        while len(audio) < n_in:
            audio = np.append(audio, audio)
        n_hops = int(np.floor(len(audio) / MODEL_SR) - INPUT_LENGTH_S) + 1
        starts = [i * MODEL_SR for i in range(n_hops) if i * MODEL_SR + n_in <= len(audio)]
        if max_windows and len(starts) > max_windows:
            pick = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
            starts = [starts[i] for i in pick]
        windows = np.stack([audio[s:s + n_in] for s in starts]).astype(np.float32)
        p808_in = np.stack([self._dnsmos.audio_melspec(audio=w[:-160]) for w in windows]).astype(np.float32)
        p808 = self._dnsmos.p808_onnx_sess.run(None, {"input_1": p808_in})[0][:, 0]
        raw = self._dnsmos.onnx_sess.run(None, {"input_1": windows})[0]
        sig, bak, ovrl = self._dnsmos.get_polyfit_val(raw[:, 0], raw[:, 1], raw[:, 2], False)
        return {"ovrl": float(np.mean(ovrl)), "sig": float(np.mean(sig)), "bak": float(np.mean(bak)),
                "p808": float(np.mean(p808))}


def segment_audio_16k(item: FileItem, seg: Segment) -> np.ndarray:
    """The 16 kHz samples of ``seg`` (bounds converted from 24 kHz samples)."""
    assert item.audio_16k is not None
    a = seg.start_sample * MODEL_SR // AUDIO_SR
    b = seg.end_sample * MODEL_SR // AUDIO_SR
    return item.slice_audio_16k(a, b)


@dataclass
class DnsmosStage(Stage):
    name: str = "dnsmos"
    cfg: DnsmosConfig = field(default_factory=DnsmosConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _scorer: DnsmosScorer | None = field(default=None, repr=False)

    def setup(self) -> None:
        if self._scorer is None:
            self._scorer = DnsmosScorer(self.cfg)

    def check(self, scores: dict[str, float]) -> tuple[str, float, float] | None:
        """The first failed limit as ``(reason, value, threshold)``, or None."""
        for key, limit in (("ovrl", self.cfg.min_dnsmos_ovrl), ("sig", self.cfg.min_dnsmos_sig),
                           ("bak", self.cfg.min_dnsmos_bak)):
            if scores[key] < limit:
                return f"low_dnsmos_{key}", scores[key], limit
        return None

    def process_item(self, item: FileItem) -> None:
        self.setup()
        item.record_model(self.name, self._scorer.name)
        keep: list[Segment] = []
        dropped: list[Reject] = []
        for seg in item.segments:
            seg.dnsmos = self._scorer.score(segment_audio_16k(item, seg), self.cfg.max_windows)
            failed = self.check(seg.dnsmos)
            if failed:
                dropped.append(seg.reject(self.name, failed[0], failed[1], failed[2]))
            else:
                keep.append(seg)
        item.drop_segments(keep, dropped)


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.dnsmos FILE``: DNSMOS of the whole file as JSON."""
    from stages.audio import AudioConfig, decode_mono, standardize

    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m stages.dnsmos FILE")
    samples, rate, _ = decode_mono(args[0])
    _, a16, _, _ = standardize(samples, rate, AudioConfig())
    cfg = DnsmosConfig()
    print(json.dumps(DnsmosScorer(cfg).score(a16, cfg.max_windows), indent=2))


if __name__ == "__main__":
    main()
