"""`jvideo bench model` plumbing that needs no model: arguments, timing, memory, table."""
from __future__ import annotations

import pytest

from jvideo import bench


def test_defaults_follow_the_target_shape():
    args = bench.parse_args(["--arch", "dit-s-2"])
    assert (args.batch, args.size, args.threads) == (8, 32, 2)
    assert bench.parse_args(["--arch", "vae"]).size == 128


def test_bad_arguments_exit_non_zero():
    with pytest.raises(SystemExit) as err:
        bench.parse_args(["--arch", "unet"])
    assert err.value.code != 0
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch", "0"])


def test_interleaved_timing_and_table():
    calls = []
    res = bench.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 3)
    assert calls[2:8] == ["a", "b"] * 3                     # alternated after the warm-up
    assert set(res) == {"a", "b"} and res["a"]["median_ms"] >= 0
    assert bench.peak_rss_mb() > 10
    table = bench.format_table({"arch": "dit-s-2", "batch": 8, "size": 32, "frames": None, "threads": 2,
                                "parameters_m": 33.0, "max_abs_diff": 1e-6, "forward_speedup": 1.5,
                                "phases": {"forward/torch": res["a"], "forward/jittor": res["b"]}})
    assert "forward: jittor is 1.50x torch eager" in table and "2 threads" in table
