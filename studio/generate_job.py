"""Child process of the studio: generate shots for units with the film pipeline.

    python -m studio.generate_job --cache DIR < jobs.json > shots.json

stdin: [{"unit": INDEX, "visual": TEXT}, ...]; stdout: {"shots": {INDEX: shot dict}, "cached": N}.
Jittor and the model live in this process only, so the studio's server never imports them and
a crash here cannot take it down. Progress (the sampler's tqdm bar) goes to stderr; an error is
one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path


class _Untimed:
    """Stands in for the film pipeline's stage timer: the studio times the job itself."""

    def __call__(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.generate_job", description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, required=True, help="generated-shot cache folder")
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped tiny one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=4.0)
    args = ap.parse_args(argv)
    try:
        jobs = json.load(sys.stdin)
        todo_in = [(int(j["unit"]), str(j["visual"])) for j in jobs]
    except (ValueError, KeyError, TypeError) as err:
        print(f"generate: bad job list ({err})", file=sys.stderr)
        return 2
    from kernels import runtime
    runtime.configure()          # before anything imports Jittor
    from film.pipeline import FilmRequest, LazyGenerator, Provenance, generate_missing
    from montage.library import shot_to_dict

    req = FilmRequest(script=Path("studio"), out=Path("studio.mp4"), seed=args.seed,
                      steps=args.steps, cfg=args.cfg, progress=True)
    todo = [Provenance(unit=i, kind="action", text=v, visual=v, speaker=None, characters=[])
            for i, v in todo_in]
    gen = LazyGenerator(args.checkpoint)
    if gen.get() is None:
        print(f"generate: no generator ({gen.error})", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    shots, cached = generate_missing(todo, {}, gen, req, args.cache, _Untimed())
    json.dump({"shots": {str(i): shot_to_dict(s) for i, s in shots.items()}, "cached": cached},
              sys.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # noqa: BLE001 - the studio shows this one line
        print(f"generate: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        sys.exit(2)
