"""omnitalker: blendshape_fit -- 61-d visual codes from video (paper Eq. 1).

Modules, one concern each:

* ``landmarker``  -- MediaPipe FaceLandmarker (VIDEO mode) at source frame times or on a grid, frame
  iterators (``iterate_frames_with_grid``: every source frame and the grid times it shows), model-file checks
* ``canonical``   -- MediaPipe's canonical mesh read out of ``face_landmarker.task``, iris points
* ``prior``       -- geometric prior of the 51 blendshapes, eye basis
* ``build_basis`` -- ridge regression towards the prior; ``python -m blendshape_fit.build_basis``
* ``face_model``  -- the basis asset and ``FaceModel.project``
* ``codes``       -- the 61-d layout (``CODE_LAYOUT``)
* ``neutral``     -- pose normalization, per-clip identity offset
* ``fit``         -- vectorized joint Gauss-Newton fit with bounded coefficients
* ``track``       -- fit a whole landmark track
* ``resample``    -- frame times -> 93.75 Hz mel grid
"""
