"""diarize: single-speaker checks, split mode, skip paths, the torchaudio fallback, real pyannote loading.

The reject/split logic is tested on speaker turns written by hand. The
pyannote tests load a tiny random-weight pipeline (``tiny_pyannote_pipeline``
in conftest.py) and run it on the real whisper_jfk.flac: real weights are
gated on the Hugging Face hub, so these check the plumbing (loading,
in-memory waveforms, labels, ledger rows), not diarization quality. They are
skipped only when pyannote.audio is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from shards.spec import AUDIO_SR
from stages.diarize import (
    TORCHAUDIO_NATIVE_ERRORS,
    DiarizeConfig,
    DiarizeStage,
    allow_torchaudio_without_native_ops,
    apply_speakers,
    build_activity,
    find_skip_reason,
    measure_speakers,
    split_by_speaker,
)
from stages.item import FileItem, Segment

JFK = "whisper_jfk.flac"


def make_segment(start_s: float, end_s: float) -> Segment:
    return Segment(start_sample=int(round(start_s * AUDIO_SR)), end_sample=int(round(end_s * AUDIO_SR)))


def make_item(spans: list[tuple[float, float]]) -> FileItem:
    item = FileItem(source_path="x.wav", audio_24k=np.zeros(AUDIO_SR * 12, np.float32),
                    audio_16k=np.zeros(16000 * 12, np.float32))
    item.segments = [make_segment(s, e) for s, e in spans]
    return item


# --------------------------------------------------------------------------- measuring


def test_measure_counts_other_speaker_and_overlap_seconds() -> None:
    turns = [(0.0, 3.0, "A"), (2.5, 4.0, "B"), (6.0, 9.0, "C")]
    labels, grid = build_activity(turns, 1.0, 5.0)
    assert labels == ["A", "B"] and grid.shape == (2, 400)
    dom, other_s, overlap_s = measure_speakers(labels, grid)
    assert dom == "A"
    assert other_s == pytest.approx(1.5, abs=0.011)
    assert overlap_s == pytest.approx(0.5, abs=0.011)
    assert measure_speakers(*build_activity(turns, 4.5, 5.5)) == (None, 0.0, 0.0)


def test_reject_mode_keeps_single_speaker_and_ledgers_the_rest() -> None:
    turns = [(0.0, 3.0, "A"), (3.0, 4.0, "B"),  # 0-4: B talks 1 s -> multi
             (4.0, 6.0, "A"), (6.0, 6.3, "B"), (6.3, 8.0, "A"),  # 4-8: 0.3 s blip of B -> tolerated
             (8.0, 10.0, "A"), (9.6, 10.0, "C")]  # 8-10: 0.4 s overlapped -> multi
    cfg = DiarizeConfig(min_other_speaker_s=0.5, max_speaker_overlap_s=0.2)
    keep, dropped = apply_speakers([make_segment(0, 4), make_segment(4, 8), make_segment(8, 10)], turns, cfg)
    assert [(s.start_s, s.speaker) for s in keep] == [(4.0, "A")]
    assert keep[0].extra["diarize"]["other_speaker_s"] == pytest.approx(0.3, abs=0.011)
    assert [(r.stage, r.reason, r.start_s) for r in dropped] == [("diarize", "multi_speaker", 0.0),
                                                                  ("diarize", "multi_speaker", 8.0)]
    assert dropped[0].value == pytest.approx(1.0, abs=0.011) and dropped[0].threshold == 0.5
    assert dropped[1].value == pytest.approx(0.4, abs=0.011) and "overlapped speech 0.40 s" in dropped[1].detail


def test_split_mode_cuts_at_speaker_changes_mid_pause() -> None:
    turns = [(0.0, 2.5, "A"), (2.7, 5.0, "B"), (5.0, 5.5, "A"), (5.5, 6.0, "B")]
    cfg = DiarizeConfig(mode="split", min_piece_s=1.0)
    keep, dropped = apply_speakers([make_segment(0.0, 6.0)], turns, cfg)
    assert [(round(s.start_s, 3), round(s.end_s, 3), s.speaker) for s in keep] == [(0.0, 2.6, "A"), (2.6, 5.0, "B")]
    assert all(s.extra["split_from"] == [0.0, 6.0] for s in keep)
    assert [(r.reason, r.start_s, r.end_s) for r in dropped] == [("too_short", 5.0, 5.5), ("too_short", 5.5, 6.0)]


def test_split_drops_overlapped_speech() -> None:
    labels, grid = build_activity([(0.0, 2.0, "A"), (1.5, 4.0, "B")], 0.0, 4.0)
    runs = split_by_speaker(labels, grid)
    assert runs == [(0, 150, "A"), (150, 200, None), (200, 400, "B")]
    keep, dropped = apply_speakers([make_segment(0.0, 4.0)], [(0.0, 2.0, "A"), (1.5, 4.0, "B")],
                                   DiarizeConfig(mode="split"))
    assert [s.speaker for s in keep] == ["A", "B"]
    assert [(r.reason, r.start_s, r.end_s) for r in dropped] == [("multi_speaker", 1.5, 2.0)]
    assert keep[1].start_sample == dropped[0].end_s * AUDIO_SR == 2 * AUDIO_SR


# --------------------------------------------------------------------------- skipping and bad config


def test_pyannote_backend_without_a_model_is_recorded_as_skip() -> None:
    item = make_item([(0.0, 4.0)])
    DiarizeStage(cfg=DiarizeConfig(backend="pyannote")).process([item])
    assert not item.rejected and len(item.segments) == 1 and item.segments[0].speaker is None
    assert "no diarize.model_path or diarize.hub_name" in item.provenance["skipped"]["diarize"]
    assert "diarize" not in item.provenance["models"]


def test_hub_name_without_token_is_recorded_as_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    item = make_item([(0.0, 4.0)])
    DiarizeStage(cfg=DiarizeConfig(hub_name="pyannote/speaker-diarization-community-1", backend="pyannote")
                 ).process([item])
    assert "needs HF_TOKEN" in item.provenance["skipped"]["diarize"] and len(item.segments) == 1


def test_auto_backend_falls_back_to_voice_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine (no pyannote weights, no token): the offline voice backend runs, and provenance
    names it and why pyannote was not used."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    item = make_item([(0.0, 4.0)])
    DiarizeStage(cfg=DiarizeConfig(hub_name="pyannote/speaker-diarization-community-1")).process([item])
    assert "diarize" not in item.provenance["skipped"]
    assert item.provenance["models"]["diarize"].startswith("voice-clustering:ge2e-resemblyzer-0.1.4@39373b86")
    assert "needs HF_TOKEN" in item.provenance["notes"]["diarize"]


def test_missing_pyannote_is_recorded_as_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):  # pretend pyannote is not installed
        return None if name.startswith("pyannote") else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    reason = find_skip_reason(DiarizeConfig(model_path=str(tmp_path)))
    assert reason is not None and "pyannote.audio is not installed" in reason and "pyannote-audio==4.0.7" in reason


def test_bad_config_rejects_the_file_loudly(tmp_path: Path) -> None:
    for cfg, message in [(DiarizeConfig(mode="merge"), "diarize.mode"), (DiarizeConfig(backend="x"), "diarize.backend"),
                         (DiarizeConfig(model_path=str(tmp_path / "nope")), "does not exist")]:
        item = make_item([(0.0, 4.0)])
        DiarizeStage(cfg=cfg).process([item])
        assert item.rejected and item.rejects[0].reason == "error" and message in item.rejects[0].detail


# --------------------------------------------------------------------------- torchaudio fallback

FAKE_EXTENSION = '''
from .utils import _load_lib
_IS_TORCHAUDIO_EXT_AVAILABLE = _load_lib("_torchaudio")
if _IS_TORCHAUDIO_EXT_AVAILABLE:
    raise AssertionError("the native library cannot have loaded")
'''
FAKE_UTILS = '''
from pathlib import Path
def _load_lib(lib):
    if not list((Path(__file__).parent.parent / "lib").glob(lib + "*.so")):
        return False
    raise OSError("Could not load this library: libc10_cuda.so: cannot open shared object file")
'''


def test_fallback_turns_an_unloadable_native_library_into_pure_python_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake package with torchaudio's loading logic and a native library that fails to load the way
    PyPI's CUDA build does next to CPU torch. torchaudio itself is a pinned dependency; the fake makes
    the failing-library path happen on every machine, whatever the installed wheel does."""
    pkg = tmp_path / "fake_torchaudio"
    (pkg / "_extension").mkdir(parents=True)
    (pkg / "lib").mkdir()
    (pkg / "lib" / "_torchaudio.abi3.so").write_bytes(b"\x7fELF not really")
    (pkg / "__init__.py").write_text("from . import _extension\n")
    (pkg / "_extension" / "__init__.py").write_text(FAKE_EXTENSION)
    (pkg / "_extension" / "utils.py").write_text(FAKE_UTILS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(OSError, match="libc10_cuda"):
            __import__("fake_torchaudio")
        allow_torchaudio_without_native_ops("fake_torchaudio")
        mod = __import__("fake_torchaudio")
        assert mod._extension._IS_TORCHAUDIO_EXT_AVAILABLE is False
        assert "libc10_cuda" in TORCHAUDIO_NATIVE_ERRORS.pop("_torchaudio")
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "fake_torchaudio"]:
            del sys.modules[name]


