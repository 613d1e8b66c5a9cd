"""Checkpoint helpers shared by the model files: strict key checks, weight-norm folding, hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from s2s.errors import S2SError


class CheckpointError(S2SError, ValueError):
    """A checkpoint does not fit the model: names the missing/unexpected keys or bad shapes."""


def _listing(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    ignore: Iterable[str] = (),
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
) -> None:
    """Load ``state`` into ``model`` and fail with a message naming every mismatch.

    ``ignore``: checkpoint keys to drop on purpose (e.g. a classifier the encoder does not have).
    ``optional_suffixes``: model keys that old checkpoints may lack (BN counters).
    """
    ignore = set(ignore)
    state = {k: v for k, v in state.items() if k not in ignore}
    expected = model.state_dict()
    missing = {k for k in expected if k not in state and not k.endswith(optional_suffixes)}
    unexpected = {k for k in state if k not in expected}
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + " | ".join(problems))
    model.load_state_dict(state, strict=False)


def fold_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every ``X.weight_g`` / ``X.weight_v`` pair by ``X.weight = g * v / ||v||``.

    That is PyTorch's ``weight_norm(dim=0)``, the layout of the official MelGAN and HiFi-GAN
    checkpoints; the norm runs over every dimension but 0. Folding it is removing weight norm.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            prefix = key[: -len(".weight_v")]
            g = state.get(prefix + ".weight_g")
            if g is None:
                raise CheckpointError(f"{prefix}.weight_v has no matching {prefix}.weight_g")
            out[prefix + ".weight"] = torch._weight_norm(value, g, 0)
        elif key.endswith(".weight_g"):
            if key[: -len(".weight_g")] + ".weight_v" not in state:
                raise CheckpointError(f"{key} has no matching weight_v")
        else:
            out[key] = value
    return out


def split_weight_norm(state: Mapping[str, torch.Tensor], keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`fold_weight_norm` for ``keys`` (``X.weight`` names): g = ||w||, v = w."""
    keys = set(keys)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in keys:
            prefix = key[: -len(".weight")]
            dims = tuple(range(1, value.dim()))
            out[prefix + ".weight_g"] = value.norm(dim=dims, keepdim=True)
            out[prefix + ".weight_v"] = value.clone()
        else:
            out[key] = value
    return out


def conv_weight_keys(module: nn.Module) -> list[str]:
    """State-dict keys of every 1-D (transposed) convolution's weight: where the official vocoder
    checkpoints (MelGAN, HiFi-GAN) store weight norm as ``weight_g``/``weight_v`` pairs."""
    return [f"{name}.weight" for name, m in module.named_modules() if isinstance(m, nn.Conv1d | nn.ConvTranspose1d)]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def portable_path(path: str | Path) -> str:
    """A file's path as results record it: relative to the project (the folder holding the installed
    ``s2s`` package) or to the current directory where it lies in one, else its name alone; the
    sha256 recorded beside it identifies the file in every case. No machine's absolute paths."""
    path = Path(path).resolve()
    for root in (Path(__file__).resolve().parents[2], Path.cwd().resolve()):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def checkpoint_record(path: str | Path) -> dict[str, str]:
    """Where weights came from, as the manifest and results record it: portable path and sha256."""
    return {"checkpoint": portable_path(path), "sha256": file_sha256(path)}


def torch_load(path: str | Path) -> dict:
    """Load a checkpoint on CPU (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt file, pickle with arbitrary objects, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def recorded_architecture(path: str | Path) -> str | None:
    """The network a checkpoint says it holds (``s2s train`` writes ``architecture``); None for files without."""
    blob = torch_load(path)
    return blob.get("architecture") if isinstance(blob, dict) else None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's weights (names, shapes, float32 values): which weights these are, whatever file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to(torch.float32 if tensor.is_floating_point() else tensor.dtype).contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def seeded_init(model: nn.Module, seed: int) -> nn.Module:
    """Deterministic re-initialisation: every module's ``reset_parameters`` under one seed."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)
    return model
