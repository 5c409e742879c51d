"""Editable timelines of a plan: OpenTimelineIO JSON (.otio) and CMX3600 EDL (.edl).

Written by hand (no opentimelineio dependency) following OTIO's serialisation schema
(Timeline.1 / Stack.1 / Track.1 / Clip.2 / Gap.1 / Transition.1, RationalTime.1 at the film's
frame rate), so editors with an OTIO adapter open the cut with its sources and in/out points.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import Plan, write_text_atomic


def _rt(frames: int, rate: float) -> dict:
    return {"OTIO_SCHEMA": "RationalTime.1", "rate": float(rate), "value": float(frames)}


def _range(start: int, dur: int, rate: float) -> dict:
    return {"OTIO_SCHEMA": "TimeRange.1", "start_time": _rt(start, rate), "duration": _rt(dur, rate)}


def _frames(t: float, fps: float) -> int:
    return int(round(t * fps))


def to_otio(plan: Plan, name: str, narration: str | None = None, crossfade: float = 0.0) -> dict:
    """The plan as an OTIO Timeline dict: a video track of clips (title cards as gaps with the
    title in metadata) and, when given, an audio track holding the narration file."""
    fps = plan.fps
    children: list[dict[str, Any]] = []
    slots = [(u, s) for u in plan.units for s in u.shots]
    for k, (u, s) in enumerate(slots):
        dur = _frames(s.end, fps) - _frames(s.start, fps)
        meta = {"jvideo": {"unit": u.index, "text": u.text, "note": u.note, "costs": s.costs,
                           "score": s.score, "hold": s.hold}}
        if k and crossfade > 0:
            half = _frames(crossfade, fps)
            children.append({"OTIO_SCHEMA": "Transition.1", "name": "fade",
                             "transition_type": "SMPTE_Dissolve", "in_offset": _rt(0, fps),
                             "out_offset": _rt(half, fps), "metadata": {}})
        if s.kind == "title":
            meta["jvideo"]["title"] = s.title
            children.append({"OTIO_SCHEMA": "Gap.1", "name": f"title: {s.title}",
                             "source_range": _range(0, dur, fps), "effects": [], "markers": [],
                             "enabled": True, "metadata": meta})
            continue
        children.append({
            "OTIO_SCHEMA": "Clip.2", "name": Path(s.source).name, "metadata": meta,
            "source_range": _range(_frames(s.in_point, fps), dur, fps),
            "media_references": {"DEFAULT_MEDIA": {
                "OTIO_SCHEMA": "ExternalReference.1", "name": Path(s.source).name,
                "target_url": Path(s.source).resolve().as_uri(), "available_range": None,
                "available_image_bounds": None, "metadata": {}}},
            "active_media_reference_key": "DEFAULT_MEDIA", "effects": [], "markers": [],
            "enabled": True})
    tracks = [{"OTIO_SCHEMA": "Track.1", "name": "V1", "kind": "Video", "children": children,
               "source_range": None, "effects": [], "markers": [], "enabled": True, "metadata": {}}]
    if narration:
        total = _frames(plan.duration, fps)
        tracks.append({"OTIO_SCHEMA": "Track.1", "name": "A1", "kind": "Audio", "source_range": None,
                       "effects": [], "markers": [], "enabled": True, "metadata": {}, "children": [{
                           "OTIO_SCHEMA": "Clip.2", "name": Path(narration).name, "metadata": {},
                           "source_range": _range(0, total, fps),
                           "media_references": {"DEFAULT_MEDIA": {
                               "OTIO_SCHEMA": "ExternalReference.1", "name": Path(narration).name,
                               "target_url": Path(narration).resolve().as_uri(),
                               "available_range": None, "available_image_bounds": None,
                               "metadata": {}}},
                           "active_media_reference_key": "DEFAULT_MEDIA", "effects": [],
                           "markers": [], "enabled": True}]})
    return {"OTIO_SCHEMA": "Timeline.1", "name": name, "global_start_time": None,
            "metadata": {"jvideo": {"solver": plan.solver, "duration": plan.duration}},
            "tracks": {"OTIO_SCHEMA": "Stack.1", "name": "tracks", "children": tracks,
                       "source_range": None, "effects": [], "markers": [], "enabled": True,
                       "metadata": {}}}


def write_otio(plan: Plan, path: Path, **kw) -> Path:
    import json
    write_text_atomic(Path(path), json.dumps(to_otio(plan, Path(path).stem, **kw), indent=1,
                                             ensure_ascii=False))
    return Path(path)


def timecode(frames: int, fps: float) -> str:
    """Frames -> non-drop-frame SMPTE 'HH:MM:SS:FF' at the rounded integer rate."""
    rate = max(1, int(round(fps)))
    s, f = divmod(int(frames), rate)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}"


def _reel(source: str, reels: dict[str, str]) -> str:
    """CMX3600 reel names are 8 characters: AX01.. per source, the name in a comment."""
    if source not in reels:
        reels[source] = f"AX{len(reels) + 1:02d}"[:8]
    return reels[source]


def to_edl(plan: Plan, title: str, crossfade: float = 0.0) -> str:
    """The plan as a CMX3600 EDL (video track; title cards as black 'BL' events)."""
    fps = plan.fps
    title_clean = "".join(ch if ch.isprintable() else " " for ch in title)[:70]
    lines = [f"TITLE: {title_clean}", "FCM: NON-DROP FRAME", ""]
    reels: dict[str, str] = {}
    prev: tuple[str, int] | None = None            # (reel, source out frame) of the last event
    fade = _frames(crossfade, fps)
    for n, (u, s) in enumerate(((u, s) for u in plan.units for s in u.shots), 1):
        rec_in, rec_out = _frames(s.start, fps), _frames(s.end, fps)
        dur = rec_out - rec_in
        if s.kind == "title":
            src_in, reel = 0, "BL"
        else:
            src_in, reel = _frames(s.in_point, fps), _reel(s.source, reels)
        src_tc = f"{timecode(src_in, fps)} {timecode(src_in + dur, fps)}"
        rec_tc = f"{timecode(rec_in, fps)} {timecode(rec_out, fps)}"
        if prev is None or fade <= 0:
            lines.append(f"{n:03d}  {reel:<8} V     C        {src_tc} {rec_tc}")
        else:  # a dissolve: the outgoing source as a zero-length cut, then the incoming with D
            out_tc = timecode(prev[1], fps)
            lines.append(f"{n:03d}  {prev[0]:<8} V     C        {out_tc} {out_tc} "
                         f"{timecode(rec_in, fps)} {timecode(rec_in, fps)}")
            lines.append(f"{n:03d}  {reel:<8} V     D    {fade:03d} {src_tc} {rec_tc}")
        prev = (reel, src_in + dur)
        if s.kind == "title":
            lines.append(f"* TITLE CARD: {_comment(s.title)}")
        else:
            lines.append(f"* FROM CLIP NAME: {_comment(Path(s.source).name)}")
            lines.append(f"* SOURCE FILE: {_comment(s.source)}")
        lines.append(f"* TEXT: {_comment(u.text)}")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def write_edl(plan: Plan, path: Path, crossfade: float = 0.0) -> Path:
    write_text_atomic(Path(path), to_edl(plan, Path(path).stem, crossfade))
    return Path(path)
