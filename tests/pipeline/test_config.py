"""Config: the commented YAML equals the dataclass defaults; typos fail loudly."""

from __future__ import annotations

import pytest

from pipeline.config import CurateConfig, load_config, parse_override
from tests.conftest import REPO


def test_yaml_is_true_to_the_code():
    assert load_config(REPO / "configs" / "curate.yaml") == CurateConfig()


def test_overrides_apply_and_change_the_hash():
    cfg = load_config(None, ["vad.threshold=0.6", "dnsmos.min_dnsmos_ovrl=3.2"])
    assert cfg.vad.threshold == 0.6 and cfg.dnsmos.min_dnsmos_ovrl == 3.2
    assert cfg.hash() != CurateConfig().hash()


def test_scheduling_does_not_change_the_hash():
    cfg = load_config(None, ["run.files_per_shard=2", "resources.vad.max_actors=8"])
    assert cfg.resources["vad"].max_actors == 8
    assert cfg.hash() == CurateConfig().hash()


@pytest.mark.parametrize("bad", ["vad.thresold=0.6", "nosuch.x=1"])
def test_unknown_keys_are_errors(bad):
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(None, [bad])


def test_parse_override():
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}
    with pytest.raises(ValueError):
        parse_override("novalue")
