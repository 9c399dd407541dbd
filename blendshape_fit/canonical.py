"""MediaPipe's canonical face mesh, read out of ``face_landmarker.task``.

The ``.task`` file is a zip archive. Its ``geometry_pipeline_metadata_landmarks.binarypb``
member is a serialized ``GeometryPipelineMetadata`` protobuf::

    message GeometryPipelineMetadata {
      Mesh3d canonical_mesh = 1;                                 // 468 vertices
      repeated WeightedLandmarkRef procrustes_landmark_basis = 2;  // rigid landmarks
      InputSource input_source = 3;
    }
    message Mesh3d {
      VertexType vertex_type = 1; PrimitiveType primitive_type = 2;
      repeated float vertex_buffer = 3;   // x, y, z, u, v per vertex (VERTEX_PT)
      repeated uint32 index_buffer = 4;   // triangles
    }
    message WeightedLandmarkRef { uint32 landmark_id = 1; float weight = 2; }

It is decoded here with a few lines of protobuf wire-format parsing (no generated code).
Units are centimetres; x points to the subject's left (image right for a frontal face),
y up and z out of the face towards the camera.

The 10 iris landmarks (468-477) are not part of the mesh; :func:`derive_iris_points` builds
them from eyeball centres placed behind the eye openings.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GEOMETRY_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
N_MESH_VERTICES = 468

# Eye-opening rings (MediaPipe face-mesh topology). "Left" is the subject's left.
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
# Iris landmarks: centre then four contour points; MediaPipe puts the subject's right iris
# at 468-472 and the left one at 473-477. Contour order (subject's view): towards the
# subject's left, up, right, down -- checked against detections (see build_basis).
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)
EYEBALL_RADIUS_CM = 1.2  # adult eyeball radius (~24 mm diameter)
IRIS_RADIUS_CM = 0.59  # visible iris radius (~11.8 mm diameter)


@dataclass(frozen=True)
class CanonicalGeometry:
    """Canonical mesh and the rigid landmark weights MediaPipe uses for its Procrustes step."""

    vertices: np.ndarray  # (468, 3) float64 cm
    uv: np.ndarray  # (468, 2) texture coordinates
    triangles: np.ndarray  # (n, 3) int32 vertex indices
    procrustes_ids: np.ndarray  # (k,) int32 landmark ids
    procrustes_weights: np.ndarray  # (k,) float64


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def parse_protobuf_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split one protobuf message into ``(field, wire_type, value)`` triples (no nesting)."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, value))
    return fields


def _repeated_floats(fields: list[tuple[int, int, int | bytes]], number: int) -> np.ndarray:
    """Collect a repeated float field stored packed (wire 2) or unpacked (wire 5)."""
    chunks = []
    for f, _wire, value in fields:
        if f != number:
            continue
        assert isinstance(value, bytes)
        chunks.append(np.frombuffer(value, dtype="<f4"))
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def _repeated_uints(fields: list[tuple[int, int, int | bytes]], number: int) -> np.ndarray:
    out: list[int] = []
    for f, wire, value in fields:
        if f != number:
            continue
        if wire == 0:
            assert isinstance(value, int)
            out.append(value)
        else:  # packed
            assert isinstance(value, bytes)
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                out.append(v)
    return np.asarray(out, dtype=np.int64)


def parse_geometry_metadata(buf: bytes) -> CanonicalGeometry:
    """Decode a serialized ``GeometryPipelineMetadata``."""
    top = parse_protobuf_fields(buf)
    meshes = [v for f, w, v in top if f == 1 and w == 2]
    if not meshes:
        raise ValueError("no canonical_mesh in the geometry metadata")
    mesh = parse_protobuf_fields(meshes[0])  # type: ignore[arg-type]
    vb = _repeated_floats(mesh, 3)
    if vb.size % 5:
        raise ValueError("vertex buffer is not x, y, z, u, v")
    vb = vb.reshape(-1, 5)
    tri = _repeated_uints(mesh, 4).reshape(-1, 3).astype(np.int32)
    ids, weights = [], []
    for f, w, v in top:
        if f == 2 and w == 2:
            ref = parse_protobuf_fields(v)  # type: ignore[arg-type]
            lid = next((int(x) for g, _, x in ref if g == 1), 0)  # type: ignore[arg-type]
            wt = next((struct.unpack("<f", x)[0] for g, ww, x in ref if g == 2 and ww == 5), 0.0)
            ids.append(lid)
            weights.append(wt)
    return CanonicalGeometry(vertices=vb[:, :3].copy(), uv=vb[:, 3:].copy(), triangles=tri,
                             procrustes_ids=np.asarray(ids, dtype=np.int32),
                             procrustes_weights=np.asarray(weights, dtype=np.float64))


def read_canonical_geometry(task_path: str | Path) -> CanonicalGeometry:
    """Read the canonical mesh out of a ``face_landmarker.task`` bundle."""
    with zipfile.ZipFile(task_path) as bundle:
        names = bundle.namelist()
        member = next((n for n in names if n.endswith(GEOMETRY_MEMBER)), None)
        if member is None:
            raise ValueError(f"{task_path} has no {GEOMETRY_MEMBER} (members: {names})")
        geometry = parse_geometry_metadata(bundle.read(member))
    if geometry.vertices.shape != (N_MESH_VERTICES, 3):
        raise ValueError(f"canonical mesh has {geometry.vertices.shape[0]} vertices, expected 468")
    return geometry


def compute_eyeball_centres(vertices: np.ndarray, radius_cm: float = EYEBALL_RADIUS_CM) -> np.ndarray:
    """Eyeball centres (2, 3) cm: [subject's left, subject's right].

    Each centre sits ``radius_cm`` behind the centroid of its eye-opening ring, along -z.
    """
    centres = []
    for ring in (LEFT_EYE_RING, RIGHT_EYE_RING):
        opening = vertices[list(ring)].mean(axis=0)
        centres.append(opening - np.array([0.0, 0.0, radius_cm]))
    return np.asarray(centres)


def derive_iris_points(vertices: np.ndarray, radius_cm: float = EYEBALL_RADIUS_CM,
                       iris_radius_cm: float = IRIS_RADIUS_CM) -> np.ndarray:
    """The 10 iris landmarks (468-477) of a straight-ahead gaze, in cm.

    The iris centre is the front pole of the eyeball; the four contour points lie on the
    iris circle in the plane tangent to it, ordered like MediaPipe's (see ``*_IRIS``).
    """
    left_c, right_c = compute_eyeball_centres(vertices, radius_cm)
    front = np.array([0.0, 0.0, radius_cm])
    # Contour directions: subject's left (+x), up (+y), subject's right (-x), down (-y).
    dirs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    out = np.zeros((10, 3))
    for k, centre in enumerate((right_c, left_c)):
        pole = centre + front
        out[5 * k] = pole
        out[5 * k + 1:5 * k + 5] = pole + iris_radius_cm * dirs
    return out
