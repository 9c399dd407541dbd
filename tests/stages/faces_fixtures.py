"""Faces test helpers: tiny random insightface checkpoints, and a cross-faded splice of two clips.

Insightface stand-ins, built with onnx.helper in the buffalo_l layout.

The real buffalo_l pack is a download; these stand-ins have the same input and
output signatures so ``insightface.model_zoo`` routes them the same way:

- ``det_10g.onnx``: SCRFD-like, input (1, 3, H, W), 9 outputs (scores, boxes,
  keypoints at strides 8/16/32 with 2 anchors per location) -> ``SCRFD``.
- ``w600k_r50.onnx``: input (N, 3, 112, 112), one (N, 512) output -> ``ArcFaceONNX``.

Weights are random (seeded): detections are meaningless, the plumbing is real.

``write_crossfade``: two real talking clips joined by a cross-fade inside one
shot (no cut for the scene detector), for the face identity split.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shards.spec import AUDIO_SR
from stages.item import FileItem, Segment
from stages.probe import ProbeConfig, probe_file
from stages.scene import SceneConfig, detect_shots

STRIDES = (8, 16, 32)
ANCHORS = 2  # per location, as in SCRFD's 9-output models
EMBED_DIM = 512


def make_item(path: Path, spans: list[tuple[float, float]] | None = None, with_shots: bool = False) -> FileItem:
    """A FileItem as the pipeline has it before ``faces``: probed, shots, speech segments."""
    item = FileItem(source_path=str(path))
    item.probe = probe_file(str(path), ProbeConfig())
    dur = item.probe.duration_s
    item.shots = (detect_shots(str(path), dur, SceneConfig(), item.probe.video_start_s - item.probe.audio_start_s)
                  if with_shots else [(0.0, dur)])
    if spans is None:  # one segment per shot
        spans = list(item.shots)
    for a, b in spans:
        k = next(i for i, (s, e) in enumerate(item.shots) if s <= (a + b) / 2 < e)
        item.segments.append(Segment(int(round(a * AUDIO_SR)), int(round(b * AUDIO_SR)), shot_index=k))
    return item


def build_scrfd(path: Path, seed: int = 0, score_bias: float = -2.0) -> Path:
    """SCRFD-like detector; ``score_bias`` (logit) keeps most random scores below 0.5."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    outs: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        for head, k in (("score", 1), ("bbox", 4), ("kps", 10)):
            w = rng.normal(0, 0.01, (ANCHORS * k, 3, s, s)).astype(np.float32)
            b = np.full(ANCHORS * k, score_bias if head == "score" else 1.0, np.float32)
            wn, bn = f"{head}{s}_w", f"{head}{s}_b"
            inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
            conv, tr = f"{head}{s}_conv", f"{head}{s}_t"
            nodes.append(helper.make_node("Conv", ["input.1", wn, bn], [conv], kernel_shape=[s, s], strides=[s, s]))
            nodes.append(helper.make_node("Transpose", [conv], [tr], perm=[0, 2, 3, 1]))
            shape = f"{head}{s}_shape"
            inits.append(numpy_helper.from_array(np.array([-1, k], np.int64), shape))
            flat = f"{head}{s}_flat" if head == "score" else f"{head}_{s}"
            nodes.append(helper.make_node("Reshape", [tr, shape], [flat]))
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [flat], [f"score_{s}"]))
            outs[head].append(f"{head}_{s}")
    names = outs["score"] + outs["bbox"] + outs["kps"]
    widths = {"score": 1, "bbox": 4, "kps": 10}
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", widths[n.split("_")[0]]]) for n in names]
    graph = helper.make_graph(nodes, "scrfd_tiny",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              outputs, inits)
    return save(graph, path)


def build_arcface(path: Path, seed: int = 1) -> Path:
    """ArcFace-like recognizer: 8x8 average pooling, then a random (588, 512) projection."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1.0, (3 * 14 * 14, EMBED_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "proj"], ["683"]),
    ]
    graph = helper.make_graph(nodes, "arcface_tiny",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["n", 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["n", EMBED_DIM])],
                              [numpy_helper.from_array(w, "proj")])
    return save(graph, path)


def save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_buffalo_root(root: Path, name: str = "buffalo_l") -> Path:
    """``root/models/<name>/{det_10g,w600k_r50}.onnx``; returns ``root``."""
    d = root / "models" / name
    build_scrfd(d / "det_10g.onnx")
    build_arcface(d / "w600k_r50.onnx")
    return root


def read_frames(path: Path, start_s: float, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``n`` consecutive RGB frames (resized to ``size`` = (W, H)) from ``start_s`` seconds on."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        for frame in src.decode(stream):
            if frame.time is None or frame.time < start_s - 1e-6:
                continue
            frames.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]))
            if len(frames) == n:
                break
    if len(frames) < n:
        raise ValueError(f"{path} has fewer than {n} frames after {start_s} s")
    return frames


def write_crossfade(a: Path, b: Path, out: Path, hold_s: float = 2.4, fade_s: float = 0.6, fps: int = 25,
                    size: tuple[int, int] = (512, 512)) -> Path:
    """H.264 mp4 (no audio): ``hold_s`` seconds of clip ``a``, a linear ``fade_s``-second cross-fade
    (both clips keep moving), then ``hold_s`` seconds of clip ``b``. Both clips should run at ``fps``."""
    n_hold, n_fade = int(round(hold_s * fps)), int(round(fade_s * fps))
    fa = read_frames(a, 0.0, n_hold + n_fade, size)
    fb = read_frames(b, 0.0, n_fade + n_hold, size)
    frames = fa[:n_hold]
    for i in range(n_fade):
        w = (i + 1) / (n_fade + 1)
        mix = (1 - w) * fa[n_hold + i].astype(np.float32) + w * fb[i].astype(np.float32)
        frames.append(np.clip(np.round(mix), 0, 255).astype(np.uint8))
    frames += fb[n_fade:]
    with av.open(str(out), "w") as dst:
        v = dst.add_stream("libx264", rate=fps)
        v.width, v.height = size
        v.pix_fmt = "yuv420p"
        v.codec_context.time_base = fractions.Fraction(1, fps)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for p in v.encode(frame):
                dst.mux(p)
        for p in v.encode():
            dst.mux(p)
    return out
