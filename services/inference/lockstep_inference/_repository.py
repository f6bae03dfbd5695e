"""The model repository: one directory per model.

<root>/<name>/model.onnx      the model (its SHA-256 is the version)
<root>/<name>/lockstep.json   optional adapter settings (kind, tokenizer, vocabulary)
<root>/<name>/...             files lockstep.json names (tokenizer.json)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep_inference._errors import InvalidInputError, ModelLoadError, ModelNotFoundError

__all__ = ["KINDS", "ModelFiles", "ModelRepository", "check_name", "version_of"]

KINDS = ("tensor", "embedding", "char_lm", "llm")
MODEL_FILE = "model.onnx"
SPEC_FILE = "lockstep.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> str:
    """A model name is a plain directory name; anything else (paths, '..') is refused."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidInputError(
            f"bad model name {name[:80]!r}: use 1-128 of [A-Za-z0-9_.-], starting with a "
            "letter or digit"
        )
    return name


def version_of(model_bytes: bytes) -> str:
    """The version string of a model: "sha256:<hex>" of its bytes."""
    return "sha256:" + hashlib.sha256(model_bytes).hexdigest()


@dataclass(frozen=True)
class ModelFiles:
    """A model read from the repository."""

    name: str
    directory: Path
    model_bytes: bytes
    version: str
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)


class ModelRepository:
    """Reads models from a directory; never writes to it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        """Models present (directories holding model.onnx), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if _NAME.match(p.name) and (p / MODEL_FILE).is_file()
        )

    def directory(self, name: str) -> Path:
        """The directory of model `name`; NOT_FOUND when absent."""
        check_name(name)
        path = self.root / name
        if not (path / MODEL_FILE).is_file():
            raise ModelNotFoundError(
                f"unknown model {name!r}: no {name}/{MODEL_FILE} in the "
                f"model repository {self.root}"
            )
        return path

    def file_size(self, name: str) -> int:
        """Size of the model file in bytes."""
        return (self.directory(name) / MODEL_FILE).stat().st_size

    def read_spec_kind(self, name: str) -> str:
        """The kind a model's lockstep.json declares, without reading the model file."""
        spec_path = self.directory(name) / SPEC_FILE
        if not spec_path.is_file():
            return "tensor"
        try:
            raw = json.loads(spec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model {name!r}: bad {SPEC_FILE}: {exc}") from None
        return str(raw.get("kind", "tensor")) if isinstance(raw, dict) else "tensor"

    def read(self, name: str) -> ModelFiles:
        """Read the model bytes and its adapter settings."""
        directory = self.directory(name)
        try:
            data = (directory / MODEL_FILE).read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"model {name!r}: cannot read {MODEL_FILE}: {exc}") from None
        spec: dict[str, Any] = {}
        spec_path = directory / SPEC_FILE
        if spec_path.is_file():
            try:
                raw = json.loads(spec_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"model {name!r}: bad {SPEC_FILE}: {exc}") from None
            if not isinstance(raw, dict):
                raise ModelLoadError(f"model {name!r}: {SPEC_FILE} must hold a JSON object")
            spec = raw
        kind = spec.get("kind", "tensor")
        if kind not in KINDS:
            raise ModelLoadError(
                f"model {name!r}: unknown kind {kind!r} in {SPEC_FILE} (known: {', '.join(KINDS)})"
            )
        return ModelFiles(
            name=name,
            directory=directory,
            model_bytes=data,
            version=version_of(data),
            kind=str(kind),
            spec=spec,
        )
