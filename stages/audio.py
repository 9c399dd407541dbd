"""audio: decode to 24 kHz mono float32 (and 16 kHz for the 16 kHz models).

PyAV decodes the first audio stream and downmixes it to mono at the source
rate (libswresample's standard matrix, so 5.1 keeps its centre channel and
drops LFE); soxr then resamples to 24 kHz and 16 kHz. Loudness is normalized to
``target_lufs`` (ITU-R BS.1770) with a peak ceiling, the same gain applied to
both rates. The source rate and channel count stay in the probe record.

Every decoded frame is placed at its own presentation time: a span the decoder could not
give (corrupt or missing packets, a pts gap) becomes silence of the same length at the same
place, so nothing after it moves against the video; overlapping samples are dropped.

Rejects: undecodable audio, audio shorter than the probe minimum, too much of the audio
filled in (``max_gap_frac``), and silence (integrated loudness below ``silence_lufs``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import av
import numpy as np
import soxr

from core.media_io import av_source, open_binary
from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FileItem, Reject
from stages.loudness import compute_normalization_gain_db, measure_integrated_loudness


@dataclass
class AudioConfig:
    target_lufs: float = -20.0  # LUFS: integrated loudness after normalization
    max_peak_dbfs: float = -1.0  # dBFS: sample peak ceiling after normalization
    silence_lufs: float = -60.0  # LUFS: quieter inputs are rejected as silent
    min_decoded_s: float = 1.0  # seconds: less decodable audio than this is rejected
    max_gap_frac: float = 0.05  # fraction of the audio filled with silence for undecodable spans; more: audio_gaps


@dataclass
class DecodedAudio:
    """Mono float32 audio of a file's first audio stream at its own rate, on the stream's time base."""

    samples: np.ndarray  # (n,) float32; sample 0 is the stream's first presentation time
    rate: int  # Hz
    errors: int = 0  # packets that failed to decode (plus a demuxer break, if any)
    gap_s: float = 0.0  # seconds of silence put where no decoded audio was (corrupt, missing packets)
    n_gaps: int = 0  # spans filled
    overlap_s: float = 0.0  # seconds of decoded audio dropped because an earlier frame already covered them
    non_finite: int = 0  # NaN or Inf samples (a float file's corrupt values), made silence and counted as gaps

    @property
    def gap_frac(self) -> float:
        return self.gap_s / (len(self.samples) / self.rate) if len(self.samples) and self.rate else 0.0


GAP_TOLERANCE_S = 0.002  # seconds: pts jitter below this is ignored (no fill, no trim)


def decode_mono(path: str) -> tuple[np.ndarray, int, int]:
    """``(samples, sample_rate_hz, decode_errors)`` of :func:`decode_audio` (gaps already filled)."""
    decoded = decode_audio(path)
    return decoded.samples, decoded.rate, decoded.errors


def decode_audio(path: str) -> DecodedAudio:
    """Decode the first audio stream of ``path`` to mono float32 at its own rate, frames at their pts.

    A stream that breaks part-way (truncated file) yields what decoded before the break.
    """
    src = av_source(path)
    if src is not None:
        with av.open(src) as container:
            return silence_non_finite(_decode_container(container))
    with open_binary(path) as fh, av.open(fh) as container:
        return silence_non_finite(_decode_container(container))


def silence_non_finite(decoded: DecodedAudio) -> DecodedAudio:
    """NaN and Inf samples (a float WAV can hold them) become silence, counted like decode gaps."""
    bad = ~np.isfinite(decoded.samples)
    n = int(bad.sum())
    if n:
        decoded.samples = np.where(bad, np.float32(0.0), decoded.samples).astype(np.float32)
        runs = int(np.count_nonzero(np.diff(np.concatenate([[0], bad.astype(np.int8)])) == 1))
        decoded.non_finite, decoded.n_gaps = n, decoded.n_gaps + runs
        decoded.gap_s += n / decoded.rate
    return decoded


def _decode_container(container: av.container.InputContainer) -> DecodedAudio:
    stream = container.streams.audio[0]
    rate = int(stream.codec_context.sample_rate or stream.rate)
    tb = float(stream.time_base) if stream.time_base is not None else None
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None and tb else None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    tol = int(round(GAP_TOLERANCE_S * rate))
    out = DecodedAudio(np.zeros(0, np.float32), rate)
    chunks: list[np.ndarray] = []
    written = 0

    def place(frame: av.AudioFrame) -> None:
        nonlocal written, origin
        samples = np.concatenate([o.to_ndarray().reshape(-1) for o in resampler.resample(frame)] or
                                 [np.zeros(0, np.float32)])
        if frame.pts is not None and tb:
            t = frame.pts * tb
            origin = t if origin is None else origin
            want = int(round((t - origin) * rate))
            if want > written + tol:  # nothing decoded for [written, want): silence at its place
                chunks.append(np.zeros(want - written, np.float32))
                out.gap_s += (want - written) / rate
                out.n_gaps += 1
                written = want
            elif want < written - tol:  # overlaps what is already there: keep the earlier samples
                cut = min(written - want, len(samples))
                out.overlap_s += cut / rate
                samples = samples[cut:]
        chunks.append(samples)
        written += len(samples)

    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                out.errors += 1
                continue
            for frame in frames:
                place(frame)
    except av.error.FFmpegError:
        out.errors += 1  # demuxing broke off: keep what we have
    for rest in resampler.resample(None):
        chunks.append(rest.to_ndarray().reshape(-1))
    out.samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return out


def resample_to(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """High-quality resampling (soxr HQ) of mono float32 audio."""
    if src_rate == dst_rate:
        return samples.astype(np.float32, copy=True)
    return soxr.resample(samples, src_rate, dst_rate, quality="HQ").astype(np.float32)


def standardize(samples: np.ndarray, rate: int, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Resample and loudness-normalize. Returns ``(audio_24k, audio_16k, loudness_lufs, gain_db)``."""
    audio_24k = resample_to(samples, rate, AUDIO_SR)
    audio_16k = resample_to(samples, rate, MODEL_SR)
    loudness = measure_integrated_loudness(audio_24k, AUDIO_SR)
    peak = float(max(np.abs(audio_24k).max(initial=0.0), np.abs(audio_16k).max(initial=0.0)))
    gain_db = compute_normalization_gain_db(loudness, peak, cfg.target_lufs, cfg.max_peak_dbfs)
    scale = np.float32(10 ** (gain_db / 20))
    audio_24k *= scale
    audio_16k *= scale
    np.clip(audio_24k, -1.0, 1.0, out=audio_24k)
    np.clip(audio_16k, -1.0, 1.0, out=audio_16k)
    return audio_24k, audio_16k, loudness, gain_db


