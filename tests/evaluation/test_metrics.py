"""Each metric of the evaluation harness against a known answer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation import frechet, motion
from evaluation.report import clean, render_table
from evaluation.scorers import cosine, error_kind, error_rate
from shards.codes import CODE_DIM, EXPRESSION_NAMES, POSE_SLICE, ROTATION_SLICE
from shards.spec import FRAME_RATE_HZ

# --------------------------------------------------------------------------- Fréchet


def test_frechet_of_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((400, 6))
    assert frechet.frechet_of_sets(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_gaussians_is_analytic():
    # N(mu1, diag(s1^2)) vs N(mu2, diag(s2^2)): |mu1 - mu2|^2 + sum (s1 - s2)^2
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    want = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum())  # 13 + 2 = 15
    assert frechet.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) == pytest.approx(want, rel=1e-9)
    # a shifted copy of one full-covariance Gaussian: only the shift counts
    a = np.array([[2.0, 0.6], [0.6, 1.0]])
    assert frechet.frechet_distance(np.zeros(2), a, np.array([1.0, -2.0]), a) == pytest.approx(5.0, rel=1e-9)
    # from samples: the estimate converges to the analytic value
    rng = np.random.default_rng(1)
    xa = mu1 + s1 * rng.standard_normal((40000, 3))
    xb = mu2 + s2 * rng.standard_normal((40000, 3))
    assert frechet.frechet_of_sets(xa, xb) == pytest.approx(want, rel=0.03)


def test_window_features_see_motion():
    n = 200
    moving = np.zeros((n, CODE_DIM))
    moving[:, POSE_SLICE.start + 1] = np.sin(np.arange(n) / 5.0)  # yaw oscillates
    still = np.zeros((n, CODE_DIM))
    f_moving, f_still = frechet.pose_features(moving), frechet.pose_features(still)
    assert f_moving.shape == ((n - frechet.WINDOW_FRAMES) // frechet.HOP_FRAMES + 1, 12)
    assert f_still[:, 6:].max() == 0.0 and f_moving[:, 7].min() > 0.1  # the std of yaw
    assert frechet.expression_features(moving).shape[1] == 102
    assert frechet.window_features(moving[:10], POSE_SLICE).shape == (1, 12)  # shorter than a window


def test_cross_fold_frechet_ranks_real_above_a_still_face():
    rng = np.random.default_rng(2)
    real = [np.cumsum(rng.normal(0, 0.01, (300, CODE_DIM)), axis=0) for _ in range(6)]
    still = [np.repeat(c[:1], len(c), axis=0) for c in real]
    real_vs_real = frechet.cross_fold_frechet(real, real, [], "pose")
    still_vs_real = frechet.cross_fold_frechet(still, real, [], "pose")
    assert 0.0 < real_vs_real < still_vs_real
    assert math.isnan(frechet.cross_fold_frechet([real[0][:1]], [real[0][:1]], [], "pose"))
    centered = frechet.center_pose(real[0], real[0][:50])
    np.testing.assert_allclose(centered[:50, POSE_SLICE].mean(0), 0.0, atol=1e-12)
    np.testing.assert_array_equal(centered[:, :POSE_SLICE.start], real[0][:, :POSE_SLICE.start])


# --------------------------------------------------------------------------- WER / CER, cosine


def test_error_rates_on_fixed_strings():
    assert error_rate("the cat sat on the mat", "the cat sat on mat", "en") == pytest.approx(1 / 6)
    assert error_rate("The Cat, sat!", "the cat sat", "en") == 0.0  # case and punctuation are normalized
    assert error_rate("a b", "c d e", "en") == pytest.approx(1.5)  # insertions count: WER can exceed 1
    assert error_rate("对，这就是我。", "对这就似我", "zh") == pytest.approx(1 / 5)  # CER for Chinese
    assert error_kind("zh") == "cer" and error_kind("en") == "wer" and error_kind(None) == "wer"


def test_cosine():
    v = np.array([0.3, -1.0, 2.0])
    assert cosine(v, v) == pytest.approx(1.0)
    assert cosine(v, -v) == pytest.approx(-1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    assert math.isnan(cosine(v, np.zeros(3)))


def test_voice_similarity_of_a_voice_with_itself_is_one(media_dir: Path):
    from evaluation.scorers import VoiceScorer
    from inference.generate import load_driving_audio

    voice = VoiceScorer()
    en, _ = load_driving_audio(str(media_dir / "f5tts_basic_ref_en.wav"))
    zh, _ = load_driving_audio(str(media_dir / "f5tts_basic_ref_zh.wav"))
    assert voice.similarity(en, en) == pytest.approx(1.0, abs=1e-5)
    assert voice.similarity(en, zh) < 0.9  # another speaker
    assert voice.model_id.startswith("ge2e")


# --------------------------------------------------------------------------- motion and style


def test_head_motion_blinks_and_range_have_known_values():
    n = 94 * 6  # about 6 s
    codes = np.zeros((n, CODE_DIM))
    codes[:, ROTATION_SLICE.start + 1] = 0.01 * np.arange(n)  # yaw: 0.01 rad per frame
    assert motion.head_motion_dps(codes) == pytest.approx(math.degrees(0.01 * FRAME_RATE_HZ))
    blink = np.zeros(n)
    for start in (50, 200, 400):  # three blinks, each with jitter around the threshold
        blink[start:start + 8] = [0.6, 0.9, 0.45, 0.8, 0.9, 0.6, 0.2, 0.0]
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        codes[:, EXPRESSION_NAMES.index(name)] = blink
    assert motion.count_blinks(blink) == 3
    assert motion.blink_per_min(codes) == pytest.approx(3 / (n / FRAME_RATE_HZ / 60))
    flat = np.zeros((100, CODE_DIM))
    flat[:, :51] = np.linspace(0, 1, 100)[:, None]  # every blendshape sweeps 0..1
    assert motion.expr_range(flat) == pytest.approx(0.9, abs=0.01)


def test_jaw_envelope_correlation_and_pose_diversity():
    rng = np.random.default_rng(3)
    mel = rng.normal(-5, 1, (300, 100)).astype(np.float32)
    env = motion.speech_envelope(mel)
    codes = np.zeros((300, CODE_DIM))
    codes[:, motion.JAW_OPEN] = 0.1 + 0.02 * env
    assert motion.jaw_env_corr(codes, mel) == pytest.approx(1.0)
    codes[:, motion.JAW_OPEN] = rng.random(300)
    assert abs(motion.jaw_env_corr(codes, mel)) < 0.2
    a = np.zeros((50, CODE_DIM))
    b = a.copy()
    b[:, ROTATION_SLICE] = math.radians(2.0)  # 2 degrees apart on every angle: std across the two = 1 degree
    assert motion.pose_diversity_deg([a, a]) == 0.0
    assert motion.pose_diversity_deg([a, b]) == pytest.approx(1.0)
    assert math.isnan(motion.pose_diversity_deg([a]))


def test_style_consistency():
    ref = [{"head_motion_dps": h, "blink_per_min": b, "expr_range": e} for h, b, e in
           ((5.0, 10.0, 0.1), (10.0, 20.0, 0.2), (20.0, 5.0, 0.3), (8.0, 12.0, 0.15))]
    same = motion.style_consistency(ref, ref)
    assert all(same[f"{k}_corr"] == pytest.approx(1.0) for k in motion.STYLE_STATS)
    assert all(same[f"{k}_gap"] == 0.0 for k in motion.STYLE_STATS)
    flat = [{"head_motion_dps": 7.0, "blink_per_min": 11.0, "expr_range": 0.2} for _ in ref]
    const = motion.style_consistency(flat, ref)
    assert math.isnan(const["head_motion_dps_corr"]) and const["head_motion_dps_gap"] == pytest.approx(4.75)


# --------------------------------------------------------------------------- report


def test_table_writes_dashes_for_missing_metrics():
    results = clean({"systems": {"ground_truth": {"wer": 0.1, "sync_conf": float("nan"), "n_clips": 2},
                                 "still_reference": {"wer": None, "sync_conf": 0.01, "n_clips": 2}},
                     "models": {"asr": "whisper-x"}, "split": {"split": "all", "n_test": 2}, "device": "cpu"})
    assert results["systems"]["ground_truth"]["sync_conf"] is None
    table = render_table(results)
    assert "| ground_truth | 0.100 | - | 2 |" in table and "| still_reference | - | 0.010 | 2 |" in table
    assert "asr: whisper-x" in table
