"""scene: shots from PySceneDetect's content detector on the video stream.

A shot is ``(start_s, end_s)`` in seconds of source time. Audio-only inputs
(and videos whose stream cannot be scanned) give one shot over the whole file;
the latter is recorded in provenance, never silently. Shot boundaries are the
presentation timestamps PySceneDetect reports (PyAV backend), so variable
frame rate video keeps true times.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field

from core.media_io import av_source, open_binary
from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import FileItem

log = logging.getLogger(__name__)


@dataclass
class SceneConfig:
    detector: str = "content"  # PySceneDetect detector: content | adaptive
    threshold: float = 27.0  # ContentDetector score above which a cut is declared
    adaptive_threshold: float = 3.0  # AdaptiveDetector ratio (used when detector == adaptive)
    min_shot_s: float = 0.5  # seconds: shortest shot the detector may produce
    downscale: int = 0  # integer downscale factor before detection; 0 = PySceneDetect's automatic choice


def detect_shots(path: str, duration_s: float, cfg: SceneConfig,
                 video_offset_s: float = 0.0) -> list[tuple[float, float]]:
    """Run the detector and return shots covering ``[0, duration_s]`` (seconds of source time).

    PySceneDetect counts time from the first video frame; ``video_offset_s``
    (the video stream's start minus the audio stream's start, seconds) moves
    its cuts onto the audio's time base.
    """
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager
    from scenedetect.backends.pyav import VideoStreamAv

    def run(stream_source) -> list[float]:
        video = VideoStreamAv(stream_source, suppress_output=True)
        fps = float(video.frame_rate)
        min_len = max(1, int(round(cfg.min_shot_s * fps)))
        manager = SceneManager()
        if cfg.downscale > 0:
            manager.auto_downscale = False
            manager.downscale = cfg.downscale
        if cfg.detector == "adaptive":
            manager.add_detector(AdaptiveDetector(adaptive_threshold=cfg.adaptive_threshold, min_scene_len=min_len))
        else:
            manager.add_detector(ContentDetector(threshold=cfg.threshold, min_scene_len=min_len))
        manager.detect_scenes(video=video)
        scenes = manager.get_scene_list(start_in_scene=True)
        return [float(start.seconds) + video_offset_s for start, _ in scenes[1:]]

    src = av_source(path)
    if src is not None:
        cuts = run(src)
    else:
        with open_binary(path) as fh:
            cuts = run(fh)
    bounds = [0.0] + [c for c in cuts if 0.0 < c < duration_s] + [duration_s]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]


@dataclass
class SceneCutStage(Stage):
    name: str = "scene"
    cfg: SceneConfig = field(default_factory=SceneConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))

    def process_item(self, item: FileItem) -> None:
        audio_s = len(item.audio_24k) / AUDIO_SR if item.audio_24k is not None else item.probe.duration_s
        duration_s = max(audio_s, 0.0)
        if not item.probe.has_video:
            item.shots = [(0.0, duration_s)]
            item.record_skip(self.name, "audio-only input: one shot")
            return
        try:
            item.shots = detect_shots(item.source_path, duration_s, self.cfg,
                                      item.probe.video_start_s - item.probe.audio_start_s)
            item.record_model(self.name, f"scenedetect-{self.cfg.detector}")
        except Exception as exc:  # noqa: BLE001 - a broken video stream still has usable audio
            log.warning("scene detection failed on %s: %s", item.source_path, exc)
            item.shots = [(0.0, duration_s)]
            item.record_skip(self.name, f"video stream unreadable ({type(exc).__name__}: {exc}): one shot")


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.scene FILE``: print the detected shots as JSON."""
    from stages.probe import ProbeConfig, probe_file

    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m stages.scene FILE")
    info = probe_file(args[0], ProbeConfig())
    print(json.dumps({"shots": detect_shots(args[0], info.duration_s, SceneConfig(),
                                                 info.video_start_s - info.audio_start_s)}, indent=2))


if __name__ == "__main__":
    main()
