"""The studio's project file: script, pins, never-use shots, generate requests and settings.

Saved as JSON through a temp file and a rename (never half-written) and reopened by
`jvideo studio --project FILE`. Pins and generate requests are keyed by the unit's text, so
they follow a sentence that moves and survive re-plans; rewording a sentence drops its pin.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from montage.errors import MontageError
from montage.plan import write_text_atomic

PROJECT_VERSION = 1
MAX_SCRIPT_CHARS = 100_000        # about 40 pages: far more than a short film needs

PACES = ("slow", "normal", "fast")
MOVEMENTS = ("any", "less", "more")
TRANSITIONS = ("cut", "crossfade")
ASPECTS = ("16:9", "9:16", "1:1")


@dataclass
class Settings:
    """Idiom controls of the cut (the `jvideo montage` options the studio exposes)."""
    pace: str = "normal"
    movement: str = "any"          # "any" = no preference (montage's None)
    transition: str = "cut"
    aspect: str = "16:9"
    subtitles: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("pace", PACES), ("movement", MOVEMENTS),
                              ("transition", TRANSITIONS), ("aspect", ASPECTS)):
            if getattr(self, name) not in allowed:
                raise MontageError(f"unknown {name} {getattr(self, name)!r} (use {', '.join(allowed)})")
        if not isinstance(self.subtitles, bool):
            raise MontageError("subtitles must be true or false")

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        if not isinstance(d, dict):
            raise MontageError("settings must be a JSON object")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise MontageError(f"unknown setting {sorted(unknown)[0]!r}")
        return cls(**{**asdict(cls()), **d})


@dataclass
class Session:
    """Everything the user decided; the plan itself is derived and not saved here."""
    script: str = ""
    pins: dict[str, int] = field(default_factory=dict)        # unit text -> shot id
    never_use: list[int] = field(default_factory=list)        # shot ids, sorted
    generate: list[str] = field(default_factory=list)         # unit texts to generate instead
    generated: dict[str, dict] = field(default_factory=dict)  # unit text -> its generated shot
    settings: Settings = field(default_factory=Settings)
    library: str | None = None                                # library folder (absolute)

    def to_dict(self) -> dict:
        return {"version": PROJECT_VERSION, "script": self.script, "pins": dict(self.pins),
                "never_use": sorted(set(self.never_use)), "generate": list(self.generate),
                "generated": dict(self.generated),
                "settings": asdict(self.settings), "library": self.library}

    @classmethod
    def from_dict(cls, d: dict) -> "Session":
        if not isinstance(d, dict) or d.get("version") != PROJECT_VERSION:
            raise MontageError(f"not a studio project (version {d.get('version') if isinstance(d, dict) else None}"
                               f", expected {PROJECT_VERSION})")
        script = d.get("script", "")
        if not isinstance(script, str):
            raise MontageError("the project's script is not text")
        check_script(script)
        try:
            pins = {str(k): int(v) for k, v in dict(d.get("pins", {})).items()}
            never = sorted({int(i) for i in d.get("never_use", [])})
            generate = [str(t) for t in d.get("generate", [])]
            generated = {str(k): dict(v) for k, v in dict(d.get("generated", {})).items()}
        except (TypeError, ValueError) as err:
            raise MontageError(f"the project's pins or shot lists are malformed ({err})") from None
        lib = d.get("library")
        return cls(script=script, pins=pins, never_use=never, generate=generate, generated=generated,
                   settings=Settings.from_dict(d.get("settings", {})),
                   library=str(lib) if lib else None)

    def save(self, path: Path) -> None:
        """Write the project atomically (temp file in the same folder, then rename)."""
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Session":
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise MontageError(f"project {path} is not UTF-8 text") from None
        except OSError as err:
            raise MontageError(f"cannot read project {path}: {err.strerror}") from None
        try:
            return cls.from_dict(json.loads(raw))
        except json.JSONDecodeError as err:
            raise MontageError(f"project {path} is not valid JSON ({err.msg}, line {err.lineno})") from None

    @classmethod
    def open_or_new(cls, path: Path) -> "Session":
        """The saved project, or a new one when the file does not exist yet."""
        return cls.load(path) if Path(path).exists() else cls()


def check_script(text: str) -> None:
    """Refuse scripts too long to edit interactively (one line, for a 413 or the CLI)."""
    if len(text) > MAX_SCRIPT_CHARS:
        raise ScriptTooLong(f"the script has {len(text):,} characters; the studio takes at most "
                            f"{MAX_SCRIPT_CHARS:,}")


class ScriptTooLong(MontageError):
    """Text over MAX_SCRIPT_CHARS (the API answers 413)."""


def project_workdir(project: Path) -> Path:
    """Folder beside the project file for renders, caches and exports: story.json -> story.studio/."""
    project = Path(project)
    return project.with_name(project.stem + ".studio")


def default_project() -> Path:
    return Path(os.getcwd()) / "studio-project.json"
