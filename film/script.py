"""Scripts -> scenes, cast and shot units.

Two formats:
- Fountain screenplays (https://fountain.io syntax): title page, scene headings, action,
  character cues with dialogue and parentheticals, transitions, centred text, notes, boneyard,
  sections and synopses. Scene headings become title cards, action becomes picture, dialogue
  becomes subtitles over a shot of the speaker.
- Plain text or Markdown: headings start scenes (title cards), every sentence is action.

The cast is declared in the script itself with Fountain notes, which other Fountain tools
ignore, so a script stays a valid screenplay:

    [[cast Mira: refs/mira.png]]                      a reference image (relative to the script)
    [[cast Tomo: a blue square with yellow dots]]     a description: generated once, then reused

Everything here is pure Python: parsing needs neither Jittor nor the montage's models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from montage.text import MAX_UNIT_WORDS, clauses, keywords, paragraphs, sentences

from .errors import FilmError

MAX_SCRIPT_BYTES = 2_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TITLE_PAGE_KEYS = ("title", "credit", "author", "authors", "source", "draft date", "date",
                   "contact", "copyright", "notes", "revision")


@dataclass
class CastMember:
    """A character whose look must stay the same in every shot."""
    name: str
    reference: Path | None = None     # image file; None when only described
    description: str | None = None    # generated once into a reference when there is no image
    line: int = 0                      # where it was declared (0: not declared, only seen)

    @property
    def declared(self) -> bool:
        return self.reference is not None or self.description is not None


@dataclass
class Scene:
    heading: str         # as written ("EXT. BEACH - DAY"), or a Markdown heading
    place: str = ""      # "beach"
    time: str = ""       # "by day" / "at night" / "at sunset" / ""
    line: int = 0

    def context(self) -> str:
        """Where and when, in the script's own words: 'sandy beach, by day'."""
        return ", ".join(p for p in (self.place, self.time) if p)


@dataclass
class ScriptUnit:
    """One unit of the film.

    kind: "title" (scene heading / centred text: a title card), "action" (picture) or
    "dialogue" (a line spoken by `speaker`, shown as subtitles over a shot of the speaker).
    visual: what the picture should show: the retrieval query and the generation prompt.
    """
    kind: str
    text: str
    scene: int
    line: int
    visual: str = ""
    speaker: str | None = None
    characters: list[str] = field(default_factory=list)
    transition: str = "cut"     # into this unit: "cut" or "dissolve"


@dataclass
class Script:
    format: str                 # "fountain" | "text"
    title: str | None
    scenes: list[Scene]
    units: list[ScriptUnit]
    cast: dict[str, CastMember]  # key: name lower-cased
    warnings: list[str] = field(default_factory=list)

    def member(self, name: str) -> CastMember | None:
        return self.cast.get(name.lower())


