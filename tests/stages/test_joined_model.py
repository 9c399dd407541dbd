"""A model split over several pip packages, joined once into a cache (stages.models.materialize_joined_model).

Most tests build small fake distributions (a ``*.dist-info`` folder on ``sys.path``) so that a part can
be corrupted or missing without touching the shared venv; the real whisper base parts are checked too.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest

from stages import models
from stages.models import (
    JoinedModel,
    ModelNotFound,
    PackagedModel,
    check_joined_folder,
    default_cache_root,
    locate_packaged_model,
    materialize_joined_model,
)
from stages.whisper_backends import BASE_CT2, BASE_NAME, BackendOptions, resolve_ct2_model

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MB, split in two


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def install_fake(site: Path, dist: str, files: dict[str, bytes]) -> None:
    """A minimal installed distribution ``dist`` 1.0 holding ``files`` (paths relative to site-packages)."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)


@pytest.fixture
def fake_model(tmp_path, monkeypatch) -> tuple[JoinedModel, Path]:
    """``(model, site)``: PAYLOAD split over ``omni-fake-part1`` (+ config.json) and ``omni-fake-part2``."""
    site = tmp_path / "site"
    half = len(PAYLOAD) // 2
    one, two, config = PAYLOAD[:half], PAYLOAD[half:], b'{"fake": true}'
    install_fake(site, "omni-fake-part1", {"omni_fake1/model.bin.part1": one, "omni_fake1/config.json": config})
    install_fake(site, "omni-fake-part2", {"omni_fake2/model.bin.part2": two})
    monkeypatch.syspath_prepend(str(site))
    model = JoinedModel(
        name="fake-ct2", filename="model.bin", sha256=sha(PAYLOAD), size=len(PAYLOAD),
        parts=(PackagedModel("omni-fake-part1", "1.0", "omni_fake1/model.bin.part1", sha(one), "x.model_path"),
               PackagedModel("omni-fake-part2", "1.0", "omni_fake2/model.bin.part2", sha(two), "x.model_path")),
        files=(PackagedModel("omni-fake-part1", "1.0", "omni_fake1/config.json", sha(config), "x.model_path"),),
        config_field="x.model_path", cache_field="x.cache_dir")
    return model, site


def test_join_writes_a_verified_folder_once_and_reuses_it(fake_model, tmp_path, monkeypatch):
    model, _ = fake_model
    folder = materialize_joined_model(model, tmp_path / "cache")
    assert folder == tmp_path / "cache" / f"fake-ct2-{model.sha256[:12]}"
    assert (folder / "model.bin").read_bytes() == PAYLOAD
    assert (folder / "config.json").read_bytes() == b'{"fake": true}'
    assert check_joined_folder(model, folder) is None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [folder.name]  # no temporary left
    before = (folder / "model.bin").stat()

    def no_packages(*_args, **_kwargs):
        raise AssertionError("the packages were read again")

    monkeypatch.setattr(models, "locate_packaged_model", no_packages)
    assert materialize_joined_model(model, tmp_path / "cache") == folder
    after = (folder / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten


def test_corrupt_part_names_the_package_to_reinstall(fake_model, tmp_path):
    model, site = fake_model
    part = site / "omni_fake2/model.bin.part2"
    part.write_bytes(part.read_bytes()[:-1] + b"X")
    with pytest.raises(ModelNotFound, match=r"pip install --force-reinstall omni-fake-part2==1\.0.*x\.model_path"):
        materialize_joined_model(model, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written is left behind


def test_missing_part_names_the_package_to_install(fake_model, tmp_path):
    model, site = fake_model
    for p in site.glob("omni_fake_part2-*.dist-info/*"):
        p.unlink()
    (next(site.glob("omni_fake_part2-*.dist-info"))).rmdir()
    with pytest.raises(ModelNotFound, match=r"pip install omni-fake-part2==1\.0, or set x\.model_path"):
        materialize_joined_model(model, tmp_path / "cache")


def test_joined_checksum_is_verified(fake_model, tmp_path):
    model, _ = fake_model
    swapped = JoinedModel(**{**model.__dict__, "parts": model.parts[::-1]})  # each part fine, the join is not
    with pytest.raises(ModelNotFound, match=r"joined from omni-fake-part2==1\.0, omni-fake-part1==1\.0 has sha256"):
        materialize_joined_model(swapped, tmp_path / "cache")


def test_broken_cache_is_rebuilt(fake_model, tmp_path):
    model, _ = fake_model
    folder = materialize_joined_model(model, tmp_path / "cache")
    (folder / "model.bin").write_bytes(PAYLOAD[:-10])
    assert "bytes" in check_joined_folder(model, folder)
    assert materialize_joined_model(model, tmp_path / "cache") == folder
    assert check_joined_folder(model, folder) is None
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]


def test_unwritable_cache_names_the_setting(fake_model, tmp_path):
    model, _ = fake_model
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelNotFound, match=r"set x\.cache_dir or \$OMNITALKER_CACHE_DIR"):
        materialize_joined_model(model, blocker / "cache")


def _join(args: tuple[JoinedModel, str]) -> str:
    return str(materialize_joined_model(*args))


def test_processes_racing_to_join_all_get_one_complete_folder(fake_model, tmp_path):
    model, _ = fake_model
    root = tmp_path / "cache"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        folders = pool.map(_join, [(model, str(root))] * 8)
    assert len(set(folders)) == 1
    assert check_joined_folder(model, Path(folders[0])) is None
    assert [p.name for p in root.iterdir()] == [Path(folders[0]).name]


def test_losing_the_race_uses_the_winners_folder(fake_model, tmp_path, monkeypatch):
    """Deterministic version of the race: a rival publishes while this call is still writing its copy."""
    model, _ = fake_model
    real = models.write_joined_folder
    rivals: list[Path] = []
    racing = [True]

    def write_then_lose(m: JoinedModel, tmp: Path) -> None:
        real(m, tmp)
        if racing.pop() if racing else False:
            rivals.append(materialize_joined_model(m, tmp_path / "cache"))  # the rival renames first

    monkeypatch.setattr(models, "write_joined_folder", write_then_lose)
    folder = materialize_joined_model(model, tmp_path / "cache")
    assert rivals == [folder] and check_joined_folder(model, folder) is None
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # the loser's copy is gone


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNITALKER_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_root() == tmp_path / "mine"
    monkeypatch.delenv("OMNITALKER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "omnitalker"


# --------------------------------------------------------------------------- the real whisper base


def test_base_parts_and_files_are_pinned_and_verify():
    for packaged in BASE_CT2.parts + BASE_CT2.files:
        assert locate_packaged_model(packaged).is_file()  # sha256 checked against the pin
    assert sum(locate_packaged_model(p).stat().st_size for p in BASE_CT2.parts) == BASE_CT2.size == 145_217_532


def test_base_resolves_to_the_cached_folder(asr_stage):
    folder = BASE_CT2.folder()  # the session's default stage joined it there
    assert check_joined_folder(BASE_CT2, folder) is None
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json",
                                                        "vocabulary.txt"]
    assert resolve_ct2_model(BackendOptions()) == (str(folder), BASE_NAME, BASE_CT2.sha256)
