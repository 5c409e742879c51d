"""Fused Jittor operators for the model's hot paths, and the Jittor runtime set-up.

`kernels.runtime` must stay importable without Jittor; it is what every entry point calls
before the first `import jittor`.
"""
