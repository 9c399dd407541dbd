"""omnitalker: model.renderer -- codes (or a driving video) + a reference image -> talking-head frames / mp4.

Modules, one concern each:

* ``mesh``      -- MediaPipe face-mesh triangles (from face_landmarker.task) + border ring + frame anchors
* ``warp``      -- vectorized piecewise-affine warp (per-pixel triangle index, affine maps, cv2.remap)
* ``mouth``     -- inner-mouth cavity fill when the mouth opens beyond the reference
* ``baseline``  -- BaselineRenderer: reference fit with blendshape_fit, project codes, warp
* ``warpgan``   -- the learned warp-GAN renderer

The command (``omnitalker render``), codes and video I/O live in ``inference/`` (``render``,
``codes_io``, ``video_io``).
"""
