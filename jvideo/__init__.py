"""jvideo: a Sora-style latent video diffusion model on Jittor.

Importing the package configures Jittor's runtime (backend, oneDNN, log level) before any
submodule imports Jittor; nothing heavy is imported here.
"""
from kernels import runtime as _runtime

_runtime.configure()

__version__ = "0.1.0"
