"""The Write-a-video optimiser: choose shots and in/out points for text units.

Each unit (a sentence or clause with a duration) is cut into one or more *slots*, one shot each:
the pace idiom sets the slot length. The plan minimises, over all slots,

    unary(slot, shot)    = semantic mismatch + quality penalty (dark, blurry, shaky)
                           + duration misfit (shot shorter than its slot) + movement idiom
    transition(a -> b)   = colour (Lab) and brightness jumps + camera-motion clash
                           + jump cut (adjacent pieces of one source, similar framing)
                           + the same source twice in a row
    reuse                = a shot never twice (hard); a source again within `source_gap`
                           slots (penalty)

Unary and transition terms are Markov, so Viterbi dynamic programming solves them exactly; the
reuse terms look further back. We run Viterbi first: if its path already respects reuse it is
the exact optimum of the full objective (reuse only removes or penalises paths). Otherwise a beam
search over (path, used shots) states solves the full objective approximately; the plan says
which solver answered.

Storage-free: the planner takes a `ShotTable` (columns of shot features + unit embeddings) and
units with durations, so the film pipeline can plan generated shots with the same code.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import MontageError
from .text import Unit, keywords

CAMERA_CODES = {"static": 0, "pan": 1, "zoom": 2}
PACE_SECONDS = {"slow": 6.0, "normal": 4.0, "fast": 2.2}
PLAN_VERSION = 1
INF = float("inf")


# -- configuration -------------------------------------------------------------------------
@dataclass
class PlanConfig:
    """Weights and idioms of the optimiser. All costs are dimensionless, ~0..1 per term."""
    pace: str = "normal"                 # slow | normal | fast: target shot length
    movement: str | None = None          # None | "less" | "more"
    top_k: int = 24                      # candidates per unit after re-ranking
    beam: int = 32                       # beam width for the reuse constraint
    fps: float = 24.0                    # the film's frame rate: times snap to frames
    title_seconds: float = 2.0           # a heading's title card
    min_similarity: float = 0.25         # below: "no good match" (noted in the plan)
    fallback: str = "best"               # "best" available shot or a "title" card
    source_gap: int = 4                  # a source clip again only this many slots apart
    keyword_bonus: float = 0.15          # relevance = cosine + bonus * matched keyword share
    w_semantic: float = 3.0
    w_quality: float = 0.6
    w_duration: float = 1.2
    w_movement: float = 0.4
    w_colour: float = 0.3
    w_brightness: float = 0.3
    w_camera: float = 0.2
    w_jump: float = 1.0
    w_source: float = 0.6                # same source within source_gap slots
    edge_margin: float = 0.15            # seconds kept off each shot's ends when trimming

    def __post_init__(self) -> None:
        if self.pace not in PACE_SECONDS:
            raise MontageError(f"unknown pace {self.pace!r} (use slow, normal or fast)")
        if self.movement not in (None, "less", "more"):
            raise MontageError(f"unknown movement {self.movement!r} (use less or more)")
        if self.fallback not in ("best", "title"):
            raise MontageError(f"unknown fallback {self.fallback!r} (use best or title)")
        if self.fps <= 0 or self.top_k < 1 or self.beam < 1:
            raise MontageError("fps, top_k and beam must be positive")

    def signature(self) -> str:
        """Hash of every setting: a cached plan is reused only under the same settings."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