# -- reading -----------------------------------------------------------------------------------
def read_script(path: str | Path) -> Script:
    """Read and parse a script file; one-line FilmError on anything unreadable or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FilmError(f"script {path} does not exist")
    size = path.stat().st_size
    if size > MAX_SCRIPT_BYTES:
        raise FilmError(f"script {path} is {size} bytes; at most {MAX_SCRIPT_BYTES} (split it into parts)")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise FilmError(f"script {path} is a binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FilmError(f"script {path} is not UTF-8 text") from None
    fountain = path.suffix.lower() in (".fountain", ".spmd") or looks_like_fountain(text)
    return parse_script(text, base=path.parent, fountain=fountain)


_SCENE = re.compile(r"^(?:\.(?!\.)(?P<forced>\S.*)|(?P<std>(?:INT\.?/EXT|INT/EXT|I/E|INT|EXT|EST)[.\s].*))$",
                    re.IGNORECASE)
_TRANSITION = re.compile(r"^(?:>\s*(?P<forced>[^<]*?)\s*|(?P<std>[A-Z0-9 .'-]+ TO:))$")
_CENTRED = re.compile(r"^>\s*(?P<text>.*?)\s*<$")
_CHARACTER = re.compile(r"^(?:@(?P<forced>\S.*?)|(?P<std>(?=[^a-z]*[A-Z])[^a-z]+?))\s*(?:\((?P<ext>[^)]*)\))?\s*\^?$")
_CAST_NOTE = re.compile(r"^\s*cast\s+(?P<name>[^:\]]+?)\s*:\s*(?P<what>.+?)\s*$", re.IGNORECASE | re.DOTALL)
_NOTE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_EMPHASIS = re.compile(r"(\*{1,3}|_)(?=\S)(.+?)(?<=\S)\1")
_TIMES = {"day": "by day", "morning": "by day", "afternoon": "by day", "noon": "by day",
          "night": "at night", "midnight": "at night", "evening": "at sunset", "dusk": "at sunset",
          "sunset": "at sunset", "dawn": "at sunset", "sunrise": "at sunset"}


def looks_like_fountain(text: str) -> bool:
    """A script in plain text is Fountain when it has a scene heading or a title page."""
    lines = text.replace("\r\n", "\n").split("\n")
    first = next((l for l in lines if l.strip()), "")
    if ":" in first and first.split(":", 1)[0].strip().lower() in TITLE_PAGE_KEYS:
        return True
    prev_blank = True
    for line in lines:
        s = line.strip()
        if prev_blank and s and _SCENE.match(s) and not s.startswith(".."):
            if _SCENE.match(s).group("std"):
                return True
        prev_blank = not s
    return False


def _strip_boneyard(text: str) -> str:
    """Remove /* ... */ comments, keeping line numbers; an unclosed one is an error."""
    out, pos = [], 0
    while True:
        start = text.find("/*", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        end = text.find("*/", start + 2)
        if end < 0:
            line = text.count("\n", 0, start) + 1
            raise FilmError(f"malformed Fountain: boneyard '/*' on line {line} is never closed with '*/'")
        out.append(text[pos:start])
        out.append("\n" * text.count("\n", start, end))
        pos = end + 2


def _take_notes(text: str, base: Path, cast: dict[str, CastMember]) -> str:
    """Read [[cast ...]] declarations, drop every note; an unclosed '[[' is an error."""
    def note(m: re.Match) -> str:
        body = m.group(1)
        c = _CAST_NOTE.match(body)
        line = text.count("\n", 0, m.start()) + 1
        if c:
            _declare(cast, c.group("name"), " ".join(c.group("what").split()), base, line)
        elif body.strip().lower().startswith("cast"):
            raise FilmError(f"malformed cast note on line {line}: write [[cast NAME: image.png]] "
                            "or [[cast NAME: a description]]")
        return "\n" * body.count("\n")
    stripped = _NOTE.sub(note, text)
    if "[[" in stripped:
        line = stripped[:stripped.index("[[")].count("\n") + 1
        raise FilmError(f"malformed Fountain: note '[[' on line {line} is never closed with ']]'")
    return stripped


def _declare(cast: dict[str, CastMember], name: str, what: str, base: Path, line: int) -> None:
    name = " ".join(name.split())
    if not name or not re.search(r"\w", name):
        raise FilmError(f"cast note on line {line} has no character name")
    key = name.lower()
    if key in cast and cast[key].declared:
        raise FilmError(f"character {name!r} is declared twice (lines {cast[key].line} and {line})")
    member = CastMember(name=name.title() if name.isupper() else name, line=line)
    if what.lower().endswith(IMAGE_SUFFIXES):
        ref = Path(what).expanduser()
        member.reference = ref if ref.is_absolute() else base / ref
    else:
        member.description = what
    cast[key] = member


def parse_script(text: str, base: Path = Path("."), fountain: bool | None = None) -> Script:
    """Parse script text. `base` resolves relative reference paths; `fountain=None` guesses."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if fountain is None:
        fountain = looks_like_fountain(text)
    cast: dict[str, CastMember] = {}
    if fountain:
        text = _strip_boneyard(text)
    text = _take_notes(text, base, cast)
    script = _parse_fountain(text, cast) if fountain else _parse_plain(text, cast)
    _finish(script)
    return script


# -- plain text / Markdown -----------------------------------------------------------------------
def _parse_plain(text: str, cast: dict[str, CastMember]) -> Script:
    scenes, units = [Scene(heading="", line=1)], []
    for kind, par in paragraphs(text):
        if kind == "title":
            scenes.append(Scene(heading=par, place="", line=0))
            units.append(ScriptUnit("title", par, len(scenes) - 1, 0))
            continue
        for piece in _action_pieces(par):
            units.append(ScriptUnit("action", piece, len(scenes) - 1, 0))
    return Script("text", None, scenes, units, cast)


def _action_pieces(par: str) -> list[str]:
    return [c for s in sentences(par) for c in clauses(s, MAX_UNIT_WORDS)]


# -- Fountain ------------------------------------------------------------------------------------
def _clean(s: str) -> str:
    for _ in range(2):
        s = _EMPHASIS.sub(r"\2", s)
    return " ".join(s.replace("\\", "").split())


def _title_page(lines: list[str]) -> tuple[dict[str, str], int]:
    """Key: value pairs before the first blank line, when the first line is one."""
    first = lines[0] if lines else ""
    if ":" not in first or first.split(":", 1)[0].strip().lower() not in TITLE_PAGE_KEYS:
        return {}, 0
    page: dict[str, str] = {}
    key = None
    i = 0
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if not line[:1].isspace() and ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            page[key] = value.strip()
        elif key is not None:
            page[key] = (page[key] + " " + line.strip()).strip()
        i += 1
    return page, i


def _scene_of(heading: str, line: int) -> Scene:
    """'EXT. BEACH - DAY' -> place 'beach', time 'by day'."""
    body = re.sub(r"^(?:INT\.?/EXT|INT/EXT|I/E|INT|EXT|EST)[.\s]+", "", heading, flags=re.IGNORECASE)
    body = re.sub(r"#[^#]*#\s*$", "", body).strip()              # scene number "#12#"
    place, time = body, ""
    if " - " in body:
        place, when = body.rsplit(" - ", 1)
        time = _TIMES.get(when.strip().lower(), "")
        if not time and when.strip().lower() not in ("continuous", "later", "moments later", "same"):
            place = body
    return Scene(heading=heading, place=place.strip(" .-").lower(), time=time, line=line)


