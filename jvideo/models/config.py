"""Config dataclasses shared by the models: read from / written to diffusers' config.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from jvideo.errors import JVideoError


@dataclass
class ModelConfig:
    """Base: field names are diffusers' config keys; unknown keys are ignored on read."""
    CLASS_NAME: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        cfg = cls(**kwargs)
        cfg.validate(d)
        return cfg

    def validate(self, raw: dict[str, Any]) -> None:
        """Raise JVideoError for settings the Jittor port does not implement."""

    def to_dict(self) -> dict[str, Any]:
        d = {"_class_name": self.CLASS_NAME}
        for k, v in asdict(self).items():
            d[k] = list(v) if isinstance(v, tuple) else v
        return d


def require(raw: dict[str, Any], key: str, allowed: tuple, what: str) -> None:
    """Fail with one line when raw[key] is set to something we do not implement."""
    if key in raw and raw[key] not in allowed:
        raise JVideoError(f"{what}: {key}={raw[key]!r} is not supported (supported: {', '.join(map(repr, allowed))})")
