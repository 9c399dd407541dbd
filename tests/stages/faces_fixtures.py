"""Tiny random insightface checkpoints built with onnx.helper, in the buffalo_l layout.

The real buffalo_l pack is a download; these stand-ins have the same input and
output signatures so ``insightface.model_zoo`` routes them the same way:

- ``det_10g.onnx``: SCRFD-like, input (1, 3, H, W), 9 outputs (scores, boxes,
  keypoints at strides 8/16/32 with 2 anchors per location) -> ``SCRFD``.
- ``w600k_r50.onnx``: input (N, 3, 112, 112), one (N, 512) output -> ``ArcFaceONNX``.

Weights are random (seeded): detections are meaningless, the plumbing is real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2  # per location, as in SCRFD's 9-output models
EMBED_DIM = 512


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
