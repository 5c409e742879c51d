#!/usr/bin/env bash
# One idempotent set-up for a fresh machine: system packages, a virtual environment with the
# project installed editable, oneDNN prepared for Jittor, and Jittor's compile cache warmed.
# Re-running it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
# chromium + chromium-driver: the studio's end-to-end test drives a real headless browser.
APT_PACKAGES="ffmpeg libdnnl-dev openmpi-bin libopenmpi-dev espeak-ng chromium chromium-driver"

step() { printf '\n==> %s\n' "$*"; }

step "system packages: $APT_PACKAGES"
missing=""
for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: apt-get not found; install these system packages by hand:$missing" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "error: not root and no sudo; install:$missing" >&2; exit 1; }
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
else
    echo "all present"
fi

step "virtual environment in $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
# torch first and pinned: the CPU wheel lies on disk; an unpinned torch would download a CUDA build.
"$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q -e ".[test]"
# Hugging Face's `kernels` (pulled in by transformers 5.25+, installed here by an earlier set-up)
# is shadowed by this project's `kernels` package and breaks transformers' import: remove it.
if [[ "$("$VPY" -m pip show kernels 2>/dev/null)" == *"Summary: Download compute kernels"* ]]; then
    "$VPY" -m pip uninstall -q -y kernels
fi

step "oneDNN for Jittor"
"$VPY" -m kernels.runtime prepare-onednn

step "Jittor's parallel compiler: thread-safety fix (kernels/jittor_patch.py)"
"$VPY" -m kernels.runtime patch-jittor

step "warming Jittor's compile cache (first time: several minutes)"
"$VPY" -m kernels.runtime warm
# The training ops too, in one process: the suite's first Jittor test trains on two ranks, which
# would otherwise both compile them at once (measured cold: 107 s here + 82 s for that test,
# against 249 s for the test alone). A failure here is only a slower first test.
WARM_RUN=$(mktemp -d)
"$VPY" -m cli train --preset test --out "$WARM_RUN/run" >/dev/null 2>&1 \
    || echo "warning: the training warm-up failed; the first tests will compile instead"
rm -rf "$WARM_RUN"

echo
echo "set-up done: run '$VENV/bin/jvideo doctor'"
