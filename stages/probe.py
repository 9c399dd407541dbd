"""probe: what a file is, read from its container without decoding it.

Fills :class:`~stages.item.ProbeInfo`: container, streams, duration
(seconds), frame rate (frames per second; constant or variable), resolution,
audio rate (Hz) and channels. The sha256 of the file is computed by the
pipeline's listing step (it is the resume key), so probe only checks it is set.

Rejects: empty or unreadable files, files without an audio stream, files
without a video stream (unless ``require_video`` is off), files shorter than
``min_duration_s``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import sys
from dataclasses import asdict, dataclass, field

import av
import numpy as np

from core.media_io import av_source, file_info, open_binary, sha256_of
from stages.base import Resources, Stage
from stages.item import FileItem, ProbeInfo, Reject

# Containers PyAV (FFmpeg) decodes, by extension. A listed directory's other files are inputs too,
# ledgered by probe as unsupported_extension (sidecar transcripts excepted: pipeline/inputs.py).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".qt", ".mpg", ".mpeg", ".m2v", ".vob", ".avi",
                    ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".wmv", ".asf", ".flv", ".f4v", ".ogv", ".mxf",
                    ".dv", ".nut", ".y4m")
AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a", ".mp3", ".ogg", ".oga", ".opus", ".aac", ".wma", ".aif", ".aiff",
                    ".aifc", ".caf", ".ac3", ".eac3", ".amr", ".mka", ".au", ".spx", ".w64", ".mp2")


@dataclass
class ProbeConfig:
    min_duration_s: float = 1.0  # seconds: shorter inputs are rejected as too_short
    vfr_packets: int = 600  # video packets read to decide constant vs variable frame rate
    vfr_tolerance: float = 0.02  # relative spread of frame intervals above which a stream is VFR
    require_video: bool = True  # audio-only inputs are rejected (no_video): every clip needs a visible speaker
    max_frame_pixels: int = 8192 * 8192  # declared video width x height above this is refused (too_large)


def detect_variable_frame_rate(pts_s: np.ndarray, tolerance: float) -> bool:
    """True when frame intervals (seconds) spread more than ``tolerance`` around their median."""
    if len(pts_s) < 3:
        return False
    deltas = np.diff(np.sort(pts_s))
    deltas = deltas[deltas > 0]
    if len(deltas) < 2:
        return False
    median = float(np.median(deltas))
    spread = (np.percentile(deltas, 95) - np.percentile(deltas, 5)) / median
    return bool(spread > tolerance)


def probe_container(container: av.container.InputContainer, cfg: ProbeConfig) -> ProbeInfo:
    """Read stream metadata and a few hundred video packet timestamps."""
    info = ProbeInfo(container=container.format.name)
    durations: list[float] = []
    if container.duration is not None:
        durations.append(container.duration / av.time_base)
    vstream = next((s for s in container.streams.video), None)
    astream = next((s for s in container.streams.audio), None)
    info.n_audio_streams = len(container.streams.audio)
    if astream is not None:
        info.has_audio = True
        info.audio_codec = astream.codec_context.name
        info.audio_sample_rate = int(astream.codec_context.sample_rate or astream.rate or 0) or None
        info.audio_channels = int(astream.codec_context.channels or 0) or None
        if astream.time_base is not None:
            if astream.start_time is not None:
                info.audio_start_s = float(astream.start_time * astream.time_base)
            if astream.duration is not None:
                durations.append(float(astream.duration * astream.time_base))
    if vstream is not None and vstream.codec_context.width:
        info.has_video = True
        info.video_codec = vstream.codec_context.name
        info.width = int(vstream.codec_context.width)
        info.height = int(vstream.codec_context.height)
        rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
        info.fps = float(rate) if rate else None
        if vstream.time_base is not None:
            if vstream.start_time is not None:
                info.video_start_s = float(vstream.start_time * vstream.time_base)
            if vstream.duration is not None:
                durations.append(float(vstream.duration * vstream.time_base))
        pts: list[float] = []
        for packet in container.demux(vstream):
            if packet.pts is not None and packet.time_base is not None:
                pts.append(float(packet.pts * packet.time_base))
            if len(pts) >= cfg.vfr_packets:
                break
        info.variable_frame_rate = detect_variable_frame_rate(np.asarray(pts), cfg.vfr_tolerance)
        if not pts:  # a video stream that is declared but holds no frame is no video
            info.has_video = False
            info.empty_video_stream = True
        elif info.width * info.height > cfg.max_frame_pixels:
            info.has_video = False  # refused below, before any decoder allocates a frame of that size
    info.duration_s = max(durations) if durations else 0.0
    return info


def probe_file(path: str, cfg: ProbeConfig) -> ProbeInfo:
    """Open ``path`` (local or URI) with PyAV and probe it."""
    size, _ = file_info(path)
    if size == 0:
        raise EOFError("empty file (0 bytes)")
    src = av_source(path)
    if src is not None:
        with av.open(src) as container:
            info = probe_container(container, cfg)
    else:
        with open_binary(path) as fh, av.open(fh) as container:
            info = probe_container(container, cfg)
    info.size_bytes = size
    return info


@dataclass
class ProbeStage(Stage):
    name: str = "probe"
    cfg: ProbeConfig = field(default_factory=ProbeConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=4))

    def process_item(self, item: FileItem) -> None:
        try:
            size, _ = file_info(item.source_path)
        except (FileNotFoundError, OSError) as exc:
            item.source_sha256 = item.source_sha256 or hashlib.sha256(f"missing:{item.source_path}".encode()).hexdigest()
            item.reject_file(Reject(stage=self.name, reason="missing", detail=str(exc)))
            return
        if not item.source_sha256:
            item.source_sha256 = sha256_of(item.source_path)
        ext = posixpath.splitext(item.source_path.split("?", 1)[0])[1].lower()
        if ext not in VIDEO_EXTENSIONS + AUDIO_EXTENSIONS:
            item.reject_file(Reject(stage=self.name, reason="unsupported_extension", value=float(size),
                                    detail=f"{ext or '(no extension)'} is not a media container this job "
                                           "decodes (stages/probe.py lists them); rename the file if it is one"))
            return
        if size == 0:
            item.reject_file(Reject(stage=self.name, reason="empty_file", value=0.0,
                                    detail="file has 0 bytes"))
            return
        try:
            info = probe_file(item.source_path, self.cfg)
        except Exception as exc:  # noqa: BLE001 - any decoder error means unreadable
            item.reject_file(Reject(stage=self.name, reason="unreadable", value=float(size),
                                    detail=f"{type(exc).__name__}: {exc}"))
            return
        item.probe = info
        if info.width and info.height and info.width * info.height > self.cfg.max_frame_pixels:
            item.reject_file(Reject(stage=self.name, reason="too_large", value=float(info.width * info.height),
                                    threshold=float(self.cfg.max_frame_pixels),
                                    detail=f"the video declares {info.width} x {info.height} pixels per frame"))
            return
        if not info.has_audio:
            item.reject_file(Reject(stage=self.name, reason="no_audio", value=0.0,
                                    detail="no audio stream"))
        elif self.cfg.require_video and not info.has_video:
            item.reject_file(Reject(stage=self.name, reason="no_video", value=0.0,
                                    detail=("the video stream holds no frame" if info.empty_video_stream
                                            else "no video stream") + " (probe.require_video is true)"))
        elif info.duration_s < self.cfg.min_duration_s:
            item.reject_file(Reject(stage=self.name, reason="too_short", value=info.duration_s,
                                    threshold=self.cfg.min_duration_s,
                                    detail="duration_s below min_duration_s"))


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.probe FILE``: print the probe result as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m stages.probe FILE")
    print(json.dumps(asdict(probe_file(args[0], ProbeConfig())), indent=2))


if __name__ == "__main__":
    main()
