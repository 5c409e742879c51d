"""Load and save Jittor models in diffusers' on-disk format (and the original DiT .pt).

from_pretrained(path):
  * a diffusers model folder: config.json (`_class_name` picks the module) plus
    diffusion_pytorch_model.safetensors (or a sharded .safetensors index, or a .bin read
    with torch.load(weights_only=True));
  * an original facebookresearch/DiT checkpoint `.pt` (weights_only as well).
Every tensor is checked against the module before anything is assigned: the first
missing, unexpected or mis-shaped keys are named in one JVideoError line (Jittor's own
load_parameters only logs them).

save_pretrained(model, folder) writes config.json + diffusion_pytorch_model.safetensors,
each atomically (temp file in the folder, then os.replace). Never pickle.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kernels import runtime as _runtime

jt = _runtime.import_jittor()

from jvideo.errors import JVideoError  # noqa: E402

from . import dit as _dit  # noqa: E402
from .dit import DiT, DiTConfig  # noqa: E402
from .latte import Latte, LatteConfig  # noqa: E402
from .look_classifier import LookClassifier, LookClassifierConfig  # noqa: E402
from .vae import AutoencoderKL, AutoencoderKLConfig  # noqa: E402

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
BIN_NAME = "diffusion_pytorch_model.bin"
CONFIG_NAME = "config.json"

# diffusers class name -> (config class, module class)
REGISTRY = {
    "DiTTransformer2DModel": (DiTConfig, DiT),
    "LatteTransformer3DModel": (LatteConfig, Latte),
    "AutoencoderKL": (AutoencoderKLConfig, AutoencoderKL),
    "JVideoLookClassifier": (LookClassifierConfig, LookClassifier),
}


# ---- reading tensors --------------------------------------------------------------------

def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open
    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    except (TypeError, ValueError) as err:
        if "bf16" not in str(err).lower() and "bfloat16" not in str(err).lower():
            raise JVideoError(f"{path}: cannot read safetensors: {err}") from None
        with safe_open(str(path), framework="pt") as f:      # numpy has no bfloat16
            out = {k: f.get_tensor(k).float().numpy() for k in f.keys()}
    except Exception as err:  # corrupt header etc. (safetensors raises its own error type)
        raise JVideoError(f"{path}: cannot read safetensors: {err}") from None
    return out


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    """A torch state dict read with weights_only=True (no arbitrary unpickling)."""
    import torch
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise JVideoError(f"{path}: cannot read as a weights-only torch checkpoint: "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if isinstance(obj, dict) and "ema" in obj and isinstance(obj["ema"], dict):
        obj = obj["ema"]          # DiT training checkpoints hold model, ema, opt
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise JVideoError(f"{path}: not a state dict of tensors")
    return {k: v.detach().float().numpy() for k, v in obj.items()}


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    """All tensors of a diffusers model folder as float32 numpy arrays."""
    if (folder / WEIGHTS_NAME).exists():
        sd = _read_safetensors(folder / WEIGHTS_NAME)
    elif (folder / WEIGHTS_INDEX_NAME).exists():
        index = json.loads((folder / WEIGHTS_INDEX_NAME).read_text())
        sd = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            sd.update(_read_safetensors(folder / shard))
    elif (folder / BIN_NAME).exists():
        sd = _read_torch(folder / BIN_NAME)
    else:
        raise JVideoError(f"{folder}: no {WEIGHTS_NAME}, {WEIGHTS_INDEX_NAME} or {BIN_NAME}")
    return {k: np.asarray(v, dtype=np.float32) for k, v in sd.items()}


# ---- checking and assigning -------------------------------------------------------------

def _first(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_state_dict(model: Any, sd: dict[str, np.ndarray], source: str) -> None:
    """Raise one JVideoError line naming missing / unexpected / mis-shaped keys, if any."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(k for k in expected if k not in sd)
    unexpected = sorted(k for k in sd if k not in expected)
    shaped = sorted(f"{k} (file {tuple(sd[k].shape)}, model {expected[k]})"
                    for k in expected if k in sd and tuple(sd[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_first(unexpected)}")
    if shaped:
        problems.append(f"wrong shape {len(shaped)}: {_first(shaped, 2)}")
    if problems:
        raise JVideoError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


def load_state_dict(model: Any, sd: dict[str, np.ndarray], source: str = "state dict") -> None:
    """Check every key and shape, then assign all tensors (float32)."""
    check_state_dict(model, sd, source)
    for k, var in model.state_dict().items():
        var.assign(jt.array(np.ascontiguousarray(sd[k], dtype=np.float32)))
    jt.sync_all()


def vars_numpy(named: dict[str, Any]) -> dict[str, np.ndarray]:
    """Named Jittor Vars -> contiguous float32 arrays (what safetensors files hold)."""
    return {k: np.ascontiguousarray(v.numpy(), dtype=np.float32) for k, v in named.items()}


def state_dict_numpy(model: Any) -> dict[str, np.ndarray]:
    return vars_numpy(model.state_dict())


# ---- public API -------------------------------------------------------------------------

def build(class_name: str, config: dict[str, Any]) -> Any:
    """Build an (untrained) module from a diffusers-style config dict."""
    if class_name not in REGISTRY:
        raise JVideoError(f"model class {class_name!r} is not supported (supported: {', '.join(REGISTRY)})")
    cfg_cls, mod_cls = REGISTRY[class_name]
    try:
        cfg = cfg_cls.from_dict(config)
        return mod_cls(cfg)
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError, AssertionError) as err:
        # A config a user brought: wrong types or impossible sizes fail here, in one line.
        raise JVideoError(f"bad {class_name} config: {type(err).__name__}: {err}") from None


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except json.JSONDecodeError as err:
        raise JVideoError(f"{folder / CONFIG_NAME}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise JVideoError(f"{folder / CONFIG_NAME}: not UTF-8 text") from None
    if not isinstance(config, dict):
        raise JVideoError(f"{folder / CONFIG_NAME}: not a config (a JSON object is expected)")
    return config


def from_pretrained(path: str | os.PathLike, subfolder: str | None = None,
                    **config_overrides: Any) -> Any:
    """Build the Jittor module a diffusers folder (or an original DiT .pt) describes and load it.

    `subfolder` picks a component of a pipeline folder ("transformer", "vae"); keyword
    arguments override config values (e.g. num_attention_heads for an unusual DiT .pt).
    Returns the module in eval mode; Jittor's eval() also stops parameter gradients, so
    call .train() before training it.
    """
    path = Path(path)
    if subfolder:
        path = path / subfolder
    if not path.exists():
        raise JVideoError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix in (".pt", ".pth"):
            return _from_original_dit(path, config_overrides)
        if path.suffix == ".safetensors" and (path.parent / CONFIG_NAME).exists():
            config = {**_read_config(path.parent), **config_overrides}
            sd = _read_safetensors(path)
            return _finish(build(config.get("_class_name", ""), config), sd, str(path))
        raise JVideoError(f"{path}: expected a diffusers model folder or an original DiT .pt checkpoint")
    if not (path / CONFIG_NAME).exists():
        if (path / "model_index.json").exists():
            parts = sorted(p.name for p in path.iterdir() if (p / CONFIG_NAME).exists())
            raise JVideoError(f"{path} is a pipeline folder: pick a component with subfolder "
                              f"(one of {', '.join(parts)})")
        raise JVideoError(f"{path}: no {CONFIG_NAME} (not a diffusers model folder)")
    config = {**_read_config(path), **config_overrides}
    model = build(config.get("_class_name", ""), config)
    return _finish(model, read_weights(path), str(path))


def _finish(model: Any, sd: dict[str, np.ndarray], source: str) -> Any:
    load_state_dict(model, sd, source)
    model.eval()
    return model


def _from_original_dit(path: Path, overrides: dict[str, Any]) -> DiT:
    sd = _read_torch(path)
    heads = overrides.pop("num_attention_heads", None)
    cfg = _dit.config_from_original(sd, heads)
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise JVideoError(f"unknown DiT config key {k!r}")
        setattr(cfg, k, v)
    return _finish(DiT(cfg), _dit.original_to_diffusers(sd), str(path))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:      # on disk before the rename: a crash never leaves a
            os.fsync(f.fileno())        # checkpoint name pointing at unwritten blocks
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_pretrained(model: Any, folder: str | os.PathLike, weights: dict[str, np.ndarray] | None = None) -> Path:
    """Write folder/config.json + folder/diffusion_pytorch_model.safetensors (diffusers
    layout, loadable by diffusers' from_pretrained too), each atomically. Returns the folder.
    `weights` (the model's names and shapes; an average of its weights, say) replace the
    model's own in the file.
    """
    from safetensors.numpy import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if weights is None:
        sd = state_dict_numpy(model)
    else:   # checked against the model's shapes, without copying its own weights out
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if set(weights) != set(shapes) or any(tuple(weights[k].shape) != s for k, s in shapes.items()):
            raise ValueError("save_pretrained: the weights do not match the model's names and shapes")
        sd = {k: np.ascontiguousarray(weights[k], dtype=np.float32) for k in shapes}
    config = model.config.to_dict()
    config["_jvideo_version"] = _version()
    _atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(sd, tmp, metadata={"format": "pt"}))
    _atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def _version() -> str:
    from jvideo import __version__
    return __version__
