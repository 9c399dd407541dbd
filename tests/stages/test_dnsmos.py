"""DNSMOS scoring equals the speechmos reference, and the window subset stays close."""

from __future__ import annotations

import numpy as np
import pytest
import speechmos.dnsmos as reference

from stages.dnsmos import DnsmosConfig, DnsmosScorer


@pytest.fixture(scope="module")
def speech_16k(media_dir):
    import soundfile as sf
    import soxr

    a, sr = sf.read(str(media_dir / "whisper_jfk.flac"), dtype="float32", always_2d=True)
    x = soxr.resample(a.mean(1), sr, 16000)
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


def test_all_windows_equal_the_reference(speech_16k):
    scorer = DnsmosScorer(DnsmosConfig())
    for seg in (speech_16k[: 16000 * 3], speech_16k):
        ours = scorer.score(seg, max_windows=0)
        ref = reference.run(seg, 16000)
        assert ours["ovrl"] == pytest.approx(ref["ovrl_mos"], abs=1e-5)
        assert ours["sig"] == pytest.approx(ref["sig_mos"], abs=1e-5)
        assert ours["bak"] == pytest.approx(ref["bak_mos"], abs=1e-5)
        assert ours["p808"] == pytest.approx(ref["p808_mos"], abs=1e-5)


def test_window_subset_is_close(speech_16k):
    scorer = DnsmosScorer(DnsmosConfig())
    seg = speech_16k[: 16000 * 8]  # doubled to 16 s by the reference: 7 overlapping windows
    full, fast = scorer.score(seg, 0), scorer.score(seg, 3)
    assert abs(full["ovrl"] - fast["ovrl"]) < 0.1


def test_noise_scores_lower_than_speech(speech_16k):
    scorer = DnsmosScorer(DnsmosConfig())
    noise = (np.random.default_rng(0).standard_normal(16000 * 4) * 0.3).clip(-1, 1).astype(np.float32)
    assert scorer.score(noise, 3)["ovrl"] < scorer.score(speech_16k[: 16000 * 4], 3)["ovrl"] - 0.5
