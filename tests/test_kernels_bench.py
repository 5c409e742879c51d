"""`jvideo bench kernels`: argument errors are one line and exit 2; JSON/plot writers work.

The benchmark itself is run by hand (it times; tests must not)."""
import json

from kernels import bench


def test_bad_output_folder_and_threads_exit_2(tmp_path, capsys):
    assert bench.main(["--json", str(tmp_path / "missing" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert bench.main(["--threads", "0"]) == 2


def test_json_and_plot_writers(tmp_path):
    row = {"op": "layer_norm", "model": "S/2", "tokens": 256,
           "ms": {"fused": 1.0, "unfused": 2.0, "eager": 3.0, "compile": 1.5}}
    block = {"model": "S/2", "tokens": 256, "fwd": {"fused": 10.0, "unfused": 20.0, "eager": 13.0},
             "fwd_bwd": {"fused": 30.0, "unfused": 60.0, "eager": 40.0}}
    data = {"date_utc": "test", "threads": 2, "triad_gbps": 30.0, "load_before": "0 0 0",
            "ops": [row], "block": [block]}
    bench.write_json(str(tmp_path / "r.json"), data)
    assert json.loads((tmp_path / "r.json").read_text())["ops"][0]["op"] == "layer_norm"
    bench.write_plot(str(tmp_path / "r.png"), data)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.png"]  # no temp files left
    assert (tmp_path / "r.json").stat().st_mode & 0o044 == 0o044  # readable like any output
