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


@pytest.mark.parametrize("bad,message", [
    ("faces.sample_fps=abc", "'faces.sample_fps': expected float, got 'abc'"),
    ("faces.sample_fps=0", "'faces.sample_fps': expected a value > 0"),
    ("segment.min_language_prob=1.5", "'segment.min_language_prob': expected a value >= 0 and <= 1"),
    ("vad.min_segment_s=-1", "'vad.min_segment_s': expected a value >= 0"),
    ("voiceover.min_track_voice_cos=2", "'voiceover.min_track_voice_cos': expected a value >= -1 and <= 1"),
    ("faces.max_faces=2.5", "'faces.max_faces': expected int, got 2.5"),
    ("sync.enabled=maybe", "'sync.enabled': expected bool (true or false), got 'maybe'"),
    ("segment.allowed_languages=en", "'segment.allowed_languages': expected list[str] (a list), got 'en'"),
    ("diarize.model_path=3", "'diarize.model_path': expected str | None, got 3"),
])
def test_wrong_values_are_errors_naming_key_type_and_value(bad, message):
    with pytest.raises(ValueError) as info:
        load_config(None, [bad])
    assert message in str(info.value)


def test_ints_are_accepted_for_floats_and_stay_comparable():
    cfg = load_config(None, ["dnsmos.min_dnsmos_ovrl=3", "diarize.model_path=null"])
    assert cfg.dnsmos.min_dnsmos_ovrl == 3.0 and isinstance(cfg.dnsmos.min_dnsmos_ovrl, float)
    assert cfg.hash() == load_config(None, ["dnsmos.min_dnsmos_ovrl=3.0"]).hash()


def test_curate_exits_2_before_any_work_on_a_bad_value(tmp_path, capsys):
    """The typo is caught at load: no Ray, no output folder, status 2, a message naming the key."""
    from pipeline.run import main

    out = tmp_path / "out"
    assert main(["--input", str(tmp_path), "--output", str(out), "--set", "faces.sample_fps=abc"]) == 2
    assert "faces.sample_fps" in capsys.readouterr().err and not out.exists()


def test_the_gpu_preset_extends_the_default_and_gives_whisper_its_own_gpu_pool():
    from pipeline.executors import build_stages, plan_operators

    gpu = load_config(REPO / "configs" / "curate_gpu.yaml")
    base = load_config(REPO / "configs" / "curate.yaml")
    assert (gpu.asr.device, gpu.asr.compute_type) == ("cuda", "float16")
    assert gpu.vad == base.vad and gpu.sync == base.sync  # everything else is curate.yaml's
    plans = plan_operators(build_stages(gpu), fuse=True)
    (asr_plan,) = [p for p in plans if any(s.name == "asr" for s in p.stages)]
    assert [s.name for s in asr_plan.stages] == ["asr"] and asr_plan.resources.num_gpus == 0.5
    assert len(plans) == 3  # CPU stages before and after whisper stay fused


def test_one_machine_starts_its_one_cpu_pool_with_an_actor_per_core():
    """Ray Data would start the fused pool with one actor and add the next only once the first is busy
    (a core idle while it loads its models); on one machine every core gets its actor at once."""
    from pipeline.executors import build_stages, plan_operators, required_local_cpus, start_pool_per_core

    cfg = load_config(REPO / "configs" / "curate.yaml")
    plans = plan_operators(build_stages(cfg), fuse=True)
    assert [p.resources.min_actors for p in plans if p.uses_actor] == [1]
    start_pool_per_core(plans, cores=4, n_files=45)
    assert [p.resources.min_actors for p in plans if p.uses_actor] == [4] and required_local_cpus(plans) == 4
    plans = plan_operators(build_stages(cfg), fuse=True)
    start_pool_per_core(plans, cores=4, n_files=2)  # no actor loads its models for nothing
    assert [p.resources.min_actors for p in plans if p.uses_actor] == [2]
    gpu = plan_operators(build_stages(load_config(REPO / "configs" / "curate_gpu.yaml")), fuse=True)
    start_pool_per_core(gpu, cores=4, n_files=45)  # two CPU pools: 4 each would ask for 8 actors on 4 cores
    assert [p.resources.min_actors for p in gpu if p.uses_actor and p.resources.num_gpus == 0] == [1, 1]


def test_extends_loops_and_bad_layers_are_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text(f"extends: {REPO / 'configs' / 'curate.yaml'}\nvad:\n  threshold: seven\n")
    with pytest.raises(ValueError, match="'vad.threshold'"):
        load_config(tmp_path / "c.yaml")
