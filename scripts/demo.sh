#!/usr/bin/env bash
# `make demo`: the most complete end-to-end run on built-in defaults.
# Renders a demo footage library from the toy world, indexes it, and cuts a narrated,
# subtitled film from a bundled text with the Write-a-video montage.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo_out}
JV=".venv/bin/jvideo"
mkdir -p "$OUT"
[ -d "$OUT/footage" ] || $JV toyworld library "$OUT/footage" --clips 40 --seed 1
$JV index "$OUT/footage" --library "$OUT/library"
$JV montage examples/demo_montage.md --library "$OUT/library" --out "$OUT/film.mp4" \
    --narrate --subtitles --transition crossfade --plan-json "$OUT/film.plan.json"
echo "demo film: $OUT/film.mp4 (plan: $OUT/film.plan.json)"
