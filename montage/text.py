"""Text -> units: the sentences or clauses a montage is cut to.

A unit is what one stretch of narration says; the planner gives each unit one or more shots.
Markdown is read loosely: blank lines separate paragraphs, headings become title-card units,
list markers, emphasis, inline code and link targets are stripped.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import MontageError

# Sentences longer than this (in words) are cut at clause boundaries (; : , and/but ...).
MAX_UNIT_WORDS = 24
# Words per minute used when a unit's duration comes from reading speed, not from a voice.
READING_WPM = 160.0
MIN_UNIT_SECONDS = 1.5

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "fig",
                  "jr", "sr", "mt", "approx", "inc", "ltd", "co"}

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves one two also then there s t can will just don shall may
might must upon onto via within without across along around among towards toward
""".split())


@dataclass
class Unit:
    """One stretch of text that gets its own shots.

    kind: "text" (narrated, cut to footage) or "title" (a heading: shown as a title card).
    duration: seconds on screen; None until timing fills it (narration or reading speed).
    pin: a shot id the user fixed for this unit (the planner keeps it).
    """
    text: str
    paragraph: int = 0
    kind: str = "text"
    duration: float | None = None
    pin: int | None = None
    meta: dict = field(default_factory=dict)

    def key(self) -> str:
        """Identity of the unit for incremental re-planning (text, kind, pin, duration)."""
        d = "" if self.duration is None else f"{self.duration:.4f}"
        raw = f"{self.kind}\0{self.text}\0{self.pin}\0{d}"
        return hashlib.sha1(raw.encode("utf-8")).hexdigest()


# -- Markdown clean-up ---------------------------------------------------------------------
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPH = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
# Real tags and comments only (a letter after "<", as in CommonMark): "x <3 and y > 2" is text.
_HTML = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")


def _clean_inline(s: str) -> str:
    s = _LINK.sub(r"\1", s)
    s = _HTML.sub("", s)
    for _ in range(2):  # nested emphasis like ***x***
        s = _EMPH.sub(r"\2", s)
    return " ".join(s.split())


def paragraphs(text: str) -> list[tuple[str, str]]:
    """Markdown text -> [(kind, cleaned text)], kind "title" for headings, "text" otherwise."""
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    in_fence = False

    def flush() -> None:
        if buf:
            s = _clean_inline(" ".join(buf))
            if s:
                out.append(("text", s))
            buf.clear()

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.strip().startswith("```"):
            in_fence = not in_fence
            flush()
            continue
        if in_fence or _RULE.match(line):
            flush()
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            title = _clean_inline(m.group(2))
            if title:
                out.append(("title", title))
            continue
        if not line.strip():
            flush()
            continue
        if _LIST.match(line):  # each list item is its own paragraph
            flush()
            while _LIST.match(line):
                line = _LIST.sub("", line, count=1)
        line = _QUOTE.sub("", line)
        buf.append(line.strip())
    flush()
    return out


# -- sentences and clauses -----------------------------------------------------------------
_SENT_END = re.compile(r"([.!?\u2026]+[\"'\u201d\u2019)\]]*)(\s+)")
_CLAUSE = re.compile(r"(?<=[;:,\u2014])\s+|\s+(?=\b(?:and then|but|while|whereas|although|"
                     r"though|because|so that|until|before|after|when)\b)")


def sentences(par: str) -> list[str]:
    """Split one paragraph into sentences; abbreviations and initials do not end a sentence."""
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(par):
        end = m.end(1)
        words = par[start:m.start(1)].split()
        last = words[-1].lower().rstrip(".") if words else ""
        nxt = par[m.end():m.end() + 1]
        if m.group(1) == "." and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        if nxt and nxt.islower():  # "e.g. the" or "3.5 m. long"
            continue
        out.append(par[start:end].strip())
        start = m.end()
    tail = par[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if _has_word(s)]


def _has_word(s: str) -> bool:
    return any(ch.isalnum() for ch in s)


def clauses(sentence: str, max_words: int = MAX_UNIT_WORDS) -> list[str]:
    """Cut a long sentence at clause boundaries into pieces of at most ~max_words words."""
    if len(sentence.split()) <= max_words:
        return [sentence]
    parts = [p for p in _CLAUSE.split(sentence) if p and p.strip()]
    # Greedily merge short pieces back so no unit is a fragment of two words.
    out: list[str] = []
    for p in parts:
        p = p.strip()
        if out and (len(out[-1].split()) + len(p.split()) <= max_words
                    and (len(out[-1].split()) < 5 or len(p.split()) < 5)):
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    # A clause with no boundary left is cut by word count.
    final: list[str] = []
    for p in out:
        words = p.split()
        while len(words) > max_words * 3 // 2:
            final.append(" ".join(words[:max_words]))
            words = words[max_words:]
        final.append(" ".join(words))
    return [f for f in final if _has_word(f)]


def split_units(text: str, max_words: int = MAX_UNIT_WORDS, titles: bool = True) -> list[Unit]:
    """Text (plain or Markdown) -> units in reading order.

    Raises MontageError when the text holds no words.
    """
    units: list[Unit] = []
    for p_index, (kind, par) in enumerate(paragraphs(text)):
        if kind == "title":
            if titles:
                units.append(Unit(text=par, paragraph=p_index, kind="title"))
            continue
        for sent in sentences(par):
            for piece in clauses(sent, max_words):
                units.append(Unit(text=piece, paragraph=p_index))
    if not any(u.kind == "text" for u in units):
        raise MontageError("the text is empty: no sentence to cut a film to")
    return units


# -- keywords --------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


@lru_cache(maxsize=1 << 16)  # library texts repeat their words: stem each once
def stem(word: str) -> str:
    """A small suffix stemmer (plural, -ing, -ed, -ly): "running" -> "run", "cities" -> "city"."""
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3:
        return w
    for suf, rep in (("ies", "y"), ("sses", "ss"), ("ves", "f")):
        if w.endswith(suf) and len(w) > len(suf) + 2:
            return w[: -len(suf)] + rep
    for suf in ("ingly", "edly", "ing", "ed", "ly", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            if suf == "s" and w.endswith(("ss", "us", "is")):
                return w
            if suf == "es" and not w.endswith(("ches", "shes", "xes", "zes", "sses")):
                continue  # "horses" -> "horse" via "s" below
            w = w[: -len(suf)]
            if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "lsz":  # running -> run
                w = w[:-1]
            return w
    return w


def content_words(text: str) -> list[str]:
    """Lower-case content words (stop words dropped), in order, without repeats."""
    seen: dict[str, None] = {}
    for m in _WORD.finditer(text.lower()):
        w = m.group(0)
        if w in STOPWORDS or w.isdigit() or len(w) < 2:
            continue
        seen.setdefault(w, None)
    return list(seen)


def keywords(text: str) -> list[str]:
    """Stemmed content words of a text, without repeats."""
    return list(dict.fromkeys(stem(w) for w in content_words(text)))


def reading_seconds(text: str, wpm: float = READING_WPM, minimum: float = MIN_UNIT_SECONDS) -> float:
    """How long a unit stays on screen when read at `wpm` words per minute (plus a breath)."""
    n = len(_WORD.findall(text))
    return max(minimum, n * 60.0 / wpm + 0.4)
