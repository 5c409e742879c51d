"""Test-suite set-up: configure Jittor's runtime before any test imports Jittor."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from kernels import runtime  # noqa: E402

runtime.configure()


def pytest_terminal_summary(terminalreporter) -> None:
    """The bad-input suite's tally (tests/test_reliability*.py), when it ran."""
    rel = sys.modules.get("test_reliability")
    if rel is not None and rel.COUNTS:
        terminalreporter.write_line(rel.summary())
