"""Per-dimension feature normalization of mel and codes, as training applied it and generation inverts it.

Shapes: ``mel (..., 100)``, ``codes (..., 61)``; ``mean``/``std`` are ``(100,)`` / ``(61,)`` vectors
from the stats dict a checkpoint stores (``state.json`` ``stats``, see ``model/checkpoint.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class FeatureNormalizer:
    """``(x - mean) / std`` per dimension for codes (and mel when enabled); the inverse for generation.

    Built from the stats dict the trainer saves (``compute_feature_stats`` output plus a
    ``normalize`` entry recording what was normalized and the std floor).
    """

    def __init__(self, stats: dict[str, Any]) -> None:
        flags = stats.get("normalize", {})
        floor = float(flags.get("min_std", 1e-3))
        self.parts: dict[str, tuple[Tensor, Tensor]] = {}
        for name in ("mel", "codes"):
            if flags.get(name, False):
                mean = torch.as_tensor(stats[f"{name}_mean"], dtype=torch.float32)
                std = torch.as_tensor(stats[f"{name}_std"], dtype=torch.float32).clamp(min=floor)
                self.parts[name] = (mean, std)

    def to(self, device: torch.device) -> FeatureNormalizer:
        self.parts = {k: (m.to(device), s.to(device)) for k, (m, s) in self.parts.items()}
        return self

    def normalize(self, mel: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        if "mel" in self.parts:
            mel = (mel - self.parts["mel"][0]) / self.parts["mel"][1]
        if "codes" in self.parts:
            codes = (codes - self.parts["codes"][0]) / self.parts["codes"][1]
        return mel, codes

    def denormalize(self, mel: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        if "mel" in self.parts:
            mel = mel * self.parts["mel"][1].to(mel.device) + self.parts["mel"][0].to(mel.device)
        if "codes" in self.parts:
            codes = codes * self.parts["codes"][1].to(codes.device) + self.parts["codes"][0].to(codes.device)
        return mel, codes
