"""Child process of the studio: generate shots for units with the film pipeline.

    python -m studio.generate_job --cache DIR < jobs.json > shots.json

stdin: {"script": TEXT, "base": FOLDER, "jobs": [{"unit": INDEX, "visual": TEXT, "characters": [NAME]}]}
(or just the job list); stdout: {"shots": {INDEX: shot dict}, "cached": N}. A Fountain script's
cast ([[cast NAME: image.png]]) gives each character's shots that character's reference.
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


def _cast_references(script: str, base: Path, needed: set[str], gen, req, cache: Path, resolve) -> dict:
    """Reference images of the characters the jobs show, from the script's cast notes."""
    if not needed or not script.strip():
        return {}
    from film.errors import FilmError
    from film.script import parse_script
    try:
        parsed = parse_script(script, base=base)
    except FilmError:
        return {}                     # the studio already shows the script's problem
    warnings: list[str] = []
    refs = resolve(parsed, needed, gen, req, cache, warnings)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return refs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.generate_job", description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, required=True, help="generated-shot cache folder")
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped tiny one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=4.0)
    args = ap.parse_args(argv)
    try:
        request = json.load(sys.stdin)
        jobs = request["jobs"] if isinstance(request, dict) else request
        todo_in = [(int(j["unit"]), str(j["visual"]), [str(c) for c in j.get("characters", [])]) for j in jobs]
        script_text = str(request.get("script", "")) if isinstance(request, dict) else ""
        base = Path(str(request.get("base", "."))) if isinstance(request, dict) else Path(".")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"generate: bad job list ({err})", file=sys.stderr)
        return 2
    from kernels import runtime
    runtime.configure()          # before anything imports Jittor
    from film.pipeline import FilmRequest, LazyGenerator, Provenance, generate_missing, resolve_cast
    from montage.library import shot_to_dict

    req = FilmRequest(script=Path("studio"), out=Path("studio.mp4"), seed=args.seed,
                      steps=args.steps, cfg=args.cfg, progress=True)
    todo = [Provenance(unit=i, kind="action", text=v, visual=v, speaker=None, characters=c)
            for i, v, c in todo_in]
    gen = LazyGenerator(args.checkpoint)
    if gen.get() is None:
        print(f"generate: no generator ({gen.error})", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    refs = _cast_references(script_text, base, {c for p in todo for c in p.characters}, gen, req, args.cache,
                            resolve_cast)
    shots, cached = generate_missing(todo, refs, gen, req, args.cache, _Untimed())
    json.dump({"shots": {str(i): shot_to_dict(s) for i, s in shots.items()}, "cached": cached},
              sys.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # noqa: BLE001 - the studio shows this one line
        print(f"generate: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        sys.exit(2)
