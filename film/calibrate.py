"""Calibrate the generation threshold: when does the library "have" a shot?

On the toy world, where the truth is known: a library of captioned clips (caption + tags, as
`jvideo toyworld library` writes them and `jvideo index` reads them) and queries in held-out
phrasings. A library shot *fits* a query when it shows the same subject (the same named
character, or the same colour and shape), the same motion and the same place. For each query we
measure the relevance the planner gives (MiniLM cosine + keyword bonus) to the best fitting
shot, and to the best shot when the library holds no fitting one. The threshold that best separates the two is what
`jvideo film` uses to decide between retrieving and generating.

`jvideo bench film-threshold [--queries N] [--library N] [--json F] [--plot F.png]`
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Calibration:
    queries: int
    library: int
    threshold: float
    balanced_accuracy: float
    true_positive_rate: float     # fitting shot present, and its relevance clears the threshold
    true_negative_rate: float     # no fitting shot, and the best relevance stays below
    positives: list[float]
    negatives: list[float]


def _subject(p) -> str:
    return p.name.lower() if p.name else f"{p.look.primary} {p.look.shape}"


def _fits(a, b) -> bool:
    return _subject(a) == _subject(b) and a.motion == b.motion and a.background == b.background


def relevance(queries: list[str], shot_texts: list[str]) -> np.ndarray:
    """The planner's relevance of each shot to each query: MiniLM cosine + keyword bonus x the
    share of the query's keywords found in the shot's text. (Q, S)."""
    from montage.embedding import TextEmbedder
    from montage.plan import PlanConfig
    from montage.text import keywords
    embedder = TextEmbedder()
    sims = embedder.embed(queries) @ embedder.embed(shot_texts).T
    shot_words = [set(keywords(t)) for t in shot_texts]
    share = np.zeros_like(sims)
    for qi, q in enumerate(queries):
        words = keywords(q)
        if words:
            share[qi] = [sum(w in s for w in words) / len(words) for s in shot_words]
    return sims + PlanConfig().keyword_bonus * share


def calibrate(n_queries: int = 200, n_library: int = 300, seed: int = 0) -> Calibration:
    """Similarities of fitting vs best non-fitting shots, and the threshold between them."""
    from jvideo.toyworld.captions import caption, tags
    from jvideo.toyworld.dataset import sample_clip_params
    rng = np.random.default_rng(seed)
    library = [sample_clip_params(rng, "train", frames=4) for _ in range(n_library)]
    queries = [sample_clip_params(rng, "heldout", frames=4) for _ in range(n_queries)]
    # Half the queries get a fitting shot in the library: the same clip, captioned for training.
    planted = [q for q in queries[: n_queries // 2]]
    shots = library + planted

    def shot_text(p) -> str:
        return f"{caption(p, rng, 'train')}. {', '.join(tags(p))}"

    shot_texts = [shot_text(p) for p in shots]
    query_texts = [caption(q, rng, "heldout") for q in queries]
    rel = relevance(query_texts, shot_texts)                          # (Q, S)
    positives, negatives = [], []
    for qi, q in enumerate(queries):
        fit = np.array([_fits(q, s) for s in shots])
        if fit.any():
            positives.append(float(rel[qi, fit].max()))
        if (~fit).any():
            negatives.append(float(rel[qi, ~fit].max()))
    pos, neg = np.asarray(positives), np.asarray(negatives)
    grid = np.round(np.arange(0.30, 1.20, 0.01), 2)
    scores = [(0.5 * ((pos >= t).mean() + (neg < t).mean()), t) for t in grid]
    best, threshold = max(scores)
    return Calibration(queries=n_queries, library=len(shots), threshold=float(threshold),
                       balanced_accuracy=float(best), true_positive_rate=float((pos >= threshold).mean()),
                       true_negative_rate=float((neg < threshold).mean()),
                       positives=positives, negatives=negatives)


def plot(cal: Calibration, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0.2, 1.0, 41)
    ax.hist(cal.negatives, bins=bins, alpha=0.6, label="best non-fitting shot")
    ax.hist(cal.positives, bins=bins, alpha=0.6, label="fitting shot")
    ax.axvline(cal.threshold, color="k", linestyle="--", label=f"threshold {cal.threshold:.2f}")
    ax.set_xlabel("relevance of the best shot (MiniLM cosine + keyword bonus)")
    ax.set_ylabel("queries")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="jvideo bench film-threshold",
                                 description="calibrate jvideo film's generate-below threshold on the toy world")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--library", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.queries < 2 or args.library < 1:
        print("jvideo bench film-threshold: error: --queries must be >= 2 and --library >= 1", file=sys.stderr)
        return 2
    cal = calibrate(args.queries, args.library, args.seed)
    print(f"threshold {cal.threshold:.2f}: balanced accuracy {cal.balanced_accuracy:.3f} "
          f"(fitting shot found {cal.true_positive_rate:.3f}, lack detected {cal.true_negative_rate:.3f}); "
          f"{len(cal.positives)} queries with a fitting shot, {len(cal.negatives)} without; "
          f"median relevance fitting {np.median(cal.positives):.3f}, best non-fitting {np.median(cal.negatives):.3f}")
    if args.json:
        from montage.plan import write_text_atomic
        write_text_atomic(args.json, json.dumps(asdict(cal), indent=1))
    if args.plot:
        plot(cal, args.plot)
    return 0
