"""The checkpoint shipped in jvideo/checkpoints/tiny loads, generates and is found by doctor."""
import numpy as np

from jvideo import doctor
from jvideo.generation.sample import Generator
from jvideo.generation_cli import SHIPPED_CHECKPOINT


def test_shipped_checkpoint_generates_a_full_shot():
    gen = Generator.load(SHIPPED_CHECKPOINT)
    assert gen.preset.name == "tiny"
    ref = np.zeros((64, 64, 3), np.uint8)
    frames = gen.generate("Mira jumps on the grass", reference=ref, seed=0, steps=4)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 1.0  # a picture, not a constant


def test_doctor_finds_the_shipped_checkpoint():
    check = doctor.check_checkpoints()
    assert check.ok and "tiny" in check.value
