"""A fix to Jittor 1.3.11's parallel op compiler, applied to its C++ source before it is built.

Jittor compiles the operators of a new graph on several threads at once. For a fused op that
looks like a convolution or a matmul, the compile step's tuner builds a relay op (oneDNN's
conv or matmul) on the graph's own variables: that adds and removes edges and changes the
liveness counts of variables which other fused ops, compiled on other threads at the same
moment, share (a conv's input is read by its forward and by its weight gradient). None of that
is locked. CI saw the result once (2026-12-07): a fused conv lost its input mid-compile
(`reindex` with no inputs and an unreadable dtype) and Jittor failed with
`Check failed: member.size() <= var_num` inside `jvideo train`.

The fix holds one lock while a thread builds an op's source (passes, tuners, relays) and
releases it before the C++ compiler runs, so the slow part stays parallel. Jittor rebuilds the
changed file by itself the next time it is imported. Idempotent; never imports Jittor.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

MARKER = "jvideo: serialise graph edits"

_HEAD = "jit_op_entry_t do_compile_inner(Op* op) {\n    OpCompiler oc(op);\n"
_HEAD_NEW = (
    "jit_op_entry_t do_compile_inner(Op* op) {\n"
    f"    // {MARKER}: tuners build relay ops on variables shared with ops compiled on other\n"
    "    // threads; only the C++ compiler call below runs unlocked.\n"
    "    static std::recursive_mutex graph_edit_mutex;\n"
    "    std::unique_lock<std::recursive_mutex> graph_edit_lock(graph_edit_mutex);\n"
    "    OpCompiler oc(op);\n")
_TAIL = "    auto ret = oc.compile(op->get_jit_key(get_jk()), *src);\n    return ret;\n}"
_TAIL_NEW = ("    string compiled_key = op->get_jit_key(get_jk());\n"
             "    graph_edit_lock.unlock();\n"
             "    auto ret = oc.compile(compiled_key, *src);\n    return ret;\n}")
_INCLUDE = "#include <regex>\n"
_INCLUDE_NEW = "#include <regex>\n#include <mutex>\n"


def source_file() -> Path | None:
    """Jittor's op_compiler.cc, found without importing Jittor; None if Jittor is not installed."""
    spec = importlib.util.find_spec("jittor")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "src" / "op_compiler.cc"


def patched_text(text: str) -> str | None:
    """The fixed source, or None when the source is not the one this patch was written for."""
    if any(text.count(piece) != 1 for piece in (_HEAD, _TAIL, _INCLUDE)):
        return None
    return text.replace(_INCLUDE, _INCLUDE_NEW).replace(_HEAD, _HEAD_NEW).replace(_TAIL, _TAIL_NEW)


def _examine(path: Path | None) -> tuple[bool, str, str | None]:
    """(fixed, what was found, the fixed source to write or None), from one read of the file."""
    if path is None or not path.exists():
        return False, "Jittor source not found", None
    text = path.read_text()
    if MARKER in text:
        return True, f"applied ({path})", None
    new = patched_text(text)
    if new is None:
        return False, f"unknown Jittor source ({path}): not patched", None
    return False, f"not applied ({path})", new


def status(path: Path | None = None) -> tuple[bool, str]:
    """(fixed, what was found) without changing anything."""
    fixed, reason, _ = _examine(path or source_file())
    return fixed, reason


def apply(path: Path | None = None) -> tuple[bool, str]:
    """Patch Jittor's source in place (atomically). Returns (fixed, what happened)."""
    path = path or source_file()
    fixed, reason, new = _examine(path)
    if new is None:
        return fixed, reason
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(new)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        return False, f"cannot write {path}: {err.strerror}"
    return True, f"patched {path}"