# --------------------------------------------------------------------------- real pyannote, tiny weights


def test_real_torchaudio_imports_and_its_pure_torch_ops_work(tiny_pyannote_pipeline: Path) -> None:
    import torch
    import torchaudio
    import torchaudio.compliance.kaldi as kaldi

    x = torch.randn(1, 24000)
    assert torchaudio.functional.resample(x, 24000, 16000).shape == (1, 16000)
    assert kaldi.fbank(x, num_mel_bins=40, sample_frequency=24000).shape == (98, 40)


def test_pipeline_from_local_dir_diarizes_real_speech(tiny_pyannote_pipeline: Path, make_speech_item,
                                                      media_dir: Path) -> None:
    spans = [(0.3, 4.0), (4.0, 8.0), (8.0, 10.5)]
    stage = DiarizeStage(cfg=DiarizeConfig(model_path=str(tiny_pyannote_pipeline)))
    item = make_speech_item(media_dir / JFK, spans)
    stage.process([item])
    assert not item.rejected, item.rejects
    assert item.provenance["models"]["diarize"].startswith("pyannote.audio-pipeline:")
    assert "diarize" not in item.provenance["skipped"]
    turns = stage._diarizer.diarize(item.audio_16k)
    labels = {lab for _, _, lab in turns}
    assert turns and all(lab.startswith("SPEAKER_") for lab in labels)
    assert all(0.0 <= s < e <= len(item.audio_16k) / 16000 for s, e, _ in turns)
    # Every input segment is either kept with one of the pipeline's labels or ledgered as multi-speaker.
    assert len(item.segments) + len(item.rejects) == len(spans)
    assert all(s.speaker in labels and "diarize" in s.extra for s in item.segments)
    assert all(r.reason == "multi_speaker" and r.value >= 0.5 for r in item.rejects)
    # The same turns through both thresholds: permissive keeps all with labels, strict rejects multi-speaker ones.
    loose = DiarizeConfig(min_other_speaker_s=1e9, max_speaker_overlap_s=1e9)
    keep, dropped = apply_speakers([make_segment(s, e) for s, e in spans], turns, loose)
    assert len(keep) == 3 and not dropped and all(s.speaker in labels for s in keep)
    strict = DiarizeConfig(min_other_speaker_s=0.01, max_speaker_overlap_s=0.0)
    keep, dropped = apply_speakers([make_segment(s, e) for s, e in spans], turns, strict)

    def n_labels(s: float, e: float) -> int:  # speakers with at least 10 ms inside [s, e), from the turns
        return len({lab for ts, te, lab in turns if min(te, e) - max(ts, s) >= 0.01})

    expected = [(s, e) for s, e in spans if n_labels(s, e) > 1]
    assert [(round(r.start_s, 3), round(r.end_s, 3)) for r in dropped] == [(round(s, 3), round(e, 3))
                                                                          for s, e in expected]
    assert all(r.reason == "multi_speaker" for r in dropped) and len(keep) == 3 - len(expected)


