"""Config: the commented YAML equals the dataclass defaults; typos fail loudly."""

from __future__ import annotations

import pytest

from core.overlay import parse_override
from pipeline.config import CurateConfig, load_config, stage_sections
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


def test_stage_names_are_their_config_sections():
    """A stage's name, its config section and its resources: key are one word (docs/architecture.md)."""
    from pipeline.executors import build_probe_stage, build_stages

    cfg = CurateConfig()
    names = [build_probe_stage(cfg).name] + [s.name for s in build_stages(cfg)]
    assert names == stage_sections()
    assert all(name.isidentifier() and "_" not in name for name in names)


@pytest.mark.parametrize("key", ["standardize_audio", "scene_cut", "face_filter", "nosuch"])
def test_resources_must_name_a_stage(key):
    with pytest.raises(ValueError, match=f"unknown stage name\\(s\\) under resources: {key}"):
        load_config(None, [f"resources.{key}.num_cpus=2"])
