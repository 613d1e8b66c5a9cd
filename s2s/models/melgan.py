"""MelGAN vocoder generator, the configuration SpecVQGAN trained on VGGSound with RegNet's mel.

Follows MelGAN (Kumar et al., NeurIPS 2019; descriptinc/melgan-neurips) as used by SpecVQGAN
(v-iashin/SpecVQGAN, ``best_netG.pt``): ngf 32, 3 residual blocks per stage with dilations 1, 3, 9,
upsampling ratios [8, 8, 2, 2] (hop 256), weight-normalised convolutions, tanh output. Its training
mel is exactly RegNet's (22050 Hz, 80 bands 125-7600 Hz, [0, 1] dB scale), so it is our default.

Inference only: the module holds plain convolutions. Weight norm (``weight_g``/``weight_v`` in the
official state dict) is folded into the weights on load, which is what removing it before export does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from s2s.constants import REGNET
from s2s.models.checkpoints import (
    CheckpointError,
    conv_weight_keys,
    fold_weight_norm,
    load_strict,
    seeded_init,
    split_weight_norm,
    torch_load,
)


@dataclass(frozen=True)
class MelGANConfig:
    n_mels: int = REGNET.n_mels
    ngf: int = 32
    n_residual_layers: int = 3
    ratios: tuple[int, ...] = field(default=(8, 8, 2, 2))

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            nn.Conv1d(dim, dim, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(0.2),
            nn.Conv1d(dim, dim, kernel_size=1),
        )
        self.shortcut = nn.Conv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class MelGANGenerator(nn.Module):
    """mel (B, n_mels, F) in [0, 1] -> waveform (B, 1, F * hop) in [-1, 1]."""

    def __init__(self, config: MelGANConfig = MelGANConfig()) -> None:
        super().__init__()
        self.config = config
        mult = 2 ** len(config.ratios)
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), nn.Conv1d(config.n_mels, mult * config.ngf, kernel_size=7)]
        for r in config.ratios:
            cin, cout = mult * config.ngf, mult * config.ngf // 2
            layers += [
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    cin, cout, kernel_size=2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2
                ),
            ]
            layers += [ResnetBlock(cout, dilation=3**j) for j in range(config.n_residual_layers)]
            mult //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), nn.Conv1d(config.ngf, 1, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model(mel)


def build_melgan(
    config: MelGANConfig = MelGANConfig(), checkpoint: str | Path | None = None, seed: int = 0
) -> MelGANGenerator:
    """MelGAN from an official ``best_netG.pt`` (state dict with weight norm) or seeded random weights."""
    if checkpoint is None:
        return seeded_init(MelGANGenerator(config), seed).eval()
    state = torch_load(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint}: expected a MelGAN state dict, got {type(state).__name__}")
    if "config" in state and "state_dict" in state:  # our own training checkpoints
        config = MelGANConfig(**{**state["config"], "ratios": tuple(state["config"]["ratios"])})
        state = state["state_dict"]
    model = MelGANGenerator(config)
    state = {
        k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()
    }  # fp16 files
    load_strict(model, fold_weight_norm(state), source=str(checkpoint))
    return model.eval()


def melgan_checkpoint_state(model: MelGANGenerator) -> dict:
    """The official layout of ``model``'s weights (weight norm split back into g and v)."""
    return split_weight_norm(model.state_dict(), conv_weight_keys(model))


def melgan_checkpoint(model: MelGANGenerator) -> dict:
    """Our checkpoint of ``model`` (``s2s train``'s): its architecture and configuration with the weights in
    the official layout."""
    return {"architecture": "melgan", "config": asdict(model.config), "state_dict": melgan_checkpoint_state(model)}
