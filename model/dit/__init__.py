"""OmniTalker dual-branch DiT (audio + visual streams) with conditional flow matching.

Shapes: B batch, N frames at 93.75 Hz, T text tokens, D model dim, H heads; mel (B, N, 100),
visual codes (B, N, 61). See ``config.py`` for the legend and ``backbone.py`` for the layout.
"""

from model.dit.backbone import OmniTalkerDiT, build_on_meta, count_parameters
from model.dit.config import (
    DiTConfig,
    FlowMatchingConfig,
    LossWeights,
    ModelConfig,
    SamplerConfig,
    load_model_config,
    paper_config,
    tiny_config,
)
from model.dit.flow_matching import FlowMatching
from model.dit.sampler import SampleResult, sample

__all__ = [
    "DiTConfig",
    "FlowMatching",
    "FlowMatchingConfig",
    "LossWeights",
    "ModelConfig",
    "OmniTalkerDiT",
    "SampleResult",
    "SamplerConfig",
    "build_on_meta",
    "count_parameters",
    "load_model_config",
    "paper_config",
    "sample",
    "tiny_config",
]
