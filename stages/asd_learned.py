"""The learned active-speaker scorer: a Light-ASD checkpoint on face crops and MFCCs.

Inputs follow the authors' inference recipe:

- faces: every 40 ms (Light-ASD's 25 Hz, whatever ``faces.sample_fps`` is; the track's boxes
  are interpolated onto that grid) a square-ish crop around the track box
  (box size ``s = max(w, h) / 2``; rows ``[cy - s, cy + s (1 + 2 cs)]``, columns
  ``cx +- s (1 + cs)``, ``cs = 0.4``, grey padding outside the frame), resized to
  224 x 224, grayscale, centre 112 x 112. Frames are decoded with
  ``blendshape_fit.landmarker.iterate_grid_frames`` on that 25 Hz grid.
- audio: 13 MFCCs at 100 Hz (25 ms windows), computed as python_speech_features
  does (pre-emphasis 0.97, 26 mel filters, 512-point FFT, lifter 22, c0 replaced
  by log frame energy) on int16-scaled 16 kHz audio: 4 MFCC frames per video frame.

The visual embedding is computed once; the audio is shifted over lags in
``[-max_lag_s, max_lag_s]`` (40 ms steps, one video frame) and the score is the
mean per-frame speaking log-odds at the best lag (> 0: more likely speaking than
not). The checkpoint is a local file (``asd.learned_ckpt_path``): .safetensors or
a torch state dict, the authors' key names accepted. No checkpoint ships with
the repo: the stage fails with a message naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.asd_scorer import AsdResult, LastAudioFeature, fill_gaps, slice_track
from stages.item import MODEL_SR, FaceTrack
from stages.models import ModelNotFound

CROP_SCALE = 0.4  # the authors' cs: context around the face box
CROP_SIDE = 224  # px: crop resized to this, then the centre FACE_SIDE kept
FACE_SIDE = 112  # px: model input
MODEL_FPS = 25.0  # Hz: Light-ASD's video rate; crops are taken on this grid whatever faces.sample_fps is
MFCC_PER_FRAME = 4  # 100 Hz MFCC frames per 25 Hz video frame
PAD_GREY = 110  # pixel value outside the frame


def compute_mfcc(audio_16k: np.ndarray, numcep: int = 13, nfilt: int = 26, nfft: int = 512,
                 winlen_s: float = 0.025, winstep_s: float = 0.010, preemph: float = 0.97,
                 ceplifter: int = 22) -> np.ndarray:
    """(n_frames, numcep) MFCCs at 100 Hz of float 16 kHz audio (scaled to int16 range, as the
    authors read wavs), matching python_speech_features.mfcc's defaults."""
    from scipy.fft import dct

    x = np.asarray(audio_16k, np.float64) * 32768.0
    x = np.append(x[:1], x[1:] - preemph * x[:-1]) if len(x) else x
    flen, fstep = int(round(winlen_s * MODEL_SR)), int(round(winstep_s * MODEL_SR))
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / fstep))
    padded = np.zeros((n - 1) * fstep + flen)
    padded[:len(x)] = x
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    frames = padded[idx]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    mel = np.linspace(0, 2595 * np.log10(1 + (MODEL_SR / 2) / 700.0), nfilt + 2)
    bins = np.floor((nfft + 1) * (700 * (10 ** (mel / 2595.0) - 1)) / MODEL_SR).astype(int)
    fbank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = bins[j], bins[j + 1], bins[j + 2]
        fbank[j, a:b] = (np.arange(a, b) - a) / max(b - a, 1)
        fbank[j, b:c] = (c - np.arange(b, c)) / max(c - b, 1)
    feat = power @ fbank.T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    feat = dct(feat, type=2, axis=1, norm="ortho")[:, :numcep]
    lift = 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat = feat * lift
    feat[:, 0] = np.log(energy)
    return feat.astype(np.float32)


