"""HiFi-GAN vocoder generator, V1 / V2 / V3.

Follows HiFi-GAN (Kong et al., NeurIPS 2020; jik876/hifi-gan ``models.py``): a 7-tap input conv,
transposed-conv upsampling stages (leaky ReLU 0.1) each followed by multi-receptive-field fusion (the
mean of ``len(resblock_kernel_sizes)`` residual blocks), leaky ReLU, 7-tap output conv, tanh. All
three published variants have hop 256, as RegNet's mel needs.

A public HiFi-GAN checkpoint expects its own mel (fmin 0, fmax 8000, natural-log scale, uncentred
frames, speech data), not RegNet's, so it is the upgrade path for a vocoder fine-tuned on RegNet mels;
MelGAN (:mod:`s2s.models.melgan`) is the default. Checkpoints ``g_XXXXXXXX`` =
``{"generator": state_dict}`` with weight norm; it is folded into plain weights on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

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

LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class HiFiGANConfig:
    resblock: str  #: "1" (two convs per dilation) or "2" (one conv per dilation)
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    n_mels: int = REGNET.n_mels

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)


_MRF_V12 = dict(resblock_kernel_sizes=(3, 7, 11), resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)))
VARIANTS: dict[str, HiFiGANConfig] = {
    "v1": HiFiGANConfig("1", (8, 8, 2, 2), (16, 16, 4, 4), 512, **_MRF_V12),
    "v2": HiFiGANConfig("1", (8, 8, 2, 2), (16, 16, 4, 4), 128, **_MRF_V12),
    "v3": HiFiGANConfig("2", (8, 8, 4), (16, 16, 8), 256, (3, 5, 7), ((1, 2), (2, 6), (3, 12))),
}
#: Generator parameter counts reported in the HiFi-GAN paper (millions).
PAPER_PARAMETERS_M = {"v1": 13.92, "v2": 0.92, "v3": 1.46}


def hifigan_config(variant: str) -> HiFiGANConfig:
    try:
        return VARIANTS[variant.lower()]
    except KeyError:
        raise ValueError(f"unknown HiFi-GAN variant {variant!r}; known: {sorted(VARIANTS)}") from None


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d)) for d in dilation
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size)) for _ in dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d)) for d in dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """mel (B, n_mels, F) -> waveform (B, 1, F * hop) in [-1, 1]."""

    def __init__(self, config: HiFiGANConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(c.n_mels, c.upsample_initial_channel, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(
                c.upsample_initial_channel // 2**i,
                c.upsample_initial_channel // 2 ** (i + 1),
                k,
                u,
                padding=(k - u) // 2,
            )
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True))
        )
        block = ResBlock1 if c.resblock == "1" else ResBlock2
        self.resblocks = nn.ModuleList(
            block(c.upsample_initial_channel // 2 ** (i + 1), k, tuple(d))
            for i in range(len(self.ups))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
        )
        self.conv_post = nn.Conv1d(c.upsample_initial_channel // 2 ** len(self.ups), 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))  # default slope 0.01, as the reference


def build_hifigan(variant: str = "v1", checkpoint: str | Path | None = None, seed: int = 0) -> HiFiGANGenerator:
    """HiFi-GAN from an official ``g_XXXXXXXX`` (``{"generator": state_dict}``) or seeded random weights."""
    model = HiFiGANGenerator(hifigan_config(variant))
    if checkpoint is None:
        return seeded_init(model, seed).eval()
    blob = torch_load(checkpoint)
    if not isinstance(blob, dict) or "generator" not in blob:
        keys = sorted(blob)[:8] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{checkpoint}: not a HiFi-GAN generator checkpoint (no 'generator'; has {keys})")
    load_strict(model, fold_weight_norm(blob["generator"]), source=str(checkpoint))
    return model.eval()


def hifigan_checkpoint(model: HiFiGANGenerator) -> dict:
    """The official ``g_XXXXXXXX`` layout of ``model`` (weight norm split into g and v)."""
    return {"generator": split_weight_norm(model.state_dict(), conv_weight_keys(model))}
