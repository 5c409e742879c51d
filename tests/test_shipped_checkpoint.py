"""The checkpoint shipped in jvideo/checkpoints loads, generates and is found by doctor."""
import numpy as np

from jvideo import doctor
from jvideo.generation.sample import Generator
from jvideo.generation.presets import SHIPPED_CHECKPOINT


def test_shipped_checkpoint_generates_a_full_shot():
    gen = Generator.load(SHIPPED_CHECKPOINT)
    assert gen.preset.name == SHIPPED_CHECKPOINT.name   # the folder is named after its preset
    ref = np.zeros((64, 64, 3), np.uint8)
    frames = gen.generate("Mira jumps on the grass", reference=ref, seed=0, steps=4)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 1.0  # a picture, not a constant


def test_doctor_finds_the_shipped_checkpoint():
    check = doctor.check_checkpoints()
    assert check.ok and SHIPPED_CHECKPOINT.name in check.value


def test_evaluation_reports_every_figure_and_the_vae_ceiling():
    from jvideo.generation.evaluate import evaluate
    gen = Generator.load(SHIPPED_CHECKPOINT)
    report = evaluate(gen, n=2, steps=2, shots_per_character=1).to_dict()
    assert set(report["text_accuracy"]) == {"colour", "shape", "background", "motion"}
    assert 0.0 <= report["identity_with_reference"] <= 1.0 and report["n_identity"] == 8
    ceiling = report["vae_ceiling"]
    # The detector reads rendered medium and close-up clips right (README's detector table);
    # the reconstructions are what the VAE lets through.
    assert ceiling["colour_rendered"] == 1.0 and ceiling["shape_rendered"] == 1.0
    assert 0.0 <= ceiling["colour"] <= 1.0 and 0.0 <= ceiling["shape"] <= 1.0