def crop_face(frame_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(112, 112) uint8 grayscale face crop of ``box`` (x0 y0 x1 y1, px of this frame)."""
    import cv2

    s = max(box[2] - box[0], box[3] - box[1]) / 2.0
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    pad = int(s * (1 + 2 * CROP_SCALE)) + 1
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    grey = np.pad(grey, pad, mode="constant", constant_values=PAD_GREY)
    y0, y1 = int(cy - s) + pad, int(cy + s * (1 + 2 * CROP_SCALE)) + pad
    x0, x1 = int(cx - s * (1 + CROP_SCALE)) + pad, int(cx + s * (1 + CROP_SCALE)) + pad
    face = grey[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]
    face = cv2.resize(face, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_LINEAR)
    o = (CROP_SIDE - FACE_SIDE) // 2
    return face[o:o + FACE_SIDE, o:o + FACE_SIDE]


def crop_track_faces(source_path: str, track: FaceTrack, idx: np.ndarray) -> tuple[np.ndarray, float]:
    """``((T, 112, 112) uint8 crops, time of the first in seconds)`` over the span of the track
    frames ``idx``, on Light-ASD's own 25 Hz grid (boxes interpolated from the track's rate), so
    each crop pairs with exactly 4 MFCC frames whatever rate the track was sampled at."""
    from blendshape_fit.landmarker import iterate_grid_frames

    times = track.times_s[idx]
    boxes_track = np.stack([fill_gaps(times, track.boxes[idx, j]) for j in range(4)], axis=1)
    t0 = float(times[0])
    n = max(1, int(np.floor((float(times[-1]) - t0) * MODEL_FPS + 1e-6)) + 1)
    grid = t0 + np.arange(n) / MODEL_FPS
    boxes = np.stack([np.interp(grid, times, boxes_track[:, j]) for j in range(4)], axis=1)
    out = np.full((n, FACE_SIDE, FACE_SIDE), PAD_GREY, np.uint8)
    last = None
    for i, _t, src, rgb, (w, _h) in iterate_grid_frames(source_path, t0, float(grid[-1]) + 0.5 / MODEL_FPS,
                                                        MODEL_FPS, 0):
        if i >= n:
            break
        if rgb is not None:
            last = rgb
        if src < 0 or last is None:
            continue
        k = last.shape[1] / float(w) if w else 1.0
        out[i] = crop_face(last, boxes[i] * k)
    return out, t0


def load_light_asd(path: str | None, threads: int = 1):
    """A LightAsd in eval mode from a local checkpoint, and its model id ``light-asd:NAME@sha12``."""
    import torch

    from core.media_io import sha256_of_local
    from model.asd.light_asd import LightAsd, infer_config, remap_state_dict

    if not path:
        raise ModelNotFound(
            "asd.scorer is 'learned' but asd.learned_ckpt_path is not set: point it to a Light-ASD "
            "checkpoint (.safetensors or a torch state dict, e.g. the authors' pretrain_AVA_CVPR.model), "
            "or use asd.scorer: classical")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelNotFound(f"asd.learned_ckpt_path={path!r} does not exist")
    torch.set_num_threads(max(1, threads))
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = remap_state_dict(state)
    try:
        model = LightAsd(infer_config(state))
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise ModelNotFound(f"{p} is not a Light-ASD state dict: {exc}") from exc
    model.eval()
    return model, f"light-asd:{p.name}@{sha256_of_local(str(p))[:12]}"


@dataclass
class LearnedScorer:
    """Light-ASD on face crops + MFCCs; score = mean speaking log-odds at the best lag."""

    ckpt_path: str | None = None
    max_lag_s: float = 0.2  # seconds, +- lags searched (40 ms steps)
    threads: int = 1  # torch intra-op threads
    name: str = field(init=False, default="light-asd")
    mfccs: LastAudioFeature = field(init=False, default_factory=LastAudioFeature, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.model, self.name = load_light_asd(self.ckpt_path, self.threads)

    def score_arrays(self, faces: np.ndarray, mfcc: np.ndarray, mfcc_offset: int) -> tuple[float, float, int]:
        """``(score, lag_s, n_frames)`` for (T, 112, 112) faces and MFCCs whose frame ``mfcc_offset``
        is aligned with the first face. Lags shift the audio by whole video frames (40 ms)."""
        import torch

        t = faces.shape[0]
        n_lag = int(round(self.max_lag_s * MODEL_FPS))
        best = (-np.inf, 0.0)
        with torch.inference_mode():
            v = self.model.encode_visual(torch.from_numpy(faces.astype(np.float32))[None])
            for k in range(-n_lag, n_lag + 1):
                a0 = mfcc_offset - k * MFCC_PER_FRAME  # video lags audio by k frames: audio from earlier
                seg = np.zeros((t * MFCC_PER_FRAME, mfcc.shape[1]), np.float32)
                lo, hi = max(a0, 0), min(a0 + t * MFCC_PER_FRAME, len(mfcc))
                if hi > lo:
                    seg[lo - a0:hi - a0] = mfcc[lo:hi]
                a = self.model.encode_audio(torch.from_numpy(seg)[None])
                s = float(self.model.classify(a[:, :t], v).mean())
                if s > best[0]:
                    best = (s, k / MODEL_FPS)
        return best[0], best[1], t

    def score(self, track: FaceTrack, audio_16k: np.ndarray, audio_start_s: float, vad_probs: np.ndarray,
              start_s: float, end_s: float, source_path: str | None = None) -> AsdResult:
        """Score ``track`` over ``[start_s, end_s)``; see :class:`stages.asd.ActiveSpeakerScorer`."""
        if source_path is None:
            raise ValueError("the learned ASD scorer needs the video (source_path)")
        idx = slice_track(track, start_s, end_s)
        if len(idx) < 4 or not np.isfinite(track.boxes[idx, 0]).any():
            return AsdResult(-10.0, 0.0, {"n_frames": float(len(idx))})
        faces, t0 = crop_track_faces(source_path, track, idx)
        mfcc = self.mfccs.get(audio_16k, compute_mfcc)
        offset = int(round((t0 - audio_start_s) * MODEL_FPS * MFCC_PER_FRAME))
        s, lag, n = self.score_arrays(faces, mfcc, offset)
        return AsdResult(score=s, lag_s=lag, detail={"n_frames": float(n)})
