"""omnitalker: blendshape_fit -- 61-d visual codes from video (paper Eq. 1).

Modules, one concern each:

* ``landmarker``  -- MediaPipe FaceLandmarker (VIDEO mode) at a constant 30 fps, model-file checks
* ``canonical``   -- MediaPipe's canonical mesh read out of ``face_landmarker.task``, iris points
* ``prior``       -- geometric prior of the 51 blendshapes, eye basis
* ``build_basis`` -- ridge regression towards the prior; ``python -m blendshape_fit.build_basis``
* ``face_model``  -- the basis asset and ``FaceModel.project``
* ``codes``       -- the 61-d layout (``CODE_LAYOUT``)
* ``neutral``     -- pose normalization, per-clip identity offset
* ``fit``         -- vectorized joint Gauss-Newton fit with bounded coefficients
* ``track``       -- fit a whole landmark track
* ``resample``    -- 30 fps -> 93.75 Hz mel grid
"""