def _parse_fountain(text: str, cast: dict[str, CastMember]) -> Script:
    lines = text.split("\n")
    page, i = _title_page(lines)
    scenes: list[Scene] = [Scene(heading="", line=1)]
    units: list[ScriptUnit] = []
    pending_transition = "cut"
    title = _clean(page["title"]) if page.get("title") else None
    if title:
        units.append(ScriptUnit("title", title, 0, 1))

    def add(unit: ScriptUnit) -> None:
        nonlocal pending_transition
        unit.transition, pending_transition = pending_transition, "cut"
        units.append(unit)

    n = len(lines)
    while i < n:
        raw = lines[i]
        s = raw.strip()
        if not s:
            i += 1
            continue
        prev_blank = i == 0 or not lines[i - 1].strip()
        next_blank = i + 1 >= n or not lines[i + 1].strip()
        lineno = i + 1
        if s.startswith(("#", "=")) and not s.startswith("==="):     # section / synopsis
            i += 1
            continue
        if re.fullmatch(r"={3,}", s):                                  # page break
            i += 1
            continue
        scene = _SCENE.match(s) if prev_blank and next_blank else None
        if scene and not s.startswith(".."):
            heading = _clean(scene.group("forced") or scene.group("std"))
            scenes.append(_scene_of(heading, lineno))
            add(ScriptUnit("title", heading, len(scenes) - 1, lineno))
            i += 1
            continue
        centred = _CENTRED.match(s)
        if centred:
            add(ScriptUnit("title", _clean(centred.group("text")) or " ", len(scenes) - 1, lineno))
            i += 1
            continue
        transition = _TRANSITION.match(s) if prev_blank and next_blank else None
        if transition:
            word = (transition.group("forced") or transition.group("std") or "").upper()
            pending_transition = "dissolve" if any(w in word for w in ("DISSOLVE", "FADE")) else "cut"
            i += 1
            continue
        cue = _CHARACTER.match(s) if prev_blank and not next_blank and not s.startswith("!") else None
        if cue and (cue.group("forced") or _is_cue(cue.group("std"))):
            speaker = _clean(cue.group("forced") or cue.group("std")).strip()
            i += 1
            spoken: list[str] = []
            while i < n and lines[i].strip():
                line = lines[i].strip()
                if not (line.startswith("(") and line.endswith(")")):   # parentheticals: acting notes
                    spoken.append(line.lstrip("~"))
                i += 1
            said = _clean(" ".join(spoken))
            if said:
                add(ScriptUnit("dialogue", said, len(scenes) - 1, lineno, speaker=_name(speaker)))
            continue
        # Action: the paragraph up to the next blank line.
        block = []
        while i < n and lines[i].strip():
            block.append(lines[i].strip().lstrip("!"))
            i += 1
        for piece in _action_pieces(_clean(" ".join(block))):
            add(ScriptUnit("action", piece, len(scenes) - 1, lineno))
    return Script("fountain", title, scenes, units, cast)


def _is_cue(s: str | None) -> bool:
    """An all-caps line with at least one letter and at most a few words."""
    return bool(s) and any(c.isalpha() for c in s) and len(s.split()) <= 4 and not s.endswith(("TO:", ":"))


def _name(cue: str) -> str:
    return cue.title() if cue.isupper() else cue


# -- after parsing ---------------------------------------------------------------------------------
def _finish(script: Script) -> None:
    """Characters per unit, what each picture shows, and the script's warnings."""
    if not any(u.kind in ("action", "dialogue") for u in script.units):
        raise FilmError("the script has no action or dialogue to film")
    names = sorted(script.cast.values(), key=lambda m: -len(m.name))
    patterns = [(m, re.compile(rf"(?<!\w){re.escape(m.name)}(?!\w)", re.IGNORECASE)) for m in names]
    for u in script.units:
        if u.kind == "title":
            continue
        if u.speaker:
            # A dialogue shot shows who speaks; names said in the line are not on screen.
            member = script.member(u.speaker)
            if member is None:
                member = script.cast[u.speaker.lower()] = CastMember(name=u.speaker)
                script.warnings.append(f"{u.speaker} speaks (line {u.line}) but is not in the cast: "
                                       "shots of them are generated from the text alone")
            u.characters = [member.name]
        else:
            u.characters = [m.name for m, p in patterns if p.search(u.text)]
        scene = script.scenes[u.scene]
        subject = u.speaker if u.kind == "dialogue" else u.text.rstrip(" .!?")
        # The scene's place joins the picture's text unless the sentence names a place itself.
        said = set(keywords(u.text))
        named_place = bool(said & set(keywords(scene.place))) if scene.place else True
        context = scene.context() if u.kind == "dialogue" or not named_place else scene.time
        u.visual = f"{subject} ({context})" if context else subject
    for idx, scene in enumerate(script.scenes):
        if idx and not any(u.scene == idx and u.kind != "title" for u in script.units):
            script.warnings.append(f"scene {scene.heading!r} (line {scene.line}) is empty: "
                                   "it is shown as a title card only")