@dataclass
class StandardizeAudioStage(Stage):
    name: str = "audio"
    cfg: AudioConfig = field(default_factory=AudioConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))

    def process_item(self, item: FileItem) -> None:
        decoded = decode_audio(item.source_path)
        samples, rate, errors = decoded.samples, decoded.rate, decoded.errors
        decoded_s = len(samples) / rate - decoded.gap_s if rate else 0.0
        if errors or decoded.n_gaps or decoded.overlap_s:
            item.provenance["decode_errors"] = errors
            item.provenance["audio_gaps"] = {"n": decoded.n_gaps, "filled_s": round(decoded.gap_s, 4),
                                             "overlap_dropped_s": round(decoded.overlap_s, 4),
                                             "non_finite_samples": decoded.non_finite}
        if decoded_s < self.cfg.min_decoded_s:
            item.reject_file(Reject(stage=self.name, reason="undecodable_audio", value=decoded_s,
                                    threshold=self.cfg.min_decoded_s,
                                    detail=f"decoded {decoded_s:.3f} s of audio, {errors} decode errors"))
            return
        if decoded.gap_frac > self.cfg.max_gap_frac:
            item.reject_file(Reject(stage=self.name, reason="audio_gaps", value=decoded.gap_frac,
                                    threshold=self.cfg.max_gap_frac,
                                    detail=f"{decoded.gap_s:.3f} s in {decoded.n_gaps} span(s) had no decodable "
                                           f"audio ({errors} decode errors, {decoded.non_finite} NaN/Inf samples); "
                                           "fraction of the audio filled with silence"))
            return
        audio_24k, audio_16k, loudness, gain_db = standardize(samples, rate, self.cfg)
        item.loudness_lufs = loudness
        item.gain_db = gain_db
        if not loudness > self.cfg.silence_lufs:
            item.reject_file(Reject(stage=self.name, reason="silent", value=loudness,
                                    threshold=self.cfg.silence_lufs,
                                    detail="integrated loudness (LUFS) below silence_lufs"))
            return
        item.audio_24k = audio_24k
        item.audio_16k = audio_16k
        item.provenance["audio"] = {"source_rate_hz": rate, "loudness_lufs": round(loudness, 2),
                                    "gain_db": round(gain_db, 2), "decoded_s": round(decoded_s, 3)}


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.audio FILE``: decode, normalize and print a JSON summary."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m stages.audio FILE")
    samples, rate, errors = decode_mono(args[0])
    a24, a16, loud, gain = standardize(samples, rate, AudioConfig())
    print(json.dumps({"source_rate_hz": rate, "decode_errors": errors, "seconds": len(a24) / AUDIO_SR,
                      "loudness_lufs": loud, "gain_db": gain, "peak": float(np.abs(a24).max(initial=0))},
                     indent=2))


if __name__ == "__main__":
    main()
