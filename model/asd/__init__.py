"""Active-speaker detection models (Light-ASD architecture)."""

from model.asd.light_asd import LightAsd, LightAsdConfig, infer_config, remap_state_dict

__all__ = ["LightAsd", "LightAsdConfig", "infer_config", "remap_state_dict"]
