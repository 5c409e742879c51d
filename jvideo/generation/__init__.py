"""Text-to-shot generation on the toy world: presets, training, sampling, evaluation.

The pipeline is the Sora-style one: a VAE (jvideo.models.AutoencoderKL) turns frames into
latents, a Latte-style video DiT (jvideo.models.Latte) denoises them conditioned on MiniLM text
tokens, and a character's reference image enters as a clean latent frame placed before the clip
(VDT-style: the mask keeps it given, the loss covers only the generated frames).
"""
