"""The studio's engine: one project, planned incrementally and rendered in the background.

- The library is read once into a montage ShotTable; shots marked "never use" are dropped from
  a cheap subset of it (re-built only when that list changes).
- Every script edit splits the text into units, applies pins, embeds only new sentences (MiniLM
  with an on-disk cache) and calls montage.plan.plan with the previous plan: units before the
  first changed one keep their shots, unchanged or moved sentences skip retrieval, so only the
  edit and what follows it are re-solved.
- A render thread follows the newest plan: it renders the plan's segments through montage's
  content-keyed cache (so only changed shots are encoded), gives up on a plan as soon as a newer
  one arrives (segments already made stay cached) and assembles the film with render_film.
- Indexing a folder runs `jvideo index` in a child process (it takes the library's writer lock,
  and a crash there cannot take the server down); its progress bar is read from stderr.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from montage.embedding import DIM, TextEmbedder
from montage.errors import MontageError
from montage.plan import Plan, PlanConfig, ShotTable, retrieve, write_text_atomic
from montage.plan import plan as make_plan
from montage.text import Unit, reading_seconds, split_units

from .session import MAX_SCRIPT_CHARS, Session, Settings, check_script, project_workdir

FILM_NAME = "film.mp4"
# Ids of generated shots: far above any library id (the film pipeline's convention).
GENERATED_ID_BASE = 1 << 40
EXPORT_FORMATS = ("mp4", "srt", "otio", "edl", "plan")


class NotFound(MontageError):
    """An unknown shot or unit (the API answers 404)."""


class Conflict(MontageError):
    """The request does not fit the current state, e.g. the script changed meanwhile (409)."""


@dataclass
class StudioConfig:
    """How one studio server runs."""
    project: Path
    library: Path | None = None       # overrides the project's library
    fps: float = 24.0
    size: tuple[int, int] | None = None   # film size; default: the aspect's (854x480 for 16:9)
    render: bool = True               # background rendering (benchmarks turn it off)
    render_delay: float = 0.6         # seconds a plan must stay current before it is rendered
    render_workers: int = max(1, min(2, os.cpu_count() or 1))
    candidates_shown: int = 8
    generate_steps: int = 25          # DDIM steps of a generated shot (the film pipeline's default)
    autosave: bool = True


@dataclass
class JobState:
    """Progress of a background job as the page shows it."""
    state: str = "idle"               # idle | waiting | rendering | assembling | running | done | error
    done: int = 0
    total: int = 0
    message: str = ""
    version: int = 0                  # plan version the film shows (render) / run number (index)
    started: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"state": self.state, "done": self.done, "total": self.total, "message": self.message,
                "version": self.version, "seconds": round(self.seconds, 2)}


def without_shots(table: ShotTable, exclude: set[int]) -> ShotTable:
    """`table` less the shots in `exclude`, by array indexing (no re-read of the library)."""
    if not exclude or len(table) == 0:
        return table
    keep = ~np.isin(table.ids, np.fromiter(exclude, np.int64, len(exclude)))
    rows = np.nonzero(keep)[0]
    new_row = np.full(len(table), -1, dtype=np.int64)
    new_row[rows] = np.arange(len(rows))
    kw = {}
    for word, old in table.kw_index.items():
        r = new_row[old]
        r = r[r >= 0]
        if len(r):
            kw[word] = r
    sig = hashlib.sha1(f"{table.signature}|never:{sorted(exclude)}".encode()).hexdigest()
    return ShotTable(ids=table.ids[rows], vectors=table.vectors[rows], start=table.start[rows],
                     end=table.end[rows], brightness=table.brightness[rows],
                     sharpness=table.sharpness[rows], motion=table.motion[rows], lab=table.lab[rows],
                     camera=table.camera[rows], source_idx=table.source_idx[rows],
                     sources=table.sources, texts=[table.texts[r] for r in rows.tolist()],
                     kw_index=kw, signature=sig)


def _fountain_units(script: str, base: Path) -> list[Unit] | None:
    """Units of a Fountain screenplay (film.script), or None when the text is not Fountain or
    the film pipeline is not installed. Each unit keeps what its picture shows ("visual", the
    retrieval query: for dialogue, the speaker in the scene) in Unit.meta."""
    try:
        from film.errors import FilmError
        from film.script import looks_like_fountain, parse_script
    except ImportError:
        return None
    if not looks_like_fountain(script):
        return None
    try:
        parsed = parse_script(script, base=base, fountain=True)
    except FilmError as err:
        if "no action or dialogue" in str(err):
            return []                     # only headings so far
        raise MontageError(str(err)) from None
    units = []
    for su in parsed.units:
        if su.kind == "title":
            units.append(Unit(text=su.text, kind="title", paragraph=su.scene))
        else:
            units.append(Unit(text=su.text, paragraph=su.scene,
                              meta={"visual": su.visual or su.text, "speaker": su.speaker,
                                    "characters": list(su.characters)}))
    return units


def _follow(proc: subprocess.Popen, st: JobState) -> tuple[str, str, int]:
    """Wait for a child, keeping st.done/st.total from its tqdm bar ('n/total [') on stderr.
    Returns (stdout, its last error line, return code)."""
    out_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    tail, last_error = b"", ""
    while chunk := proc.stderr.read1(4096):
        tail = (tail + chunk)[-8192:]
        text = tail.decode("utf-8", "replace")
        bars = re.findall(r"(\d+)/(\d+) \[", text)
        if bars:
            st.done, st.total = int(bars[-1][0]), int(bars[-1][1])
        lines = [ln.strip() for ln in re.split(r"[\r\n]", text) if ln.strip()]
        errs = [ln for ln in lines if "error" in ln.lower() or ln.startswith("generate:")]
        if errs:
            last_error = errs[-1]
    rc = proc.wait()
    reader.join(timeout=5)
    return b"".join(out_chunks).decode("utf-8", "replace"), last_error, rc


def _has_module(name: str) -> bool:
    """True when `name` can be imported (find_spec raises when a parent package is missing)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def film_available() -> bool:
    """True once the film pipeline (`film/`, generation of missing shots) is installed."""
    return _has_module("film.pipeline")