# -- shots as columns ------------------------------------------------------------------------
@dataclass
class ShotTable:
    """Shot features as arrays, row-aligned. N shots, D-dim unit embeddings.

    ids (N,) int64; vectors (N, D) float32; start/end/duration/brightness/sharpness/motion (N,);
    lab (N, 3); camera (N,) int8 (0 static, 1 pan, 2 zoom); source_idx (N,) int32 into `sources`.
    """
    ids: np.ndarray
    vectors: np.ndarray
    start: np.ndarray
    end: np.ndarray
    brightness: np.ndarray
    sharpness: np.ndarray
    motion: np.ndarray
    lab: np.ndarray
    camera: np.ndarray
    source_idx: np.ndarray
    sources: list[str]
    texts: list[str]
    kw_index: dict[str, np.ndarray] = field(default_factory=dict)
    signature: str = ""

    @property
    def duration(self) -> np.ndarray:
        return self.end - self.start

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_shots(cls, shots: Sequence[Any], vectors: np.ndarray) -> "ShotTable":
        """Build from Shot-like objects (montage.library.Shot) and their (N, D) embeddings."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(shots) != len(vectors):
            raise MontageError(f"{len(shots)} shots but {len(vectors)} embeddings")
        src_of: dict[str, int] = {}
        source_idx = np.fromiter((src_of.setdefault(s.source, len(src_of)) for s in shots),
                                 dtype=np.int32, count=len(shots))
        f = lambda attr: np.fromiter((float(getattr(s, attr)) for s in shots), np.float64, len(shots))  # noqa: E731
        lab = np.asarray([tuple(s.lab) for s in shots], dtype=np.float64).reshape(len(shots), 3)
        camera = np.fromiter((CAMERA_CODES.get(s.camera, 0) for s in shots), np.int8, len(shots))
        table = cls(ids=np.fromiter((int(s.id) for s in shots), np.int64, len(shots)),
                    vectors=vectors.reshape(len(shots), vectors.shape[-1] if vectors.ndim == 2 else 0),
                    start=f("start"), end=f("end"),
                    brightness=f("brightness"), sharpness=f("sharpness"), motion=f("motion"),
                    lab=lab, camera=camera, source_idx=source_idx, sources=list(src_of),
                    texts=[str(s.text) for s in shots])
        table.kw_index = _keyword_index(table.texts)
        h = hashlib.sha1()
        for s in shots:
            h.update(f"{s.id}|{s.source}|{s.start:.4f}|{s.end:.4f}|{s.text}\n".encode("utf-8"))
        table.signature = h.hexdigest()
        return table

    def row_of(self) -> dict[int, int]:
        """shot id -> row (built once per table)."""
        if not hasattr(self, "_row_of"):
            self._row_of = dict(zip(self.ids.tolist(), range(len(self.ids))))
        return self._row_of


def _keyword_index(texts: list[str]) -> dict[str, np.ndarray]:
    """stem -> rows whose text holds it (first stage of cascaded retrieval)."""
    index: dict[str, list[int]] = {}
    for r, t in enumerate(texts):
        for w in keywords(t):
            index.setdefault(w, []).append(r)
    return {w: np.asarray(rows, dtype=np.int64) for w, rows in index.items()}


# -- retrieval -------------------------------------------------------------------------------
@dataclass
class Candidates:
    """Top candidates of one unit: rows into the ShotTable, relevance = cosine + keyword bonus."""
    rows: np.ndarray          # (K,) int64
    relevance: np.ndarray     # (K,) float64
    similarity: np.ndarray    # (K,) cosine
    keyword_share: np.ndarray  # (K,) fraction of the unit's keywords found in the shot text
    good: bool                # at least one candidate clears min_similarity


def retrieve(table: ShotTable, unit_texts: Sequence[str], unit_vecs: np.ndarray,
             cfg: PlanConfig) -> list[Candidates]:
    """Cascaded retrieval: keyword matches and embedding neighbours, re-ranked by relevance.

    unit_vecs: (U, D) unit rows. Returns one Candidates per unit (K <= cfg.top_k).
    """
    n = len(table)
    if n == 0:
        return [Candidates(*(np.zeros(0, t) for t in (np.int64, float, float, float)), good=False)
                for _ in unit_texts]
    sims = np.asarray(unit_vecs, np.float32) @ table.vectors.T          # (U, N)
    k = min(cfg.top_k, n)
    # Stage 1: keyword hits (share of the unit's stemmed content words found in the shot text).
    share = np.zeros(sims.shape, dtype=np.float32)
    for u, text in enumerate(unit_texts):
        words = keywords(text)
        for w in words:
            rows = table.kw_index.get(w)
            if rows is not None:
                share[u, rows] += 1.0 / len(words)
    # Stage 2: embedding similarity re-ranks the pool; keyword hits get a bonus.
    rel = sims + np.float32(cfg.keyword_bonus) * share
    top = np.argpartition(-rel, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(rel), 1))
    out = []
    for u in range(len(unit_texts)):
        t = top[u][np.argsort(-rel[u, top[u]], kind="stable")]
        sim = sims[u, t].astype(np.float64)
        out.append(Candidates(rows=t.astype(np.int64), relevance=rel[u, t].astype(np.float64),
                              similarity=sim, keyword_share=share[u, t].astype(np.float64),
                              good=bool(sim.max() >= cfg.min_similarity)))
    return out


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class PlannedShot:
    """One slot of the film: a piece of a source shot (or a title card) on the timeline."""
    kind: str                 # "shot" | "title"
    start: float              # timeline seconds
    end: float
    shot_id: int | None = None
    source: str | None = None
    in_point: float = 0.0     # seconds in the source
    out_point: float = 0.0
    hold: float = 0.0         # seconds the last frame is held (shot shorter than its slot)
    score: float = 0.0        # relevance to the unit's text
    similarity: float = 0.0
    title: str = ""           # text of a title card
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"kind": self.kind, "shot_id": self.shot_id, "source": self.source,
                "in": round(self.in_point, 4), "out": round(self.out_point, 4),
                "start": round(self.start, 4), "end": round(self.end, 4), "hold": round(self.hold, 4),
                "score": round(self.score, 4), "similarity": round(self.similarity, 4),
                "title": self.title, "costs": {k: round(v, 4) for k, v in self.costs.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "PlannedShot":
        return cls(kind=d["kind"], start=d["start"], end=d["end"], shot_id=d.get("shot_id"),
                   source=d.get("source"), in_point=d.get("in", 0.0), out_point=d.get("out", 0.0),
                   hold=d.get("hold", 0.0), score=d.get("score", 0.0),
                   similarity=d.get("similarity", 0.0), title=d.get("title", ""),
                   costs=dict(d.get("costs", {})))


@dataclass
class PlannedUnit:
    index: int
    text: str
    kind: str
    start: float
    end: float
    key: str
    shots: list[PlannedShot]
    note: str = ""
    # Machine-readable match state (the film pipeline generates shots for "weak"/"none"):
    # "good" | "weak" (best available below min_similarity) | "none" (title card instead)
    # | "pinned" | "title" (a heading).
    match: str = "good"
    # Retrieval result, kept so a re-plan skips retrieval for unchanged (or moved) sentences:
    # (shot id, relevance, cosine similarity), best first.
    candidates: list[tuple[int, float, float]] = field(default_factory=list)
    # What the subtitles show for this unit: None means its text (a narrated montage); the
    # film pipeline retrieves by what a shot shows but subtitles only dialogue ("" = none).
    caption: str | None = None

    @property
    def subtitle(self) -> str:
        if self.kind != "text":
            return ""
        return self.text if self.caption is None else self.caption

    def to_dict(self) -> dict:
        return {"index": self.index, "text": self.text, "kind": self.kind,
                "start": round(self.start, 4), "end": round(self.end, 4), "key": self.key,
                "note": self.note, "match": self.match, "candidates": [[i, round(r, 5), round(c, 5)] for i, r, c in self.candidates],
                "caption": self.caption, "shots": [s.to_dict() for s in self.shots]}

    @classmethod
    def from_dict(cls, d: dict) -> "PlannedUnit":
        return cls(index=d["index"], text=d["text"], kind=d["kind"], start=d["start"], end=d["end"],
                   key=d["key"], note=d.get("note", ""), match=d.get("match", "good"),
                   candidates=[(int(c[0]), float(c[1]), float(c[-1])) for c in d.get("candidates", [])],
                   caption=d.get("caption"),
                   shots=[PlannedShot.from_dict(s) for s in d["shots"]])


@dataclass
class Plan:
    units: list[PlannedUnit]
    duration: float
    fps: float
    solver: str               # "viterbi-exact" | "beam" | "none"
    cost: float
    config: dict
    config_signature: str = ""
    library_signature: str = ""
    replanned_from: int = 0   # first unit the optimiser re-solved (0 = whole plan)
    seconds: float = 0.0      # planning time

    def slots(self) -> list[PlannedShot]:
        return [s for u in self.units for s in u.shots]

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, "duration": round(self.duration, 4), "fps": self.fps,
                "solver": self.solver, "cost": round(self.cost, 4), "replanned_from": self.replanned_from,
                "planning_seconds": round(self.seconds, 4), "config": self.config,
                "config_signature": self.config_signature, "library_signature": self.library_signature,
                "units": [u.to_dict() for u in self.units]}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if d.get("version") != PLAN_VERSION:
            raise MontageError(f"plan version {d.get('version')} is not {PLAN_VERSION}")
        return cls(units=[PlannedUnit.from_dict(u) for u in d["units"]], duration=d["duration"],
                   fps=d["fps"], solver=d["solver"], cost=d["cost"], config=d["config"],
                   config_signature=d.get("config_signature", ""),
                   library_signature=d.get("library_signature", ""),
                   replanned_from=d.get("replanned_from", 0), seconds=d.get("planning_seconds", 0.0))

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise MontageError(f"cannot read plan {path}: {err}") from err


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temp file in the same folder (never half-written)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise MontageError(f"cannot write {path}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except OSError as err:
        raise MontageError(f"cannot write {path}: {err.strerror}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- timing ----------------------------------------------------------------------------------
def snap(t: float, fps: float) -> float:
    """Seconds rounded to the nearest frame."""
    return round(t * fps) / fps


@dataclass
class _Slot:
    unit: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def unit_times(units: Sequence[Unit], cfg: PlanConfig) -> list[tuple[float, float]]:
    """(start, end) of each unit, on frame boundaries; a unit lasts `unit.duration` seconds
    (titles cfg.title_seconds). Cumulative rounding keeps each start within half a frame of the
    exact sum of durations, so the picture follows the voice."""
    out, t = [], 0.0
    for u in units:
        d = cfg.title_seconds if (u.kind == "title" and u.duration is None) else u.duration
        if d is None or d <= 0:
            raise MontageError(f"unit {u.text[:40]!r} has no duration")
        s, e = snap(t, cfg.fps), snap(t + d, cfg.fps)
        out.append((s, max(e, s + 1.0 / cfg.fps)))
        t += d
    return out


def _slots(units: Sequence[Unit], times: list[tuple[float, float]], cfg: PlanConfig,
           budget: int | None = None) -> list[_Slot]:
    """Cut each unit into ~pace-length slots on frame boundaries. When the pace asks for more
    shots than `budget` (the library's), every unit gets one shot instead."""
    slots = []
    target = PACE_SECONDS[cfg.pace]
    counts = [1 if u.kind == "title" or u.pin is not None else max(1, int(round((e - s) / target)))
              for u, (s, e) in zip(units, times)]
    if budget is not None and sum(c for c, u in zip(counts, units) if u.kind == "text") > budget:
        counts = [1] * len(units)
    for i, (n, (s, e)) in enumerate(zip(counts, times)):
        edges = [snap(s + (e - s) * j / n, cfg.fps) for j in range(n + 1)]
        slots += [_Slot(i, a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return slots


# -- costs -----------------------------------------------------------------------------------
def unary_costs(table: ShotTable, rows: np.ndarray, relevance: np.ndarray, slot_seconds: float,
                cfg: PlanConfig) -> dict[str, np.ndarray]:
    """Per-candidate cost terms for one slot. rows, relevance: (K,). Returns name -> (K,)."""
    dark = np.clip((0.2 - table.brightness[rows]) / 0.2, 0, 1)
    blurry = np.clip((0.25 - table.sharpness[rows]) / 0.25, 0, 1)
    shaky = np.clip((table.motion[rows] - 0.6) / 0.4, 0, 1)
    short = np.clip((slot_seconds - table.duration[rows]) / max(slot_seconds, 1e-6), 0, 1)
    if cfg.movement == "more":
        move = 1.0 - table.motion[rows]
    elif cfg.movement == "less":
        move = table.motion[rows]
    else:
        move = np.zeros(len(rows))
    return {"semantic": cfg.w_semantic * (1.0 - np.clip(relevance, -1, 1)),
            "quality": cfg.w_quality * (dark + blurry + shaky),
            "duration": cfg.w_duration * short,
            "movement": cfg.w_movement * move}


def transition_costs(table: ShotTable, a: np.ndarray, b: np.ndarray,
                     cfg: PlanConfig) -> dict[str, np.ndarray]:
    """Cost terms of cutting from rows a (A,) to rows b (B,). Returns name -> (A, B)."""
    lab_a, lab_b = table.lab[a][:, None, :], table.lab[b][None, :, :]
    delta_e = np.sqrt(((lab_a - lab_b) ** 2).sum(-1))
    bright = np.abs(table.brightness[a][:, None] - table.brightness[b][None, :])
    cam_a, cam_b = table.camera[a][:, None], table.camera[b][None, :]
    clash = ((cam_a != cam_b) & (cam_a > 0) & (cam_b > 0)).astype(np.float64)
    same_src = table.source_idx[a][:, None] == table.source_idx[b][None, :]
    # Adjacent pieces of one source (gap under a second, either order) with similar framing.
    gap = np.minimum(np.abs(table.start[b][None, :] - table.end[a][:, None]),
                     np.abs(table.start[a][:, None] - table.end[b][None, :]))
    jump = same_src & (gap < 1.0) & (delta_e < 12.0)
    return {"colour": cfg.w_colour * np.minimum(delta_e / 60.0, 1.0),
            "brightness": cfg.w_brightness * bright,
            "camera": cfg.w_camera * clash,
            "jump": cfg.w_jump * jump,
            "source": cfg.w_source * same_src}


def _sum_terms(terms: dict[str, np.ndarray]) -> np.ndarray:
    return sum(terms.values())


# -- solvers ---------------------------------------------------------------------------------
def _viterbi(unary: list[np.ndarray], trans: list[np.ndarray], cand_ids: list[np.ndarray],
             init: np.ndarray) -> tuple[list[int], float]:
    """Exact DP over slots. unary[s]: (K_s,); trans[s]: (K_{s-1}, K_s) (trans[0] unused);
    init: (K_0,) cost of entering slot 0. The same shot in two consecutive slots is forbidden.
    Returns the chosen candidate index per slot and the path cost."""
    score = init + unary[0]
    back = []
    for s in range(1, len(unary)):
        t = trans[s] + np.where(cand_ids[s - 1][:, None] == cand_ids[s][None, :], INF, 0.0)
        total = score[:, None] + t                                    # (K_{s-1}, K_s)
        arg = np.argmin(total, axis=0)
        back.append(arg)
        score = total[arg, np.arange(total.shape[1])] + unary[s]
    best = int(np.argmin(score))
    cost = float(score[best])
    path = [best]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1], cost


def _older(recent: Sequence[int], gap: int) -> list[int]:
    """Sources 2..gap-1 slots back (the previous slot's source is Markov, priced in trans)."""
    return list(recent[-(gap - 1):-1]) if gap > 2 else []


def _feasible(path_ids: Sequence[int], path_src: Sequence[int], used: set[int],
              recent: Sequence[int], gap: int) -> bool:
    """True when a path has no non-Markov cost: no shot twice (ids < 0 are title cards) and
    no source again 2..gap-1 slots later."""
    seen = set(used)
    src = list(recent)
    for i, s in zip(path_ids, path_src):
        if i >= 0:
            if i in seen:
                return False
            seen.add(i)
        if s >= 0 and s in _older(src, gap):
            return False
        src.append(s)
    return True


def _beam(unary: list[np.ndarray], trans: list[np.ndarray], cand_ids: list[np.ndarray],
          cand_src: list[np.ndarray], init: np.ndarray, used: set[int], recent: list[int],
          width: int, gap: int, w_source: float) -> tuple[list[int], float]:
    """Beam search over the full objective: Markov costs + no shot twice (hard) + a source
    again 2..gap-1 slots later (w_source per repeat). Expansions are scored as a (B, K) array;
    only the `width` survivors get their own used-shot set; paths are kept as back-pointers."""
    keep = max(gap - 2, 0)                         # sources 2..gap-1 slots back
    costs = np.zeros(1)
    last = np.zeros(1, dtype=np.int64)             # candidate index chosen in the previous slot
    used_sets: list[set[int]] = [set(used)]
    prev_src = np.asarray([recent[-1] if recent else -1])
    older = np.asarray([list(recent[-(keep + 1):-1]) if keep else []], dtype=np.int64).reshape(1, -1)
    older = np.pad(older, ((0, 0), (keep - older.shape[1], 0)), constant_values=-1)
    back: list[tuple[np.ndarray, np.ndarray]] = []
    for s in range(len(unary)):
        ids, srcs = cand_ids[s], cand_src[s]
        step = (init[None, :] if s == 0 else trans[s][last]) + unary[s][None, :] + costs[:, None]
        id_list = ids.tolist()
        taken = np.array([[i >= 0 and i in u for i in id_list] for u in used_sets], dtype=bool)
        step = np.where(taken, INF, step)
        if keep:
            repeats = ((srcs[None, :, None] == older[:, None, :]) & (srcs[None, :, None] >= 0)).sum(-1)
            step = step + w_source * repeats
        flat = step.ravel()
        n = min(width, int(np.isfinite(flat).sum()))
        if n == 0:
            raise MontageError("no shot left to use: the library has fewer usable shots than the "
                               "film needs (add footage or use --pace slow)")
        top = np.argpartition(flat, n - 1)[:n] if n < len(flat) else np.arange(len(flat))
        top = top[np.argsort(flat[top], kind="stable")][:n]
        parent, k = np.divmod(top, step.shape[1])
        back.append((parent, k))
        costs, last = flat[top], k
        used_sets = [used_sets[p] | {int(ids[j])} if ids[j] >= 0 else used_sets[p]
                     for p, j in zip(parent.tolist(), k.tolist())]
        if keep:
            older = np.concatenate([older[parent], prev_src[parent][:, None]], axis=1)[:, -keep:]
        prev_src = srcs[k]
    # Follow the back-pointers of the best final state.
    path, b = [], 0
    for parent, k in reversed(back):
        path.append(int(k[b]))
        b = int(parent[b])
    return path[::-1], float(costs[0])


# -- planning --------------------------------------------------------------------------------
def _in_out(table: ShotTable, row: int, seconds: float, cfg: PlanConfig) -> tuple[float, float, float]:
    """In/out points for `seconds` of a shot: the middle of the shot (the stable part, away
    from cut-detection slop and fades at its ends). Returns (in, out, hold)."""
    start, end = float(table.start[row]), float(table.end[row])
    dur = end - start
    if dur <= seconds:
        return start, end, seconds - dur
    margin = min(cfg.edge_margin, (dur - seconds) / 2)
    lo, hi = start + margin, end - margin
    mid = (lo + hi) / 2
    a = max(lo, mid - seconds / 2)
    return a, a + seconds, 0.0


def plan(units: Sequence[Unit], table: ShotTable, unit_vecs: np.ndarray,
         cfg: PlanConfig | None = None, previous: Plan | None = None) -> Plan:
    """Choose shots for units.

    units: with durations set (titles may leave it None); unit_vecs: (U, D) embeddings of the
    unit texts (rows of title units are ignored); previous: an earlier plan of the same library
    and settings - units before the first changed one keep their shots and only the rest is
    re-solved (the paper's text-driven editing).
    """
    t0 = time.perf_counter()
    cfg = cfg or PlanConfig()
    units = list(units)
    if not units:
        raise MontageError("nothing to plan: no units")
    unit_vecs = np.asarray(unit_vecs, dtype=np.float32).reshape(len(units), -1)
    times = unit_times(units, cfg)
    keys = [u.key() for u in units]
    row_of = table.row_of()
    compatible = (previous is not None and previous.config_signature == cfg.signature()
                  and previous.library_signature == table.signature)
    first = _unchanged_prefix(previous, keys, row_of) if compatible else 0
    kept = previous.units[:first] if compatible else []
    if compatible and first == len(units) == len(previous.units):
        out = Plan(**{**previous.__dict__})
        out.replanned_from, out.seconds = first, time.perf_counter() - t0
        return out

    todo = [s for s in _slots(units, times, cfg, budget=len(table)) if s.unit >= first]
    prev_rows = [row_of[s.shot_id] if s.shot_id is not None else -1 for u in kept for s in u.shots]
    cands = _unit_candidates(units, first, table, unit_vecs, cfg, previous if compatible else None)
    choices, notes = _slot_choices(todo, units, cands, table, unit_vecs, cfg)
    shots, solver = [], (previous.solver if kept else "none")
    if todo:
        shots, solver = _solve(todo, units, choices, table, prev_rows, cfg)

    planned = list(kept)
    by_unit: dict[int, list[PlannedShot]] = {}
    for sl, shot in zip(todo, shots):
        by_unit.setdefault(sl.unit, []).append(shot)
    for i in range(first, len(units)):
        c = cands.get(i)
        top = ([(int(table.ids[r]), float(v), float(m)) for r, v, m in zip(c.rows, c.relevance, c.similarity)]
               if c else [])
        note, match = notes.get(i, ("", "title" if units[i].kind == "title" else "good"))
        planned.append(PlannedUnit(index=i, text=units[i].text, kind=units[i].kind, start=times[i][0],
                                   end=times[i][1], key=keys[i], shots=by_unit.get(i, []),
                                   note=note, match=match, candidates=top))
    total_cost = sum(s.costs.get("total", 0.0) for u in planned for s in u.shots)
    return Plan(units=planned, duration=times[-1][1], fps=cfg.fps, solver=solver, cost=total_cost,
                config=asdict(cfg), config_signature=cfg.signature(),
                library_signature=table.signature, replanned_from=first,
                seconds=time.perf_counter() - t0)


def _unchanged_prefix(previous: Plan, keys: list[str], row_of: dict[int, int]) -> int:
    """How many leading units equal the previous plan's (same key, shots still in the library)."""
    first = 0
    while (first < min(len(keys), len(previous.units)) and previous.units[first].key == keys[first]
           and all(s.shot_id is None or s.shot_id in row_of for s in previous.units[first].shots)):
        first += 1
    return first


def _unit_candidates(units: list[Unit], first: int, table: ShotTable, unit_vecs: np.ndarray,
                     cfg: PlanConfig, previous: Plan | None) -> dict[int, Candidates]:
    """Candidates of each text unit from `first` on. Sentences the previous plan already
    retrieved (unchanged or moved) reuse its candidates; the rest go through `retrieve`."""
    row_of = table.row_of()
    todo = [i for i in range(first, len(units)) if units[i].kind == "text" and units[i].pin is None]
    known = ({u.text: u.candidates for u in previous.units if u.kind == "text" and u.candidates}
             if previous is not None else {})
    cands: dict[int, Candidates] = {}
    for i in todo:
        c = known.get(units[i].text)
        if c and all(sid in row_of for sid, _, _ in c):
            sim = np.array([x[2] for x in c])
            cands[i] = Candidates(rows=np.array([row_of[x[0]] for x in c], dtype=np.int64),
                                  relevance=np.array([x[1] for x in c]), similarity=sim,
                                  keyword_share=np.zeros(len(c)),
                                  good=bool(sim.max() >= cfg.min_similarity))
    fresh = [i for i in todo if i not in cands]
    if fresh:
        cands.update(zip(fresh, retrieve(table, [units[i].text for i in fresh], unit_vecs[fresh], cfg)))
    return cands


@dataclass
class _Choices:
    """Per slot: candidate rows (-1 = title card), relevance and cosine similarity, (K_s,)."""
    rows: list[np.ndarray]
    relevance: list[np.ndarray]
    similarity: list[np.ndarray]


def _slot_choices(todo: list[_Slot], units: list[Unit], cands: dict[int, Candidates],
                  table: ShotTable, unit_vecs: np.ndarray, cfg: PlanConfig
                  ) -> tuple[_Choices, dict[int, tuple[str, str]]]:
    """What each slot may show: titles and empty libraries a title card, pins their shot,
    text units their candidates (or a title card under fallback="title" when none is good).
    Returns the choices and (note, match state) per unit that needed explaining."""
    row_of = table.row_of()
    title = (np.array([-1]), np.zeros(1), np.zeros(1))
    notes: dict[int, tuple[str, str]] = {}
    out = _Choices([], [], [])
    for sl in todo:
        u = units[sl.unit]
        if u.kind == "title" or len(table) == 0:
            rows, rel, sim = title
            if u.kind != "title":
                notes[sl.unit] = ("no footage in the library: title card", "none")
        elif u.pin is not None:
            if u.pin not in row_of:
                raise MontageError(f"unit {u.text[:40]!r} is pinned to shot {u.pin}, "
                                   "which the library does not have")
            r = row_of[u.pin]
            s = float(table.vectors[r] @ unit_vecs[sl.unit])
            rows, rel, sim = np.array([r]), np.array([s]), np.array([s])
            notes[sl.unit] = (f"pinned to shot {u.pin}", "pinned")
        else:
            c = cands[sl.unit]
            rows, rel, sim = c.rows, c.relevance, c.similarity
            if not c.good:
                best = float(c.similarity.max()) if len(c.similarity) else 0.0
                if cfg.fallback == "title":
                    rows, rel, sim = title
                    notes[sl.unit] = (f"no good match (best similarity {best:.2f}): title card", "none")
                else:
                    notes[sl.unit] = (f"no good match (best similarity {best:.2f}): best available used",
                                      "weak")
        out.rows.append(rows)
        out.relevance.append(rel)
        out.similarity.append(sim)
    return out, notes


def _solve(todo: list[_Slot], units: list[Unit], ch: _Choices, table: ShotTable,
           prev_rows: list[int], cfg: PlanConfig) -> tuple[list[PlannedShot], str]:
    """Optimise the slots after a kept prefix (whose rows are `prev_rows`): Viterbi, and the
    beam when Viterbi's path breaks a reuse rule. Returns the planned shots and the solver."""
    used = {int(table.ids[r]) for r in prev_rows if r >= 0}
    recent_src = [int(table.source_idx[r]) if r >= 0 else -1 for r in prev_rows][-cfg.source_gap:]
    prev = prev_rows[-1] if prev_rows else -1
    unary_terms = [_unary_with_titles(table, rows, rel, sl.duration, cfg)
                   for sl, rows, rel in zip(todo, ch.rows, ch.relevance)]
    init_terms = _trans_with_titles(table, np.array([prev]), ch.rows[0], cfg)
    trans_terms = [init_terms] + [_trans_with_titles(table, ch.rows[s - 1], ch.rows[s], cfg)
                                  for s in range(1, len(todo))]
    unary = [_sum_terms(t) for t in unary_terms]
    trans = [None] + [_sum_terms(t) for t in trans_terms[1:]]
    init = _sum_terms(init_terms)[0]
    has_shots = len(table) > 0
    cand_ids = [np.where(r >= 0, table.ids[np.maximum(r, 0)], -1) if has_shots else np.full(len(r), -1)
                for r in ch.rows]
    cand_src = [np.where(r >= 0, table.source_idx[np.maximum(r, 0)], -1) if has_shots else
                np.full(len(r), -1) for r in ch.rows]
    if prev >= 0:  # the shot that ends the kept prefix may not continue either
        init = init + np.where(cand_ids[0] == table.ids[prev], INF, 0.0)
    path, cost = _viterbi(unary, trans, cand_ids, init)
    ids_path = [int(cand_ids[s][k]) for s, k in enumerate(path)]
    src_path = [int(cand_src[s][k]) for s, k in enumerate(path)]
    if math.isfinite(cost) and _feasible(ids_path, src_path, used, recent_src, cfg.source_gap):
        solver = "viterbi-exact"
    else:
        path, cost = _beam(unary, trans, cand_ids, cand_src, init, used, recent_src,
                           cfg.beam, cfg.source_gap, cfg.w_source)
        solver = "beam"

    # Each cut with the cost terms that chose it.
    shots, recent = [], list(recent_src)
    for s, (sl, k) in enumerate(zip(todo, path)):
        r = int(ch.rows[s][k])
        terms = {name: float(v[k]) for name, v in unary_terms[s].items()}
        kprev = 0 if s == 0 else path[s - 1]
        terms.update({name: float(v[kprev, k]) for name, v in trans_terms[s].items()})
        if r >= 0:
            src = int(table.source_idx[r])
            terms["source_reuse"] = cfg.w_source * _older(recent, cfg.source_gap).count(src)
            a, b, hold = _in_out(table, r, sl.duration, cfg)
            shot = PlannedShot(kind="shot", start=sl.start, end=sl.end, shot_id=int(table.ids[r]),
                               source=table.sources[src], in_point=a, out_point=b, hold=hold,
                               score=float(ch.relevance[s][k]), similarity=float(ch.similarity[s][k]))
            recent.append(src)
        else:
            shot = PlannedShot(kind="title", start=sl.start, end=sl.end, title=units[sl.unit].text)
            recent.append(-1)
        terms["total"] = sum(terms.values())
        shot.costs = terms
        shots.append(shot)
    return shots, solver


def _unary_with_titles(table: ShotTable, rows: np.ndarray, rel: np.ndarray, seconds: float,
                       cfg: PlanConfig) -> dict[str, np.ndarray]:
    """Unary terms where a title card (row -1) costs nothing: it is the only choice it has."""
    shot = rows >= 0
    terms = {k: np.zeros(len(rows)) for k in ("semantic", "quality", "duration", "movement")}
    if shot.any():
        sub = unary_costs(table, rows[shot], rel[shot], seconds, cfg)
        for k, v in sub.items():
            terms[k][shot] = v
    return terms


def _trans_with_titles(table: ShotTable, a: np.ndarray, b: np.ndarray,
                       cfg: PlanConfig) -> dict[str, np.ndarray]:
    """Transition terms; a cut to or from a title card (row -1) is free."""
    ma, mb = a >= 0, b >= 0
    if ma.all() and mb.all():
        return transition_costs(table, a, b, cfg)
    names = ("colour", "brightness", "camera", "jump", "source")
    terms = {k: np.zeros((len(a), len(b))) for k in names}
    if ma.any() and mb.any():
        sub = transition_costs(table, a[ma], b[mb], cfg)
        ia, ib = np.nonzero(ma)[0], np.nonzero(mb)[0]
        for k, v in sub.items():
            terms[k][np.ix_(ia, ib)] = v
    return terms
