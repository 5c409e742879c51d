"""The thread-safety fix to Jittor's parallel op compiler (kernels/jittor_patch.py)."""
from __future__ import annotations

from kernels import jittor_patch as jp

# The shape of Jittor 1.3.11's op_compiler.cc around the patched lines.
ORIGINAL = (
    "// header\n" + jp._INCLUDE + "#include <algorithm>\n\n"
    + jp._HEAD
    + "    string* src = &oc.src;\n    if (oc.op) { TunerManager tm(&oc); }\n    op->compile_optimize(*src);\n"
    + jp._TAIL + "\n\nint after() { return 0; }\n")


def test_the_installed_jittor_is_fixed():
    fixed, reason = jp.status()
    assert fixed, reason


def test_patch_locks_the_graph_work_and_unlocks_before_the_compiler(tmp_path):
    src = tmp_path / "op_compiler.cc"
    src.write_text(ORIGINAL)
    assert jp.status(src) == (False, f"not applied ({src})")
    assert jp.apply(src) == (True, f"patched {src}")
    text = src.read_text()
    assert jp.MARKER in text and "#include <mutex>" in text
    lock, tuner = text.index("graph_edit_lock(graph_edit_mutex)"), text.index("TunerManager tm")
    unlock, compile_call = text.index("graph_edit_lock.unlock()"), text.index("oc.compile(compiled_key")
    assert lock < tuner < unlock < compile_call
    assert text.endswith("int after() { return 0; }\n")
    # Idempotent: a second run changes nothing.
    assert jp.apply(src) == (True, f"applied ({src})")
    assert src.read_text() == text
    assert not list(tmp_path.glob("*.tmp*"))


def test_an_unknown_source_is_left_alone(tmp_path):
    src = tmp_path / "op_compiler.cc"
    changed = ORIGINAL.replace("    OpCompiler oc(op);\n", "    OpCompiler oc(op, 1);\n")
    src.write_text(changed)
    fixed, reason = jp.apply(src)
    assert not fixed and "unknown Jittor source" in reason
    assert src.read_text() == changed
    assert jp.apply(tmp_path / "missing.cc") == (False, "Jittor source not found")