def test_segmentation_checkpoint_counts_local_speakers(tiny_pyannote_pipeline: Path, make_speech_item,
                                                       media_dir: Path) -> None:
    ckpt = tiny_pyannote_pipeline / "segmentation" / "pytorch_model.bin"
    loose = DiarizeConfig(model_path=str(ckpt), min_other_speaker_s=1e9, max_speaker_overlap_s=1e9)
    item = make_speech_item(media_dir / JFK, [(0.3, 7.0), (7.0, 10.5)])
    DiarizeStage(cfg=loose).process([item])
    assert item.provenance["models"]["diarize"].startswith("pyannote.audio-segmentation:")
    assert len(item.segments) == 2 and all(s.speaker is None for s in item.segments)
    d = DiarizeStage(cfg=loose)
    d.setup()
    for s in item.segments:  # per segment: the local speakers the model itself reports there
        local = d._diarizer.local_turns(item.audio_16k, s.start_s, s.end_s)
        assert s.extra["diarize"]["n_speakers"] == len({lab for _, _, lab in local})
    split = DiarizeStage(cfg=DiarizeConfig(model_path=str(ckpt), mode="split"))
    item = make_speech_item(media_dir / JFK, [(0.3, 7.0)])
    split.process([item])
    assert item.rejected and "needs a full pipeline" in item.rejects[0].detail


def test_main_prints_json(tiny_pyannote_pipeline: Path, media_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.diarize import main
    from stages.vad import VadSegmentStage

    main([str(media_dir / JFK), "--model-path", str(tiny_pyannote_pipeline)])
    out = json.loads(capsys.readouterr().out)
    assert out["provenance"]["models"]["diarize"].startswith("pyannote.audio-pipeline:")
    samples, rate, _ = decode_mono(str(media_dir / JFK))
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    vad_item = FileItem(source_path="jfk", audio_24k=a24, audio_16k=a16)
    VadSegmentStage().process([vad_item])
    assert len(vad_item.segments) == 4  # every VAD segment is printed as kept or as a ledger row
    assert len(out["segments"]) + len([r for r in out["rejects"] if r["reason"] == "multi_speaker"]) == 4
    assert all(s["speaker"].startswith("SPEAKER_") for s in out["segments"])


def test_a_configured_pipeline_that_cannot_load_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """``diarize.model_path`` set but pyannote missing: the file errors (retried, exit non-zero),
    never a quiet fallback to another backend or a skip."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):  # pretend pyannote is not installed
        return None if name.startswith("pyannote") else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    item = make_item([(0.0, 4.0)])
    DiarizeStage(cfg=DiarizeConfig(model_path=str(tmp_path))).process([item])
    assert item.rejected and item.rejects[0].reason == "error"
    assert "diarize.model_path" in item.rejects[0].detail and "pyannote-audio==4.0.7" in item.rejects[0].detail
    assert "diarize" not in item.provenance["skipped"] and "diarize" not in item.provenance["models"]
