"""Text about a video from files beside it, used to retrieve its shots.

Caption, first found wins: `NAME.json` {"caption", "tags"}, `NAME.txt`, a row of a
`library.csv` manifest (path,caption,tags) in the video's folder or any folder above it up to
the indexed root, else the words of the file name. Tags: the JSON's, then the manifest's.
Transcript: the cues of `NAME.srt`; each shot gets the cues that overlap it.
(NAME is the file name without its extension; `clip.mp4.json` style names work too.)
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "library.csv"
# Camera file-name prefixes that say nothing about the content.
_CAMERA_WORDS = frozenset({"img", "dsc", "dscn", "dscf", "mvi", "gopr", "gp", "vid", "mov", "clip",
                           "pxl", "mah", "dji", "final", "edit", "copy", "mp4", "hd", "4k", "1080p", "720p"})
_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?")


@dataclass
class Cue:
    start: float
    end: float
    text: str


@dataclass
class ClipText:
    """What the sidecars say about one video."""
    caption: str = ""
    tags: list[str] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    caption_from: str = "filename"    # "json" | "txt" | "csv" | "filename"
    warnings: list[str] = field(default_factory=list)

    def transcript(self, start: float, end: float) -> str:
        """Transcript lines overlapping [start, end) seconds."""
        return " ".join(c.text for c in self.cues if c.end > start and c.start < end)

    def text_for(self, start: float, end: float) -> str:
        """Retrieval text of one shot: caption, tags, overlapping transcript."""
        parts = [self.caption.strip()]
        if self.tags:
            parts.append(", ".join(self.tags))
        parts.append(self.transcript(start, end))
        return ". ".join(p for p in parts if p)


def filename_words(path: str | Path) -> str:
    """'beach_sunset-02.mp4' -> 'beach sunset'; 'CityTraffic.mov' -> 'city traffic'."""
    stem = Path(path).stem
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", stem)]
    return " ".join(w for w in words if len(w) > 1 and w not in _CAMERA_WORDS)


def split_tags(value) -> list[str]:
    """A list, or one string separated by ; | or , -> clean tag list (order kept, no repeats)."""
    items = value if isinstance(value, (list, tuple)) else re.split(r"[;|,]", str(value or ""))
    out: list[str] = []
    for t in items:
        t = str(t).strip()
        if t and t not in out:
            out.append(t)
    return out


def _seconds(text: str) -> float:
    m = _TIME.search(text)
    if not m:
        raise ValueError(text)
    h, mi, s, ms = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + (int((ms or "0").ljust(3, "0")) / 1000.0)


def parse_srt(text: str) -> list[Cue]:
    """SubRip text -> cues (bad blocks are skipped; markup like <i> removed)."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        for k, line in enumerate(lines):
            if "-->" in line:
                a, b = line.split("-->", 1)
                try:
                    start, end = _seconds(a), _seconds(b)
                except ValueError:
                    break
                words = " ".join(re.sub(r"<[^>]*>|\{[^}]*\}", "", ln).strip() for ln in lines[k + 1:])
                if words.strip() and end > start:
                    cues.append(Cue(start, end, words.strip()))
                break
    return cues


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig", errors="replace")


class SidecarReader:
    """Reads sidecars for videos under `root`, parsing each manifest once."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._manifests: dict[Path, dict[str, tuple[str, list[str]]] | None] = {}
        self.warnings: list[str] = []

    def _manifest(self, folder: Path) -> dict[str, tuple[str, list[str]]] | None:
        if folder not in self._manifests:
            path = folder / MANIFEST
            table = None
            if path.is_file():
                table = {}
                try:
                    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
                        for row in csv.DictReader(f):
                            row = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
                            if not row.get("path"):
                                continue
                            target = Path(row["path"].strip())
                            target = target if target.is_absolute() else folder / target
                            table[str(target.resolve())] = (row.get("caption", "").strip(),
                                                            split_tags(row.get("tags", "")))
                except (OSError, csv.Error, ValueError, RuntimeError) as err:
                    # ValueError: a NUL byte in a path cell; RuntimeError: a symlink loop
                    self.warnings.append(f"cannot read {path}: {err}")
            self._manifests[folder] = table
        return self._manifests[folder]

    def _manifest_entry(self, video: Path) -> tuple[str, list[str]] | None:
        folder = video.parent
        while True:
            table = self._manifest(folder)
            if table and str(video) in table:
                return table[str(video)]
            if folder == self.root or folder.parent == folder or self.root not in folder.parents:
                return None
            folder = folder.parent

    @staticmethod
    def _sidecar(video: Path, ext: str) -> Path | None:
        for cand in (video.with_suffix(ext), video.with_name(video.name + ext)):
            if cand.is_file():
                return cand
        return None

    def read(self, video: str | Path) -> ClipText:
        """Everything the sidecars say about `video` (an absolute path)."""
        video = Path(video).resolve()
        out = ClipText()
        js = self._sidecar(video, ".json")
        if js is not None:
            try:
                data = json.loads(_read_text(js))
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                if str(data.get("caption") or "").strip():
                    out.caption, out.caption_from = str(data["caption"]).strip(), "json"
                out.tags = split_tags(data.get("tags", []))
            except (OSError, ValueError, RecursionError) as err:   # RecursionError: '[[[[...'
                out.warnings.append(f"ignoring {js.name}: {type(err).__name__ if isinstance(err, RecursionError) else err}")
        txt = self._sidecar(video, ".txt")
        if not out.caption and txt is not None:
            try:
                caption = " ".join(_read_text(txt).split())
                if caption:
                    out.caption, out.caption_from = caption, "txt"
            except OSError as err:
                out.warnings.append(f"ignoring {txt.name}: {err.strerror}")
        entry = self._manifest_entry(video)
        if entry is not None:
            caption, tags = entry
            if not out.caption and caption:
                out.caption, out.caption_from = caption, "csv"
            out.tags += [t for t in tags if t not in out.tags]
        srt = self._sidecar(video, ".srt")
        if srt is not None:
            try:
                out.cues = parse_srt(_read_text(srt))
            except OSError as err:
                out.warnings.append(f"ignoring {srt.name}: {err.strerror}")
        if not out.caption:
            out.caption = filename_words(video)
        return out

    def sidecar_paths(self, video: str | Path) -> list[Path]:
        """The sidecar files that exist for `video` (their changes trigger a re-index)."""
        video = Path(video).resolve()
        found = [p for ext in (".json", ".txt", ".srt") if (p := self._sidecar(video, ext))]
        folder = video.parent
        while True:
            if (folder / MANIFEST).is_file():
                found.append(folder / MANIFEST)
            if folder == self.root or folder.parent == folder or self.root not in folder.parents:
                break
            folder = folder.parent
        return found
