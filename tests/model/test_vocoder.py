"""Vocoders: Griffin-Lim fallback on real speech (mel -> audio -> mel), Vocos loading errors."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from model.vocoder import (
    GriffinLimVocoder,
    VocoderConfig,
    VocoderUnavailable,
    check_vocos_dir,
    load_vocoder,
    num_output_samples,
)
from stages.mel import LogMel

# Measured on f5tts_basic_ref_en.wav (500 frames) with the defaults (48 iterations, momentum 0.99):
# mel L1 0.086 (natural-log units), spectral convergence 0.054. 16 iterations: 0.106 / 0.094.
MAX_MEL_L1 = 0.12  # mean |log-mel(resynthesis) - log-mel(original)|
MAX_SPECTRAL_CONVERGENCE = 0.09  # ||M' - M||_F / ||M||_F on the linear mel magnitudes


@pytest.fixture(scope="module")
def speech_mel(media_dir) -> np.ndarray:
    from stages.audio import AudioConfig, decode_mono, standardize

    samples, rate, _ = decode_mono(str(media_dir / "f5tts_basic_ref_en.wav"))
    return LogMel()(standardize(samples, rate, AudioConfig())[0])


def test_griffin_lim_resynthesis_of_real_speech(speech_mel, caplog):
    with caplog.at_level(logging.WARNING, logger="model.vocoder"):
        voc = load_vocoder(VocoderConfig())  # auto without a Vocos path
    assert isinstance(voc, GriffinLimVocoder)
    assert "Griffin-Lim fallback" in caplog.text
    audio = voc.decode(speech_mel)
    n = speech_mel.shape[0]
    assert audio.dtype == np.float32 and audio.shape == (num_output_samples(n),) == ((n - 1) * 256,)
    assert np.isfinite(audio).all() and 0.01 < np.abs(audio).max() < 1.5
    again = LogMel()(audio)
    assert again.shape == speech_mel.shape  # 1 + ((N - 1) * 256) // 256 frames
    mel_l1 = float(np.abs(again - speech_mel).mean())
    sc = float(np.linalg.norm(np.exp(again) - np.exp(speech_mel)) / np.linalg.norm(np.exp(speech_mel)))
    assert mel_l1 < MAX_MEL_L1, mel_l1
    assert sc < MAX_SPECTRAL_CONVERGENCE, sc


def test_random_phase_alone_is_far_worse(speech_mel):
    """Guards the test above: without phase iterations the same check fails."""
    voc = GriffinLimVocoder(VocoderConfig(kind="griffin_lim", griffin_lim_iters=0))
    mel_l1 = float(np.abs(LogMel()(voc.decode(speech_mel)) - speech_mel).mean())
    assert mel_l1 > 3 * MAX_MEL_L1


def test_mel_to_linear_inverts_the_filterbank(speech_mel):
    voc = GriffinLimVocoder(VocoderConfig(kind="griffin_lim"))
    lin = voc.mel_to_linear(speech_mel)
    assert lin.shape == (513, speech_mel.shape[0]) and bool((lin >= 0).all())
    remel = np.log(np.maximum((voc.fb.T.float() @ lin).numpy().T, 1e-7))
    assert float(np.abs(remel - speech_mel).mean()) < 1e-2


def test_short_inputs():
    voc = GriffinLimVocoder(VocoderConfig(kind="griffin_lim", griffin_lim_iters=2))
    assert voc.decode(np.zeros((1, 100), np.float32)).shape == (0,)
    assert voc.decode(np.full((3, 100), -5.0, np.float32)).shape == (512,)
    with pytest.raises(ValueError, match="shape"):
        voc.decode(np.zeros((4, 80), np.float32))


def test_vocos_requested_without_weights_fails_clearly(tmp_path):
    with pytest.raises(VocoderUnavailable, match="vocos_path"):
        load_vocoder(VocoderConfig(kind="vocos"))
    # A path given (kind auto) counts as asking for Vocos: no silent fallback.
    for cfg in (VocoderConfig(kind="vocos", vocos_path=str(tmp_path)), VocoderConfig(vocos_path=str(tmp_path))):
        with pytest.raises(VocoderUnavailable) as err:
            load_vocoder(cfg)
        if importlib.util.find_spec("vocos") is None:  # the state of this environment
            assert "pip install vocos" in str(err.value)
        else:
            assert "config.yaml" in str(err.value)


def test_vocos_dir_check_names_missing_files(tmp_path):
    (tmp_path / "config.yaml").write_text("x")
    with pytest.raises(VocoderUnavailable, match="lacks pytorch_model.bin"):
        check_vocos_dir(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    assert check_vocos_dir(tmp_path) == tmp_path


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="vocoder kind"):
        VocoderConfig(kind="hifigan")