class Studio:
    """State and work of one studio. Thread-safe: the web server calls it from many threads."""

    def __init__(self, cfg: StudioConfig):
        self.cfg = cfg
        self.project = Path(cfg.project).expanduser().absolute()
        if self.project.is_dir():
            raise MontageError(f"project {self.project} is a folder; give a .json file")
        if not self.project.parent.is_dir():
            raise MontageError(f"cannot create project {self.project}: folder {self.project.parent} does not exist")
        self.workdir = project_workdir(self.project)
        self.session = Session.open_or_new(self.project)
        if cfg.library is not None:
            self.session.library = str(Path(cfg.library).expanduser().resolve())
        self._lock = threading.RLock()
        self.embedder = TextEmbedder(cache_dir=self.workdir / "cache")
        self.plan: Plan | None = None
        self.plan_version = 0
        self._last_update_seconds = 0.0
        self.render_state = JobState()
        self.index_state = JobState()
        self.generate_state = JobState()
        self._index_proc: subprocess.Popen | None = None
        self._generate_proc: subprocess.Popen | None = None
        self._visual: dict[str, str] = {}          # unit text -> what its picture shows
        self._characters: dict[str, list[str]] = {}  # unit text -> cast members it shows (Fountain)
        self._render_cv = threading.Condition(self._lock)
        self._stop = False
        self._plan_changed_at = 0.0
        self._changed: set[int] = set()
        self.shots: dict[int, Any] = {}
        self.library_dir: Path | None = None
        self._lib_shots: list = []
        self._lib_vectors = np.zeros((0, DIM), np.float32)
        self._base_table = ShotTable.from_shots([], np.zeros((0, DIM), np.float32))
        self.table = self._base_table
        self._load_library()
        self._render_thread: threading.Thread | None = None
        if cfg.render:
            self._render_thread = threading.Thread(target=self._render_loop, name="studio-render",
                                                   daemon=True)
            self._render_thread.start()

    # -- library ---------------------------------------------------------------------------
    def _load_library(self) -> None:
        """(Re)read the library: shots by id and the ShotTable the planner uses."""
        from montage.library import Library

        lib_path = self.session.library
        shots, vectors = [], np.zeros((0, DIM), np.float32)
        if lib_path:
            folder = Path(lib_path)
            if (folder / "library.sqlite").is_file():
                with Library.open(folder) as lib:
                    shots, vectors = lib.shots(), lib.embeddings()
                    self.library_dir = lib.folder
            elif folder.exists() and any(folder.iterdir()):
                raise MontageError(f"{folder} is not a jvideo library (no library.sqlite)")
            else:
                self.library_dir = folder   # created by the first index run
        with self._lock:
            self._lib_shots, self._lib_vectors = shots, vectors
            self._rebuild_table()

    def _generated_shots(self) -> list:
        """The project's generated shots whose files still exist, as library Shots."""
        from montage.library import Shot
        out = []
        for d in self.session.generated.values():
            try:
                f = {k: v for k, v in d.items() if k in Shot.__dataclass_fields__}
                f["lab"] = tuple(f["lab"])
                shot = Shot(**f)
            except (TypeError, KeyError, ValueError):
                continue            # a damaged entry only loses that shot
            if Path(shot.source).is_file():
                out.append(shot)
        return out

    def _rebuild_table(self) -> None:
        """Library shots + generated shots -> the planner's table (less never-use shots)."""
        gen = self._generated_shots()
        shots = list(self._lib_shots) + gen
        vectors = self._lib_vectors
        if gen:
            vectors = np.concatenate([vectors, self.embedder.embed([g.text for g in gen])])
        self.shots = {s.id: s for s in shots}
        self._base_table = ShotTable.from_shots(shots, vectors)
        self._refresh_table()

    def _refresh_table(self) -> None:
        self.table = without_shots(self._base_table, set(self.session.never_use))

    def library_info(self) -> dict:
        with self._lock:
            n = len(self._base_table)
            return {"folder": str(self.library_dir) if self.library_dir else None, "shots": n,
                    "sources": len(set(self._base_table.source_idx.tolist())) if n else 0,
                    "never_use": len(self.session.never_use)}

    def thumbnail_path(self, shot_id: int) -> Path:
        """The thumbnail file of a shot, only when it lies inside the library folder."""
        shot = self.shots.get(int(shot_id))
        if shot is None:
            raise NotFound(f"no shot {shot_id} in the library")
        if not shot.thumbnail:
            raise NotFound(f"shot {shot_id} has no thumbnail")
        p = Path(shot.thumbnail).resolve()
        roots = [r.resolve() for r in (self.library_dir, self.workdir) if r is not None]
        if not any(p.is_relative_to(r) for r in roots) or not p.is_file():
            raise NotFound(f"shot {shot_id} has no thumbnail in the library or the project")
        return p

    def _check_shot(self, shot_id: Any) -> int:
        try:
            sid = int(shot_id)
        except (TypeError, ValueError):
            raise MontageError(f"shot id must be a number, not {shot_id!r}") from None
        if isinstance(shot_id, bool) or sid not in self.shots:
            raise NotFound(f"no shot {shot_id} in the library")
        return sid

    # -- planning --------------------------------------------------------------------------
    def plan_config(self) -> PlanConfig:
        s = self.session.settings
        return PlanConfig(pace=s.pace, movement=None if s.movement == "any" else s.movement,
                          fps=self.cfg.fps)

    def _units(self, script: str) -> list[Unit]:
        """Script -> montage units with durations and pins. Fountain screenplays are read by
        the film pipeline's parser when it is installed (scene headings become title cards,
        dialogue is shown over its speaker); plain text and Markdown by montage's."""
        if not any(ch.isalnum() for ch in script):
            return []
        units = _fountain_units(script, self.project.parent)
        if units is None:
            try:
                units = split_units(script)
            except MontageError:
                return []          # headings only: nothing to cut yet
        self._visual = {u.text: u.meta.get("visual", u.text) for u in units if u.kind == "text"}
        self._characters = {u.text: u.meta.get("characters", []) for u in units if u.kind == "text"}
        for u in units:
            if u.kind == "text":
                u.duration = reading_seconds(u.text)
                pin = self.session.pins.get(u.text)
                if pin is not None and pin in self.table.row_of():
                    u.pin = pin
        return units

    def update(self, script: str | None = None) -> dict:
        """Re-plan after an edit of the script (None: same script, e.g. after a setting
        changed). Returns the storyboard."""
        t0 = time.perf_counter()
        if script is not None:
            if not isinstance(script, str):
                raise MontageError("script must be text")
            check_script(script)
        with self._lock:
            if script is not None:
                self.session.script = script
            units = self._units(self.session.script)
            if units:
                vecs = self.embedder.embed([u.meta.get("visual", u.text) for u in units])
                before = self.plan
                self.plan = make_plan(units, self.table, vecs, self.plan_config(), before)
                # What the page highlights: units whose text or shots differ from the last plan
                # (the optimiser re-solves everything after the first edit, but most of it
                # usually comes out the same).
                old = {(u.key, tuple(s.shot_id for s in u.shots)) for u in before.units} if before else set()
                self._changed = {u.index for u in self.plan.units
                                 if (u.key, tuple(s.shot_id for s in u.shots)) not in old}
            else:
                self.plan = None
            self.plan_version += 1
            self._plan_changed_at = time.monotonic()
            self._save()
            self._render_cv.notify_all()
            self._last_update_seconds = time.perf_counter() - t0
            return self.storyboard()

    def _save(self) -> None:
        if self.cfg.autosave:
            self.workdir.mkdir(exist_ok=True)
            self.session.save(self.project)

    def save(self) -> dict:
        with self._lock:
            self.session.save(self.project)
            return {"saved": str(self.project)}

    def storyboard(self) -> dict:
        """What the page draws: one entry per unit with its shots and top candidates."""
        with self._lock:
            p = self.plan
            units = []
            if p is not None:
                generate = set(self.session.generate)
                never = set(self.session.never_use)
                k = self.cfg.candidates_shown
                for u in p.units:
                    shots = [self._slot_dict(s) for s in u.shots]
                    cands = [self._shot_brief(sid, rel, sim) for sid, rel, sim in u.candidates
                             if sid not in never][:k]
                    if not cands and u.kind == "text":
                        cands = self._fallback_candidates(u.text, k)
                    units.append({
                        "index": u.index, "text": u.text, "kind": u.kind, "key": u.key,
                        "start": round(u.start, 3), "end": round(u.end, 3), "match": u.match,
                        # A pin on a shot the library no longer has is kept but not shown.
                        "note": u.note, "pinned": self.session.pins.get(u.text) if u.match == "pinned" else None,
                        "generate": u.text in generate, "generated": u.text in self.session.generated,
                        "changed": u.index in self._changed,
                        "shots": shots, "candidates": cands})
            return {"version": self.plan_version, "units": units,
                    "duration": round(p.duration, 3) if p else 0.0,
                    "solver": p.solver if p else "none",
                    "replanned_from": p.replanned_from if p else 0,
                    "plan_seconds": round(p.seconds, 4) if p else 0.0,
                    "update_seconds": round(self._last_update_seconds, 4),
                    "film_available": film_available(),
                    "settings": self.session.to_dict()["settings"]}

    def _fallback_candidates(self, text: str, k: int) -> list[dict]:
        """A pinned unit keeps no retrieval result in the plan; show its neighbours anyway so
        the pin can be changed."""
        if len(self.table) == 0:
            return []
        c = retrieve(self.table, [text], self.embedder.embed([text]), self.plan_config())[0]
        return [self._shot_brief(int(self.table.ids[r]), float(rel), float(sim))
                for r, rel, sim in zip(c.rows[:k], c.relevance[:k], c.similarity[:k])]

    def _shot_brief(self, sid: int, relevance: float, similarity: float) -> dict:
        shot = self.shots.get(sid)
        return {"shot_id": sid, "score": round(float(relevance), 3),
                "similarity": round(float(similarity), 3),
                "thumb": f"/thumb/{sid}" if shot is not None and shot.thumbnail else None,
                "text": shot.text[:200] if shot is not None else "",
                "source": os.path.basename(shot.source) if shot is not None else "",
                "generated": bool(getattr(shot, "generated", False))}

    def _slot_dict(self, s) -> dict:
        if s.kind == "title":
            return {"kind": "title", "title": s.title, "start": round(s.start, 3), "end": round(s.end, 3)}
        d = self._shot_brief(s.shot_id, s.score, s.similarity)
        d.update({"kind": "shot", "start": round(s.start, 3), "end": round(s.end, 3),
                  "in": round(s.in_point, 3), "out": round(s.out_point, 3), "hold": round(s.hold, 3),
                  "source_kind": "generated" if d["generated"] else "retrieved"})
        return d

    def _unit_text(self, index: Any, text: Any) -> str:
        """The text of unit `index` of the current plan; `text` must match it, so a click on
        a storyboard that an edit has since replaced is refused instead of hitting another unit."""
        if self.plan is None:
            raise Conflict("the script has no units yet")
        try:
            i = int(index)
        except (TypeError, ValueError):
            raise MontageError(f"unit must be a number, not {index!r}") from None
        if not 0 <= i < len(self.plan.units):
            raise NotFound(f"no unit {index} (the script has {len(self.plan.units)})")
        u = self.plan.units[i]
        if text is not None and text != u.text:
            raise Conflict("the script changed meanwhile; try again")
        if u.kind != "text":
            raise MontageError("a heading is a title card: it has no shots to choose")
        return u.text

    def pin(self, unit: Any, shot_id: Any, text: Any = None) -> dict:
        """Pin a shot to a unit (None unpins). Pins survive re-plans."""
        with self._lock:
            t = self._unit_text(unit, text)
            if shot_id is None:
                self.session.pins.pop(t, None)
            else:
                sid = self._check_shot(shot_id)
                if sid in self.session.never_use:
                    raise Conflict(f"shot {sid} is marked never use; allow it first")
                self.session.pins[t] = sid
            try:
                return self.update()
            except MontageError as err:   # e.g. that shot is already used by an earlier unit
                self.session.pins.pop(t, None)
                self.update()
                raise Conflict(f"cannot pin shot {shot_id}: {err}") from None

    def never_use(self, shot_id: Any, never: bool = True) -> dict:
        """Mark a shot never to be used (or allow it again); pins on it are dropped."""
        with self._lock:
            sid = self._check_shot(shot_id)
            s = set(self.session.never_use)
            if never:
                s.add(sid)
                self.session.pins = {t: p for t, p in self.session.pins.items() if p != sid}
            else:
                s.discard(sid)
            self.session.never_use = sorted(s)
            self._refresh_table()
            return self.update()

    def request_generate(self, unit: Any, generate: bool = True, text: Any = None) -> dict:
        """Ask for a unit's shot to be generated instead of retrieved (the request is kept in
        the project). With the film pipeline installed, a child process generates it with the
        shipped checkpoint and the unit is pinned to the new shot; cancelling drops that shot."""
        with self._lock:
            t = self._unit_text(unit, text)
            g = [x for x in self.session.generate if x != t]
            if generate:
                g.append(t)
            self.session.generate = g
            if not generate and t in self.session.generated:
                gid = self.session.generated.pop(t).get("id")
                if self.session.pins.get(t) == gid:
                    del self.session.pins[t]
                self._rebuild_table()
                return self.update()
            self._save()
            if generate:
                self._start_generate()
            return self.storyboard()

    def _start_generate(self) -> None:
        """Generate the requested shots of the current script that have none yet (one child
        process at a time; the next batch starts when it ends)."""
        if self._generate_proc is not None and self._generate_proc.poll() is None:
            return
        todo = [t for t in self.session.generate if t not in self.session.generated and t in self._visual]
        if not todo:
            return
        if not _has_module("film.pipeline"):
            self.generate_state = JobState(state="error", message="the film pipeline is not installed: "
                                           "the request is kept in the project for `jvideo film`")
            return
        # The script travels with the jobs: the child reads its cast, so a character's shots are
        # generated from that character's reference image, as `jvideo film` does.
        jobs = {"script": self.session.script, "base": str(self.project.parent),
                "jobs": [{"unit": k, "visual": self._visual[t], "characters": self._characters.get(t, [])}
                         for k, t in enumerate(todo)]}
        self.workdir.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "studio.generate_job", "--cache", str(self.workdir / "shots"),
               "--steps", str(self.cfg.generate_steps)]
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        self._generate_proc = proc
        st = JobState(state="running", total=0, version=self.generate_state.version + 1,
                      started=time.monotonic(), message=f"generating {len(todo)} shot(s)")
        self.generate_state = st

        def feed() -> None:
            try:
                proc.stdin.write(json.dumps(jobs).encode())
                proc.stdin.close()
            except OSError:
                pass             # the child died at start; its stderr says why
        threading.Thread(target=feed, daemon=True).start()
        threading.Thread(target=self._watch_generate, args=(proc, st, todo), name="studio-generate",
                         daemon=True).start()

    def _watch_generate(self, proc: subprocess.Popen, st: JobState, todo: list[str]) -> None:
        out, err, rc = _follow(proc, st)
        st.seconds = time.monotonic() - st.started
        if rc != 0:
            st.state, st.message = "error", err or f"generation exited with {rc}"
            return
        try:
            shots = json.loads(out)["shots"]
        except (ValueError, KeyError, TypeError) as e:
            st.state, st.message = "error", f"generation gave no shots ({e})"
            return
        with self._lock:
            next_id = max([GENERATED_ID_BASE - 1] + [int(d.get("id", 0)) for d in self.session.generated.values()]) + 1
            for k, d in sorted(shots.items(), key=lambda kv: int(kv[0])):
                text = todo[int(k)]
                if text not in self.session.generate:
                    continue         # cancelled meanwhile
                d = {**d, "id": next_id, "tags": list(d.get("tags", [])) + ["studio"]}
                next_id += 1
                self.session.generated[text] = d
                self.session.pins[text] = d["id"]
            self._rebuild_table()
            self.update()
            st.state, st.message = "done", f"generated {len(shots)} shot(s) in {st.seconds:.0f} s"
            self._start_generate()   # requests made while this batch ran

    def set_settings(self, changes: dict) -> dict:
        with self._lock:
            self.session.settings = Settings.from_dict({**self.session.to_dict()["settings"], **changes})
            return self.update()

    # -- library view ----------------------------------------------------------------------
    def search(self, query: str, k: int = 24) -> list[dict]:
        """Shots by meaning (keyword + MiniLM, the planner's retrieval), never-use ones flagged."""
        if not isinstance(query, str) or not query.strip():
            raise MontageError("empty search text")
        if len(query) > 1000:
            raise MontageError("search text is longer than 1000 characters")
        k = max(1, min(int(k), 200))
        with self._lock:
            table = self._base_table
            if len(table) == 0:
                return []
            cfg = PlanConfig(top_k=k)
            c = retrieve(table, [query], self.embedder.embed([query]), cfg)[0]
            never = set(self.session.never_use)
            out = []
            for r, rel, sim in zip(c.rows, c.relevance, c.similarity):
                sid = int(table.ids[r])
                d = self._shot_brief(sid, float(rel), float(sim))
                d["never_use"] = sid in never
                out.append(d)
            return out

    def start_index(self, folder: Any) -> dict:
        """Index a footage folder into the library in a child process (`jvideo index`)."""
        if not isinstance(folder, str) or not folder.strip():
            raise MontageError("give the folder to index")
        if len(folder) > 4096 or "\0" in folder:
            raise MontageError("folder name is too long or not a path")
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise MontageError(f"folder {path} does not exist")
        with self._lock:
            if self._index_proc is not None and self._index_proc.poll() is None:
                raise Conflict("an index run is already going")
            if self.library_dir is None:
                self.library_dir = (self.workdir / "library").resolve()
                self.session.library = str(self.library_dir)
                self._save()
            self.workdir.mkdir(exist_ok=True)
            cmd = [sys.executable, "-m", "cli", "index", str(path), "--library", str(self.library_dir)]
            root = str(Path(__file__).resolve().parents[1])
            env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
            self._index_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                stdin=subprocess.DEVNULL, env=env)
            self.index_state = JobState(state="running", message=f"indexing {path}",
                                        version=self.index_state.version + 1, started=time.monotonic())
            threading.Thread(target=self._watch_index, args=(self._index_proc, self.index_state),
                             name="studio-index", daemon=True).start()
            return self.index_state.to_dict()

    def _watch_index(self, proc: subprocess.Popen, st: JobState) -> None:
        """Follow tqdm's 'n/total' on stderr; reload the library when the run ends."""
        out, last_error, rc = _follow(proc, st)
        summary = out.strip().splitlines()
        st.seconds = time.monotonic() - st.started
        if rc == 0:
            st.done = st.total = max(st.total, st.done)
            try:
                self._load_library()
                self.update()
                st.state, st.message = "done", summary[0] if summary else "indexed"
            except MontageError as err:
                st.state, st.message = "error", str(err)
        else:
            st.state, st.message = "error", last_error or f"jvideo index exited with {rc}"

    # -- rendering -------------------------------------------------------------------------
    def render_config(self):
        from montage.render import RenderConfig
        s = self.session.settings
        rcfg = RenderConfig.for_aspect(s.aspect, fps=self.cfg.fps, transition=s.transition,
                                       subtitles=s.subtitles, workers=self.cfg.render_workers)
        if self.cfg.size:
            rcfg.width, rcfg.height = self.cfg.size
            rcfg.__post_init__()
        return rcfg

    @property
    def film_path(self) -> Path:
        return self.workdir / FILM_NAME

    def _render_loop(self) -> None:
        from montage.render import render_film, render_segment, segments_for

        done_version = 0
        while True:
            with self._lock:
                while not self._stop and (self.plan_version == done_version or self.plan is None):
                    if self.plan is None and self.plan_version != done_version:
                        done_version = self.plan_version
                        self.render_state = JobState(state="idle", message="nothing to render")
                    self._render_cv.wait(timeout=1.0)
                if self._stop:
                    return
                wait = self.cfg.render_delay - (time.monotonic() - self._plan_changed_at)
                if wait > 0:      # still typing: let the plan settle first
                    self.render_state.state = "waiting"
                    self._render_cv.wait(timeout=wait)
                    continue
                version, the_plan, rcfg = self.plan_version, self.plan, self.render_config()
            cache = self.workdir / "segments"
            t0 = time.monotonic()
            try:
                cache.mkdir(parents=True, exist_ok=True)
                segments = segments_for(the_plan, rcfg)
                st = JobState(state="rendering", total=len(segments), version=version, started=t0,
                              message=f"rendering {len(segments)} shots")
                self.render_state = st
                superseded = False
                lock = threading.Lock()

                def one(seg):
                    nonlocal superseded
                    if superseded or self.plan_version != version:
                        superseded = True
                        return
                    render_segment(seg, rcfg, cache)
                    with lock:
                        st.done += 1

                with ThreadPoolExecutor(max_workers=rcfg.workers) as pool:
                    list(pool.map(one, segments))
                if superseded or self.plan_version != version:
                    continue
                st.state, st.message = "assembling", "joining the shots"
                self.workdir.mkdir(exist_ok=True)
                render_film(the_plan, self.film_path, rcfg, cache)
                st.seconds = time.monotonic() - t0
                st.state, st.message = "done", f"film of {the_plan.duration:.1f} s ready"
                done_version = version
            except MontageError as err:
                self.render_state = JobState(state="error", message=str(err), version=version)
                done_version = version
            except Exception as err:  # noqa: BLE001 - the thread must survive to render the next edit
                self.render_state = JobState(state="error", message=f"render failed: {err}",
                                             version=version)
                done_version = version

    def status(self) -> dict:
        with self._lock:
            r = self.render_state.to_dict()
            r["film"] = (f"/files/project/{FILM_NAME}?v={self.render_state.version}"
                         if self.render_state.state == "done" and self.film_path.is_file() else None)
            r["current"] = self.render_state.state == "done" and self.render_state.version == self.plan_version
            return {"version": self.plan_version, "render": r, "index": self.index_state.to_dict(),
                    "generate": self.generate_state.to_dict(),
                    "library": self.library_info(), "project": str(self.project)}

    def wait_render(self, timeout: float = 120.0) -> dict:
        """Block until the current plan's film is rendered (tests, export of a fresh edit)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.status()["render"]
            if st["current"] or (st["state"] == "error" and st["version"] == self.plan_version):
                return st
            time.sleep(0.1)
        raise MontageError(f"the film was not rendered within {timeout:.0f} s")

    # -- export ----------------------------------------------------------------------------
    def export(self, formats: Any = None) -> dict:
        """Write the chosen files into WORKDIR/export/; the MP4 is the rendered film of the
        current plan (pending while it renders). Returns their URLs."""
        from montage.subtitles import cues_from_plan, write_srt
        from montage.timeline import write_edl, write_otio

        formats = list(EXPORT_FORMATS) if formats is None else formats
        if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
            raise MontageError("formats must be a list of names")
        bad = [f for f in formats if f not in EXPORT_FORMATS]
        if bad:
            raise MontageError(f"unknown export format {bad[0]!r} (use {', '.join(EXPORT_FORMATS)})")
        with self._lock:
            if self.plan is None:
                raise Conflict("nothing to export: the script has no units yet")
            p, version = self.plan, self.plan_version
            stem = self.project.stem
            out = self.workdir / "export"
            out.mkdir(parents=True, exist_ok=True)
            rcfg = self.render_config()
            fade = rcfg.crossfade if rcfg.transition == "crossfade" else 0.0
            files, pending, errors = {}, [], {}
            for f in formats:
                if f == "srt":
                    path = write_srt(cues_from_plan(p), out / f"{stem}.srt")
                elif f == "otio":
                    path = write_otio(p, out / f"{stem}.otio", crossfade=fade)
                elif f == "edl":
                    path = write_edl(p, out / f"{stem}.edl", crossfade=fade)
                elif f == "plan":
                    path = out / f"{stem}.plan.json"
                    p.save(path)
                else:
                    st = self.render_state
                    if st.state == "error" and st.version == version:
                        errors["mp4"] = st.message      # waiting would never end
                        continue
                    if not (st.state == "done" and st.version == version and self.film_path.is_file()):
                        pending.append("mp4")
                        continue
                    path = out / f"{stem}.mp4"
                    tmp = out / f".{stem}.mp4.tmp"
                    shutil.copyfile(self.film_path, tmp)
                    os.replace(tmp, path)
                files[f] = "/files/project/" + path.relative_to(self.workdir).as_posix()
            return {"files": files, "pending": pending, "errors": errors, "version": version}

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._render_cv.notify_all()
            procs = [self._index_proc, self._generate_proc]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()   # `jvideo index` stops cleanly on SIGTERM and resumes next time
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self._render_thread is not None:
            self._render_thread.join(timeout=30)


__all__ = ["Studio", "StudioConfig", "JobState", "NotFound", "Conflict", "without_shots",
           "film_available", "MAX_SCRIPT_CHARS", "write_text_atomic"]
