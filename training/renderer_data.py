"""Training pairs for the learned renderer, from curated shards (schema v3: ``face_boxes``).

Each shard row keeps its source video (``source_path``, ``start_s``, ``end_s``), its codes at
93.75 Hz (``visual``) and, from schema v3 on, the speaker's face box per 30 fps frame
(``face_boxes``: x0 y0 x1 y1 source pixels, frame i at ``start_s + i / 30`` s, NaN where no
face). Older shards fail with ``SchemaVersionError`` (``training.data.open_shard``).

Per clip visit (:class:`RendererPairDataset`):

1. ``frames_per_clip`` frames with a face box are drawn at random;
2. one square crop for the whole clip (the median face box, ``crop_scale`` x its larger side,
   moved up by ``crop_shift_up`` x the side: the same rule as the renderers' reference crop,
   ``model.renderer.baseline.compute_crop_box``), so head motion stays visible in the crop;
3. the frames are decoded with PyAV on the 30 fps grid
   (``blendshape_fit.landmarker.iterate_grid_frames``) and cropped to ``S x S``;
4. the codes are interpolated from 93.75 Hz to those frame times and re-expressed in the crop
   (``model.renderer.warpgan.keypoints.codes_to_crop``);
5. ``pairs_per_clip`` (source, driving) pairs of distinct frames of that clip are yielded.

The stream is endless (epochs of shuffled clips), a function of ``(seed, rank, start_step)``;
clips are dealt to ranks, then to DataLoader workers, round-robin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from blendshape_fit.landmarker import iterate_grid_frames
from blendshape_fit.resample import interpolate_rows
from model.renderer.baseline import crop_square
from model.renderer.warpgan.keypoints import codes_to_crop
from shards.codes import CODE_DIM
from shards.reader import ShardError, list_shard_parts, read_row_group
from shards.schema import SHARD_SCHEMA
from shards.spec import VIDEO_TRACK_FPS, mel_frame_times
from training.data import frames_of, open_shard

log = logging.getLogger("omnitalker.renderer")
INDEX_COLUMNS = ("clip_id", "source_path", "start_s", "end_s", "n_frames")
CLIP_COLUMNS = ("clip_id", "visual", "face_boxes")


@dataclass
class RendererDataConfig:
    """How pairs are drawn and cropped (the crop side S is the model's image_size)."""

    batch_size: int = 8  # pairs per batch
    frames_per_clip: int = 16  # frames decoded per clip visit
    pairs_per_clip: int = 16  # (source, driving) pairs yielded per clip visit
    min_face_frames: int = 2  # clips with fewer frames with a face box are skipped
    crop_scale: float = 2.0  # crop side, x the larger side of the median face box
    crop_shift_up: float = 0.08  # crop centre moved up by this fraction of the crop side
    decode_max_side_px: int = 1280  # frames are decoded at most this large (longer side, pixels)
    num_workers: int = 0  # DataLoader worker processes per rank
    seed: int = 0


@dataclass
class RendererClip:
    """Where one clip lives and what video it comes from."""

    file: str
    row_group: int
    row: int
    clip_id: str
    source_path: str
    start_s: float
    end_s: float
    n_frames: int  # codes at 93.75 Hz


def check_face_boxes_column(path: str, pf: pq.ParquetFile) -> None:
    want = SHARD_SCHEMA.field("face_boxes").type
    names = pf.schema_arrow.names
    got = pf.schema_arrow.field("face_boxes").type if "face_boxes" in names else None
    if got != want:
        raise ShardError(f"{path}: column face_boxes has type {got}, expected {want} "
                         "(re-curate with schema v3 to train the renderer)")


def build_renderer_index(shards_dir: str | Path) -> list[RendererClip]:
    """Every clip with codes (non-null ``visual``) of the shards; schema and column types checked."""
    clips: list[RendererClip] = []
    for path in list_shard_parts(str(shards_dir))[1]:
        pf = open_shard(path)
        check_face_boxes_column(path, pf)
        for rg in range(pf.num_row_groups):
            t = read_row_group(pf, path, rg, INDEX_COLUMNS + ("fit_rmse",))
            fit = t.column("fit_rmse").to_pylist()
            for r in range(t.num_rows):
                if fit[r] is None:  # no codes
                    continue
                clips.append(RendererClip(path, rg, r, t.column("clip_id")[r].as_py(),
                                          t.column("source_path")[r].as_py(), float(t.column("start_s")[r].as_py()),
                                          float(t.column("end_s")[r].as_py()), int(t.column("n_frames")[r].as_py())))
    if not clips:
        raise ValueError(f"{shards_dir}: no clip with visual codes to train the renderer on")
    return clips


def load_clip_tracks(clip: RendererClip, cache: dict[str, pq.ParquetFile]) -> tuple[np.ndarray, np.ndarray]:
    """``(codes (n, 61) at 93.75 Hz, face boxes (m, 4) at 30 fps)`` of one clip, checked."""
    pf = cache.get(clip.file)
    if pf is None:
        pf = cache.setdefault(clip.file, open_shard(clip.file))
    t = read_row_group(pf, clip.file, clip.row_group, CLIP_COLUMNS)
    where = f"{clip.file}: row group {clip.row_group} row {clip.row}"
    if t.column("clip_id")[clip.row].as_py() != clip.clip_id:
        raise ShardError(f"{where}: not clip {clip.clip_id}; the shard changed since it was indexed")
    codes = frames_of(t, "visual", clip.row, CODE_DIM)
    boxes = frames_of(t, "face_boxes", clip.row, 4)
    if codes is None or boxes is None:
        raise ShardError(f"{where}: clip {clip.clip_id} has a null {'visual' if codes is None else 'face_boxes'}")
    return codes, boxes


def compute_clip_crop(boxes: np.ndarray, crop_scale: float, shift_up: float) -> np.ndarray:
    """Square crop (x0, y0, x1, y1) source px around the median of the valid boxes (T, 4)."""
    ok = np.isfinite(boxes).all(axis=1)
    lo = np.median(boxes[ok, :2], axis=0)
    hi = np.median(boxes[ok, 2:], axis=0)
    side = float(crop_scale * max(hi - lo))
    cx, cy = (lo + hi) / 2.0
    cy = cy - shift_up * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def codes_at_frames(codes: np.ndarray, start_s: float, frame_idx: np.ndarray) -> np.ndarray:
    """Codes (n, 61) on the 93.75 Hz grid interpolated at 30 fps frames ``frame_idx`` (times start_s + i/30)."""
    src_t = mel_frame_times(start_s, len(codes))
    return interpolate_rows(codes.astype(np.float64), src_t, start_s + frame_idx / VIDEO_TRACK_FPS).astype(np.float32)


def decode_crops(clip: RendererClip, frame_idx: np.ndarray, crop_px: np.ndarray, size: int,
                 max_side_px: int) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
    """``{frame index: (size, size, 3) uint8 crop}`` of the wanted 30 fps frames, and the source (W, H)."""
    wanted = set(int(i) for i in frame_idx)
    last = max(wanted)
    crops: dict[int, np.ndarray] = {}
    wh = (0, 0)
    rgb_last: np.ndarray | None = None
    end_s = clip.start_s + (last + 1) / VIDEO_TRACK_FPS
    for i, _, src_index, rgb, (w, h) in iterate_grid_frames(clip.source_path, clip.start_s, end_s, VIDEO_TRACK_FPS,
                                                             max_side_px):
        if rgb is not None:
            rgb_last = rgb
        if i in wanted and src_index >= 0 and rgb_last is not None:
            wh = (w, h)
            k = rgb_last.shape[1] / w  # decoded pixels per source pixel
            cx, cy = (crop_px[0] + crop_px[2]) / 2 * k, (crop_px[1] + crop_px[3]) / 2 * k
            crops[i] = crop_square(rgb_last, (cx, cy, (crop_px[2] - crop_px[0]) * k), size)
        if i >= last:
            break
    return crops, wh


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0


class RendererPairDataset(IterableDataset):
    """Endless (source, driving) pairs: dicts of source, driving (3, S, S), source_codes, driving_codes (61,)."""

    def __init__(self, clips: list[RendererClip], cfg: RendererDataConfig, image_size: int, rank: int = 0,
                 world_size: int = 1, start_step: int = 0) -> None:
        self.clips = clips
        self.cfg = cfg
        self.size = image_size
        self.rank, self.world_size, self.start_step = rank, world_size, start_step

    def sample_clip(self, clip: RendererClip, rng: np.random.Generator, cache: dict[str, pq.ParquetFile]
                    ) -> list[dict[str, Any]]:
        """The pairs of one visit of ``clip`` (empty when it has too few usable frames)."""
        codes, boxes = load_clip_tracks(clip, cache)
        n_box = min(len(boxes), int(np.floor((clip.end_s - clip.start_s) * VIDEO_TRACK_FPS)) + 1)
        valid = np.flatnonzero(np.isfinite(boxes[:n_box]).all(axis=1))
        if len(valid) < self.cfg.min_face_frames:
            log.warning("clip %s: %d frames with a face box, skipped", clip.clip_id, len(valid))
            return []
        pick = np.sort(rng.choice(valid, size=min(self.cfg.frames_per_clip, len(valid)), replace=False))
        crop_px = compute_clip_crop(boxes[valid], self.cfg.crop_scale, self.cfg.crop_shift_up)
        crops, wh = decode_crops(clip, pick, crop_px, self.size, self.cfg.decode_max_side_px)
        got = np.array(sorted(crops), dtype=np.int64)
        if len(got) < 2:
            return []
        crop_codes = codes_to_crop(codes_at_frames(codes, clip.start_s, got), crop_px, wh)
        images = {int(i): to_tensor(crops[int(i)]) for i in got}
        out = []
        for _ in range(self.cfg.pairs_per_clip):
            a, b = rng.choice(len(got), size=2, replace=False)
            out.append({"source": images[int(got[a])], "driving": images[int(got[b])],
                        "source_codes": torch.from_numpy(crop_codes[a]),
                        "driving_codes": torch.from_numpy(crop_codes[b])})
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.cfg.seed, self.rank, worker, self.start_step])
        cache: dict[str, pq.ParquetFile] = {}
        stride = self.world_size * n_workers
        slot = self.rank * n_workers + worker
        epoch = 0
        while True:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.clips))
            # fewer clips than streams: every stream still gets one (they then share clips)
            mine = order[slot::stride] if len(order) >= stride else order[[slot % len(order)]]
            produced = 0
            for ci in mine:
                for pair in self.sample_clip(self.clips[int(ci)], rng, cache):
                    produced += 1
                    yield pair
            if produced == 0 and epoch > 0:
                raise RuntimeError("no clip yields training pairs (every clip lacks face boxes or frames)")
            epoch += 1


def make_pair_loader(clips: list[RendererClip], cfg: RendererDataConfig, image_size: int, rank: int = 0,
                     world_size: int = 1, start_step: int = 0) -> DataLoader:
    """Batches (dicts of stacked tensors) of an endless pair stream for ``rank``."""
    ds = RendererPairDataset(clips, cfg, image_size, rank, world_size, start_step)
    return DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers, persistent_workers=False)
