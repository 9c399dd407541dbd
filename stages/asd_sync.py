"""The lip-sync model as an active-speaker scorer: which of several faces is saying this audio.

For one candidate track over one segment, the landmarks ``faces`` measured on that track's every
source frame are used (``stages/face_landmarks.py``; without them MediaPipe follows the track's face
here, ``blendshape_fit.landmarker.extract_frames`` with the track's boxes as target), the
codes are fitted and put on the mel grid as the visual stage does, and the lip-sync model
scores them against the segment's audio (``model.sync.scoring``). The score is the lip-sync
confidence within ``near_lag_s`` (higher = this face speaks the audio); the lag is the best
offset in the ASD convention (positive: the video lags the audio).

Costly without the shared landmarks (a landmark pass per candidate), so ``stages/asd.py`` calls it only to choose among
several faces (``asd.sync_choice``); a single face keeps the classical decision and the sync
stage checks it after ``visual``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blendshape_fit.face_model import load_face_model
from blendshape_fit.fit import BlendshapeFitter
from blendshape_fit.landmarker import BoxTrack, FaceLandmarkExtractor
from blendshape_fit.resample import resample_at_times
from blendshape_fit.track import fit_track
from model.sync.io import load_sync_model
from model.sync.model import SyncModel
from model.sync.scoring import score_clip
from shards.spec import AUDIO_SR, count_mel_frames, mel_frame_times
from stages.asd_scorer import AsdResult
from stages.audio import resample_to
from stages.face_landmarks import select_landmarks
from stages.item import MODEL_SR, FaceTrack
from stages.mel import LogMel

MAX_FACES = 4  # faces MediaPipe looks for while following one track among others
MIN_TRACK_IOU = 0.3  # a frame's face must overlap the track's box this much (IoU)


@dataclass
class SyncScorer:
    """``ActiveSpeakerScorer`` on the lip-sync model (loads MediaPipe, the face basis and the model once)."""

    model_path: str | None = None  # lip-sync weights; None = the shipped default
    near_lag_s: float = 0.2  # seconds: lags the confidence is read within
    name: str = "sync"
    _model: SyncModel | None = field(default=None, init=False, repr=False)
    _extractor: FaceLandmarkExtractor | None = field(default=None, init=False, repr=False)
    _fitter: BlendshapeFitter | None = field(default=None, init=False, repr=False)
    _mel: LogMel | None = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        if self._model is None:
            self._model, model_id = load_sync_model(self.model_path)
            self.name = f"sync:{model_id}"
            self._fitter = BlendshapeFitter(load_face_model())
            self._mel = LogMel()

    def codes_for(self, track: FaceTrack, source_path: str, start_s: float, end_s: float) -> np.ndarray | None:
        """``(n_mel, 61)`` codes of ``track``'s face over ``[start_s, end_s)``, or None when it is not found."""
        assert self._fitter is not None
        lt = None
        if track.landmarks is not None:
            lt = select_landmarks(track.landmarks, start_s, end_s, track.frame_w, track.frame_h)
        if lt is None:  # no rows from faces (a caller without the faces stage): follow the face here
            if self._extractor is None:
                self._extractor = FaceLandmarkExtractor(num_faces=MAX_FACES)
            target = BoxTrack(track.times_s, track.boxes, MIN_TRACK_IOU)
            lt = self._extractor.extract_frames(source_path, start_s, end_s, target=target)
        if lt.n_frames == 0 or lt.face_mask.mean() < 0.5:
            return None
        fit = fit_track(self._fitter, lt)
        n = count_mel_frames(int(round((end_s - start_s) * AUDIO_SR)))
        return resample_at_times(fit.codes, lt.times_s, mel_frame_times(start_s, n))

    def score(self, track: FaceTrack, audio_16k: np.ndarray, audio_start_s: float, vad_probs: np.ndarray,
              start_s: float, end_s: float, source_path: str | None = None) -> AsdResult:
        self.setup()
        assert self._model is not None and self._mel is not None and source_path is not None
        codes = self.codes_for(track, source_path, start_s, end_s)
        if codes is None:
            return AsdResult(score=-1.0, lag_s=0.0, detail={"sync_face_found": 0.0})
        a = int(round((start_s - audio_start_s) * MODEL_SR))
        audio = resample_to(audio_16k[max(a, 0):a + int(round((end_s - start_s) * MODEL_SR))], MODEL_SR, AUDIO_SR)
        mel = self._mel(audio)
        n = min(len(mel), len(codes))
        try:
            s = score_clip(self._model, mel[:n], codes[:n], near_lag_s=self.near_lag_s)
        except ValueError:  # too short to score
            return AsdResult(score=-1.0, lag_s=0.0, detail={"sync_too_short": 1.0})
        return AsdResult(score=s.conf_near, lag_s=-s.near_offset_s, detail={"sync_dist": s.near_dist})
