"""Narration by espeak-ng (offline TTS): one WAV per unit, cached; the film's voice track.

Unit durations come from the measured length of each spoken WAV plus a pause, so the planner's
timeline follows the voice; the track places each unit's speech at that unit's start sample.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MontageError
from .files import scratch_path

ESPEAK = "espeak-ng"


@dataclass
class Voice:
    """espeak-ng settings. speed: words per minute; pause: seconds of silence after a unit."""
    name: str = "en-us"
    speed: int = 160
    pitch: int = 50
    pause: float = 0.35

    def key(self, text: str) -> str:
        raw = f"espeak-ng\0{self.name}\0{self.speed}\0{self.pitch}\0{text}"
        return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def synthesize(text: str, out: Path, voice: Voice) -> Path:
    """Speak `text` into the WAV `out` (atomic). The text goes through a file, never argv, so
    text that starts with '-' or holds quotes is spoken, not parsed."""
    if not espeak_available():
        raise MontageError("narration needs espeak-ng (apt-get install espeak-ng)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, txt = tempfile.mkstemp(prefix="jvideo-say-", suffix=".txt")   # not beside the output (kill -9)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp = scratch_path(out, ".wav")
    try:
        proc = subprocess.run([ESPEAK, "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
                               "-b", "1", "-f", txt, "-w", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.is_file():
            msg = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise MontageError(f"espeak-ng failed: {msg[0]}")
        os.replace(tmp, out)
    finally:
        for p in (txt, tmp):
            if os.path.exists(p):
                os.unlink(p)
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM WAV -> (samples (T,) int16, sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise MontageError(f"{path}: expected 16-bit PCM audio")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1).astype(np.int16)
        return data, w.getframerate()


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def speak_units(texts: Sequence[str], cache_dir: Path, voice: Voice | None = None,
                progress: bool = False) -> list[tuple[Path, float]]:
    """Speak each text (cached by voice+text). Returns [(wav path, spoken seconds)]."""
    voice = voice or Voice()
    cache_dir = Path(cache_dir)
    out = []
    items = list(texts)
    it = items
    if progress:
        from tqdm import tqdm
        it = tqdm(items, desc="narration", unit="unit", leave=False)
    for text in it:
        path = cache_dir / f"voice-{voice.key(text)}.wav"
        if not path.is_file():
            synthesize(text, path, voice)
        out.append((path, wav_seconds(path)))
    return out


def build_track(clips: Sequence[tuple[Path, float]], total: float, out: Path) -> Path:
    """Mix unit WAVs into one mono track of `total` seconds, each starting at its time (atomic).

    clips: [(wav path, start seconds)]; all at one sample rate (espeak-ng's).
    """
    sr = None
    pieces = []
    for path, start in clips:
        data, rate = read_wav(path)
        if sr is None:
            sr = rate
        elif rate != sr:
            raise MontageError(f"narration clips have different sample rates ({rate} vs {sr})")
        pieces.append((data, start))
    sr = sr or 22050
    track = np.zeros(int(round(total * sr)), dtype=np.int32)
    for data, start in pieces:
        a = int(round(start * sr))
        b = min(len(track), a + len(data))
        if b > a:
            track[a:b] += data[: b - a]
    track = np.clip(track, -32768, 32767).astype(np.int16)
    out = Path(out)
    tmp = scratch_path(out, ".wav")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(track.tobytes())
    os.replace(tmp, out)
    return out
