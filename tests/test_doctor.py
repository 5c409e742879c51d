import subprocess
import sys

from jvideo import doctor
import cli


def test_doctor_reports_every_part(capsys):
    rc = cli.main(["doctor"])
    out = capsys.readouterr().out
    for name in ("python", "jittor", "backend", "oneDNN", "torch", "ffmpeg", "ffprobe",
                 "mpirun", "espeak-ng", "MiniLM model", "checkpoints"):
        assert name in out
    assert "cpu" in out or "cuda" in out
    assert rc == 0


def test_missing_required_program_gives_fix_line_and_nonzero_exit(monkeypatch, capsys):
    real = doctor.find_executable
    monkeypatch.setattr(doctor, "find_executable", lambda n: None if n == "ffmpeg" else real(n))
    rc = cli.main(["doctor"])
    captured = capsys.readouterr()
    assert rc != 0
    assert "missing: ffmpeg: apt-get install ffmpeg" in captured.err


def test_unknown_subcommand_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "cli", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
