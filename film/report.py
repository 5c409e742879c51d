"""What a film run leaves beside film.mp4: subtitles, the plan with provenance, timelines, a
storyboard PNG and an HTML report that opens in a browser.

The report is one self-contained file (thumbnails inlined as data URIs). Every piece of text
in it comes from a script, a library or a file name, so all of it is escaped: a caption such
as `<script>` shows as text.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict
from pathlib import Path

from montage.plan import Plan, write_text_atomic

from .script import Script

SOURCE_COLOURS = {"retrieved": "#2b7a3d", "generated": "#6a3fb5", "title": "#555", "missing": "#b3261e"}


def write_outputs(out: Path, script: Script, plan: Plan, prov: list, warnings: list[str], req, generator,
                  rcfg, seconds: dict[str, float], thumbs: dict[int, str]) -> dict[str, Path]:
    """Write every output beside `out`; thumbs: shot id -> thumbnail image file."""
    from montage.storyboard import write_storyboard
    from montage.subtitles import cues_from_plan, write_srt
    from montage.timeline import write_edl, write_otio
    stem = out.with_suffix("")
    outputs = {"film": out, "srt": Path(f"{stem}.srt"), "plan": Path(f"{stem}.plan.json"),
               "otio": Path(f"{stem}.otio"), "edl": Path(f"{stem}.edl"),
               "storyboard": Path(f"{stem}.storyboard.png"), "report": Path(f"{stem}.report.html")}
    cues = cues_from_plan(plan)
    write_srt(cues, outputs["srt"])
    if cues:
        add_subtitle_track(out, outputs["srt"])
    fade = rcfg.crossfade if rcfg.transition == "crossfade" else 0.0
    write_otio(plan, outputs["otio"], crossfade=fade)
    write_edl(plan, outputs["edl"], crossfade=fade)
    write_storyboard(plan, outputs["storyboard"], aspect=(rcfg.width, rcfg.height))
    write_text_atomic(outputs["plan"], json.dumps(film_json(script, plan, prov, warnings, req, generator, seconds),
                                                  indent=1, ensure_ascii=False))
    write_text_atomic(outputs["report"], report_html(out, script, plan, prov, warnings, generator, seconds,
                                                     outputs, thumbs))
    return outputs


def add_subtitle_track(film: Path, srt: Path) -> None:
    """Put the SRT into the MP4 as a soft subtitle track (mov_text), beside the burned-in
    captions: players can switch it and editors import it. Stream copy, atomic replace."""
    import os

    from montage.files import file_arg, scratch_path
    from montage.render import run_ffmpeg
    tmp = scratch_path(film, ".mp4")   # the .tmp. form: a killed run's copy is swept by the next render
    try:
        run_ffmpeg(["-i", file_arg(film), "-i", file_arg(srt), "-map", "0", "-map", "1", "-c", "copy",
                    "-c:s", "mov_text", "-metadata:s:s:0", "language=eng", "-movflags", "+faststart",
                    "-f", "mp4", file_arg(tmp)], f"adding subtitles to {film.name}")
        os.replace(tmp, film)
    finally:
        if tmp.exists():
            tmp.unlink()


def film_json(script: Script, plan: Plan, prov: list, warnings: list[str], req, generator,
              seconds: dict[str, float]) -> dict:
    """The plan JSON: the montage plan plus, per unit, where its picture comes from."""
    cast = {m.name: {"reference": str(m.reference) if m.reference else None, "description": m.description}
            for m in script.cast.values()}
    gen = {"mode": req.generate, "threshold": req.threshold, "steps": req.steps, "cfg": req.cfg, "hold": req.hold,
           "seed": req.seed, "checkpoint": str(generator.folder) if generator else None,
           "checkpoint_digest": generator.digest if generator else None,
           "composite": generator.composite if generator else None,
           "available": bool(generator and generator.error is None and generator.digest)}
    counts = {k: sum(p.source == k for p in prov) for k in ("retrieved", "generated", "title", "missing")}
    return {"film": {"script": str(req.script), "format": script.format, "title": script.title,
                     "duration": round(plan.duration, 3), "counts": counts, "cast": cast,
                     "generation": gen, "warnings": warnings,
                     "stages_seconds": {k: round(v, 3) for k, v in seconds.items()},
                     "units": [asdict(p) for p in prov]},
            "plan": plan.to_dict()}


# -- HTML ------------------------------------------------------------------------------------------
def _thumb_uri(path: str | None, width: int = 160) -> str:
    """A JPEG data URI of an image file, or '' when it cannot be read."""
    if not path:
        return ""
    try:
        from PIL import Image
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((width, width))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
    except Exception:   # a missing thumbnail only leaves an empty cell
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def report_html(out: Path, script: Script, plan: Plan, prov: list, warnings: list[str], generator,
                seconds: dict[str, float], outputs: dict[str, Path], thumbs: dict[int, str]) -> str:
    e = html.escape
    rows = []
    for p, pu in zip(prov, plan.units):
        cells = []
        for s in pu.shots:
            hold = f" · hold {s.hold:.1f} s" if s.hold > 0.01 else ""
            if s.kind == "shot":
                uri = _thumb_uri(thumbs.get(s.shot_id))
                img = f'<img src="{uri}" alt="">' if uri else '<div class="card">no thumbnail</div>'
                costs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.costs.items()))
                detail = f"score {s.score:.2f} · sim {s.similarity:.2f}<br><small>{e(costs)}</small>"
            else:
                img, detail = f'<div class="card">{e(s.title or "title card")}</div>', ""
            src = Path(s.source).name if s.source else ""
            cells.append(f"<figure>{img}<figcaption>{e(src)}<br>{s.start:.1f}-{s.end:.1f} s{hold}<br>"
                         f"{detail}</figcaption></figure>")
        colour = SOURCE_COLOURS.get(p.source, "#333")
        extra = []
        if p.speaker:
            extra.append(f"<b>{e(p.speaker)}</b>: ")
        gen_info = ""
        if p.source == "generated":
            gen_info = f"<br>seed {p.seed}" + (f" · identity: {e(p.identity)}" if p.identity else " · text only")
        rows.append(
            f'<tr><td>{p.unit + 1}</td><td>{pu.start:.1f}</td><td>{e(p.kind)}</td>'
            f'<td>{"".join(extra)}{e(p.text)}<br><small>picture: {e(p.visual or "-")}</small>'
            f'{"<br><small>cast: " + e(", ".join(p.characters)) + "</small>" if p.characters else ""}</td>'
            f'<td><span class="tag" style="background:{colour}">{e(p.source)}</span><br>'
            f'<small>{e(p.reason)}{gen_info}</small></td>'
            f'<td>{p.library_relevance:.2f}</td><td class="shots">{"".join(cells)}</td></tr>')
    counts = {k: sum(p.source == k for p in prov) for k in SOURCE_COLOURS}
    cast_rows = "".join(
        f'<li><b>{e(m.name)}</b>: '
        + (f'<img class="ref" src="{_thumb_uri(str(m.reference), 96)}" alt=""> {e(str(m.reference))}'
           if m.reference else e(m.description or "no reference, no description"))
        + '</li>' for m in script.cast.values())
    warn = "".join(f"<li>{e(w)}</li>" for w in warnings) or "<li>none</li>"
    stage_list = " · ".join(f"{e(k)} {v:.1f} s" for k, v in seconds.items())
    gen_line = ("no generator used" if generator is None else
                f"generator: {e(str(generator.folder))}" + (f" (unavailable: {e(generator.error)})" if generator.error else ""))
    links = " · ".join(f'<a href="{e(p.name)}">{e(k)}</a>' for k, p in outputs.items() if k != "report")
    title = script.title or Path(out).stem
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)} · jvideo film report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 6px; vertical-align: top; text-align: left; }}
.tag {{ color: #fff; padding: 1px 6px; border-radius: 3px; }}
figure {{ display: inline-block; margin: 0 6px 6px 0; width: 170px; font-size: 11px; }}
figure img {{ width: 160px; }}
.card {{ width: 160px; height: 90px; background: #111; color: #eee; display: flex; align-items: center;
         justify-content: center; text-align: center; font-size: 12px; }}
img.ref {{ width: 48px; vertical-align: middle; }}
video {{ max-width: 640px; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{plan.duration:.1f} s · {len(prov)} units · retrieved {counts["retrieved"]} · generated {counts["generated"]}
 · title cards {counts["title"]} · missing footage {counts["missing"]}</p>
<p>{gen_line}<br>stages: {stage_list}</p>
<p>{links}</p>
<video controls src="{e(Path(out).name)}"></video>
<h2>Cast</h2><ul>{cast_rows or "<li>none declared</li>"}</ul>
<h2>Warnings</h2><ul>{warn}</ul>
<h2>Units</h2>
<table><tr><th>#</th><th>at s</th><th>kind</th><th>text</th><th>source</th><th>library relevance</th><th>shots</th></tr>
{"".join(rows)}
</table></body></html>
"""
