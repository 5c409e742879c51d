"""Shot boundary detection on sampled frames.

Hard cuts: the colour-histogram distance between neighbouring frames (mixed with the mean
pixel change) stands out against its neighbourhood (adaptive threshold: a multiple of the
local median, plus an absolute floor). Gradual transitions (dissolves, wipes): twin comparison,
a run of moderate changes whose ends differ as much as a cut does. Fades through black: runs
of black frames split shots and belong to none.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CutConfig:
    window_s: float = 2.0        # neighbourhood of the adaptive threshold, each side
    ratio: float = 3.0           # a cut is this many times the local median change...
    floor: float = 0.15          # ...and at least this much
    hard: float = 0.55           # always a cut
    gradual_low: float = 0.04    # a frame inside a gradual transition changes at least this
    gradual_max_s: float = 3.0   # longest gradual transition
    black: float = 0.04          # mean luma (0..1) of a black frame
    min_shot_s: float = 0.75     # shorter pieces join their neighbour (or, if black, vanish)


def frame_distance(hist: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Change score of frame i against frame i-1, (T,) in 0..1 (entry 0 is 0).
    hist: (T, 512) normalised histograms; change: (T,) mean absolute luma change 0..1."""
    d = np.zeros(len(hist), np.float32)
    if len(hist) > 1:
        dh = 0.5 * np.abs(hist[1:] - hist[:-1]).sum(axis=1)
        d[1:] = 0.6 * dh + 0.4 * np.minimum(1.0, 3.0 * change[1:])
    return d


def _hist_gap(hist: np.ndarray, i: int, j: int) -> float:
    return float(0.5 * np.abs(hist[i] - hist[j]).sum())


def detect_cuts(hist: np.ndarray, change: np.ndarray, brightness: np.ndarray, sample_fps: float,
                cfg: CutConfig | None = None) -> list[tuple[int, int]]:
    """Shots as half-open ranges [a, b) of sampled frame indices, in order.

    hist (T, 512), change (T,), brightness (T,) as in features.FrameStats.
    """
    cfg = cfg or CutConfig()
    n = len(brightness)
    if n == 0:
        return []
    d = frame_distance(hist, change)
    win = max(2, int(round(cfg.window_s * sample_fps)))
    cuts: set[int] = set()
    for i in range(1, n):
        lo, hi = max(1, i - win), min(n, i + win + 1)
        neigh = np.concatenate([d[lo:max(lo, i - 1)], d[min(hi, i + 2):hi]])
        base = float(np.median(neigh)) if len(neigh) else 0.0
        local_max = d[i] >= d[i - 1] and (i + 1 >= n or d[i] >= d[i + 1])
        if d[i] >= cfg.hard or (local_max and d[i] >= max(cfg.floor, cfg.ratio * base)):
            cuts.add(i)
    cuts |= _gradual_cuts(d, hist, sample_fps, cfg, cuts)
    cuts = _collapse_runs(sorted(cuts))
    black = brightness < cfg.black
    return _segments(n, sorted(cuts), black, max(1, int(round(cfg.min_shot_s * sample_fps))))


def _gradual_cuts(d: np.ndarray, hist: np.ndarray, sample_fps: float, cfg: CutConfig,
                  hard: set[int]) -> set[int]:
    """Twin comparison: a run of frames that each change more than their surroundings usually
    do (>= gradual_low and >= twice the local median), with no hard cut inside, whose first and
    last frames differ by a cut's worth -> one cut in the run's middle. The local median keeps
    steady camera motion (a pan changes every frame by the same amount) from looking like one."""
    n = len(d)
    if n < 2:   # one sampled frame changes from nothing (and its neighbourhood median is empty)
        return set()
    longest = max(2, int(round(cfg.gradual_max_s * sample_fps)))
    win = max(4, int(round(2 * cfg.window_s * sample_fps)))
    base = np.array([np.median(d[max(1, i - win):min(n, i + win + 1)]) for i in range(n)])
    inside = (d >= np.maximum(cfg.gradual_low, 2.0 * base)) & (np.arange(n) > 0)
    out: set[int] = set()
    i = 1
    while i < n:
        if not inside[i] or i in hard:
            i += 1
            continue
        j = i
        while j + 1 < n and inside[j + 1] and (j + 1) not in hard:
            j += 1
        if 0 < j - i + 1 <= longest and j > i and _hist_gap(hist, i - 1, j) >= max(cfg.floor * 2, 0.35):
            out.add((i + j + 1) // 2)
        i = j + 1
    return out


def _collapse_runs(cuts: list[int]) -> set[int]:
    """Cuts on consecutive frames are one transition seen several times (a quick dissolve):
    keep its middle."""
    out: set[int] = set()
    i = 0
    while i < len(cuts):
        j = i
        while j + 1 < len(cuts) and cuts[j + 1] == cuts[j] + 1:
            j += 1
        out.add((cuts[i] + cuts[j] + 1) // 2)
        i = j + 1
    return out


def _segments(n: int, cuts: list[int], black: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """Split [0, n) at cuts, drop black frames, join short pieces to the previous piece."""
    pieces: list[tuple[int, int]] = []
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    for a, b in zip(bounds[:-1], bounds[1:]):
        start = a
        for i in range(a, b + 1):       # split each piece around runs of black frames
            if i == b or black[i]:
                if i > start:
                    pieces.append((start, i))
                start = i + 1
    if not pieces:                      # all black: one shot, so the file is still listed
        return [(0, n)]
    merged: list[tuple[int, int]] = []
    for a, b in pieces:
        if merged and b - a < min_len and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        elif b - a < min_len and merged:
            continue                    # a short piece after black: a fade remnant
        else:
            merged.append((a, b))
    if len(merged) > 1 and merged[0][1] - merged[0][0] < min_len and merged[0][1] == merged[1][0]:
        merged[1] = (merged[0][0], merged[1][1])
        merged.pop(0)
    return merged


def to_times(ranges: list[tuple[int, int]], n: int, sample_fps: float, duration: float,
             slack: float = 0.0, frame_s: float = 0.0) -> list[tuple[float, float]]:
    """Frame ranges -> (start, end) seconds, kept inside the shot.

    A cut found between sampled frames i-1 and i lies somewhere between their times, so the
    next shot starts at frame i's time and the previous one ends one source frame (`frame_s`)
    after frame i-1's time: no shot shows a frame of its neighbour, at the price of under one
    sampling interval. `slack` is how far a sample's true time may be from i / sample_fps
    (decoding that skips B-frames takes the nearest decoded frame); both ends move in by it.
    """
    out = []
    for a, b in ranges:
        start = 0.0 if a == 0 else a / sample_fps + slack
        end = duration if b >= n else (b - 1) / sample_fps + frame_s - slack
        end = min(end, duration) if duration > 0 else end
        if end > start:
            out.append((round(start, 3), round(end, 3)))
    return out
