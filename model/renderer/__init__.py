"""omnitalker: model.renderer -- codes (or a driving video) + a reference image -> talking-head frames / mp4.

Modules, one concern each:

* ``mesh``      -- MediaPipe face-mesh triangles (from face_landmarker.task) + border ring + frame anchors
* ``warp``      -- vectorized piecewise-affine warp (per-pixel triangle index, affine maps, cv2.remap)
* ``mouth``     -- inner-mouth cavity fill when the mouth opens beyond the reference
* ``baseline``  -- BaselineRenderer: reference fit with blendshape_fit, project codes, warp
* ``codes_io``  -- codes from npz / shards / fits, resampled to the output fps
* ``video_io``  -- reference frames, audio, mp4 writing with PyAV
* ``cli``       -- ``omnitalker render`` (codes mode and drive mode), render_codes_to_mp4, reenact_to_mp4
"""
