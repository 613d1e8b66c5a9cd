"""What makes a vocoder's sound natural rather than only close in spectrum: MelGAN's multi-scale
discriminator (Kumar et al., NeurIPS 2019) with feature matching, trained with least-squares GAN losses
(as HiFi-GAN does).

A vocoder trained on spectral losses alone leaves a steady tone on the harmonics of its hop rate (the
upsampling layers' period): no spectral loss over short frames sees a pattern that repeats exactly every
256 samples; a discriminator that looks at the raw waveform does, most directly one that folds it into rows
of one hop and looks down each phase. The same least-squares game can be played on the generator's mels
(:class:`MelDiscriminator`). Training only: none of this is exported or served.

- :class:`ScaleDiscriminator`: strided, grouped 1-D convolutions over a waveform (MelGAN's
  ``NLayerDiscriminator``; channels capped at ``max_channels`` to fit a CPU budget), weight-normalised; it
  returns every layer's activations, the last being the score map.
- :class:`MultiScaleDiscriminator`: the same discriminator on the waveform, and on it average-pooled by 2 and 4.
- :class:`PeriodDiscriminator`: HiFi-GAN's multi-period idea at the one period where the buzz lives, the hop.
- :class:`VocoderDiscriminator`: both, what ``s2s train``'s adversarial vocoder steps train against.
- :class:`MelDiscriminator`: a window's mel beside the features the generator was fed, what
  ``s2s train --generator-adversarial-weight`` trains the generator against: a regression loss answers an
  uncertain event with the mean of its training (a low, wide rise); a discriminator that sees the picture's
  features tells that from a real event's shape and asks the generator to commit.
- :func:`discriminator_loss`, :func:`generator_adversarial_loss`, :func:`feature_matching_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass(frozen=True)
class DiscriminatorConfig:
    scales: int = 3
    ndf: int = 16
    n_layers: int = 4
    downsampling: int = 4
    #: MelGAN caps at 1024; 512 quarters the cost of the widest layers, which a CPU budget needs
    max_channels: int = 512


class ScaleDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        d = config.downsampling
        layers = [nn.Sequential(nn.ReflectionPad1d(7), weight_norm(nn.Conv1d(1, config.ndf, 15)), nn.LeakyReLU(0.2))]
        channels = config.ndf
        for _ in range(config.n_layers):
            previous, channels = channels, min(channels * d, config.max_channels)
            conv = nn.Conv1d(previous, channels, 10 * d + 1, stride=d, padding=5 * d, groups=previous // 4)
            layers.append(nn.Sequential(weight_norm(conv), nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(weight_norm(nn.Conv1d(channels, channels, 5, padding=2)), nn.LeakyReLU(0.2)))
        layers.append(weight_norm(nn.Conv1d(channels, 1, 3, padding=1)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator idea at one period: the waveform folded into rows of ``period`` samples
    (B, 1, N / period, period), 2-D convolutions along the rows only, so each phase of the period is
    looked at as its own sequence. At the vocoder's hop (256 samples) a waveform repeated every hop is a
    constant down each column: the hop-rate buzz, in plain sight. Returns every layer's activations."""

    def __init__(self, period: int, channels: tuple[int, ...] = (16, 64, 256, 256)) -> None:
        super().__init__()
        self.period = period
        layers, previous = [], 1
        for i, c in enumerate(channels):
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            layers.append(nn.Sequential(weight_norm(nn.Conv2d(previous, c, (5, 1), stride, padding=(2, 0))),
                                        nn.LeakyReLU(0.2)))  # fmt: skip
            previous = c
        layers.append(weight_norm(nn.Conv2d(previous, 1, (3, 1), padding=(1, 0))))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, c, n = x.shape
        if n % self.period:
            x = nn.functional.pad(x, (0, self.period - n % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)  # (B, 1, rows, period)
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """waveform (B, 1, N) -> for each scale, the list of its layers' activations (the last: scores)."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        self.config = config
        self.discriminators = nn.ModuleList(ScaleDiscriminator(config) for _ in range(config.scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, discriminator in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            out.append(discriminator(x))
        return out


class VocoderDiscriminator(nn.Module):
    """The multi-scale discriminator (three scales) and a period discriminator at the vocoder's hop: waveform
    (B, 1, N) -> one list of layer activations per sub-discriminator (the last of each: its scores)."""

    def __init__(self, hop: int, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        self.scales = MultiScaleDiscriminator(config)
        self.period = PeriodDiscriminator(hop)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        return [*self.scales(x), self.period(x)]


class MelDiscriminator(nn.Module):
    """A mel (B, mels, T * k) and the features it was generated from (B, T, visual_dim) -> one sub-discriminator's
    activations and, last, a score per mel frame (B, 1, T * k): the features projected to 64 channels and repeated
    over their frame's k mel frames, beside the mel, through dilated convolutions (a receptive field of about
    0.7 s at 86 mel frames a second)."""

    def __init__(self, visual_dim: int, mels: int = 80, width: int = 128) -> None:
        super().__init__()
        self.project = nn.Linear(visual_dim, 64)
        layers, channels = [], mels + 64
        for dilation in (1, 2, 4, 8):
            layers.append(nn.Sequential(nn.Conv1d(channels, width, 5, padding=2 * dilation, dilation=dilation),
                                        nn.LeakyReLU(0.2)))  # fmt: skip
            channels = width
        layers.append(nn.Conv1d(width, 1, 3, padding=1))
        self.layers = nn.ModuleList(layers)

    def forward(self, mel: torch.Tensor, features: torch.Tensor) -> list[list[torch.Tensor]]:
        k = mel.shape[-1] // features.shape[1]
        h = torch.cat([mel, self.project(features).transpose(1, 2).repeat_interleave(k, dim=-1)], dim=1)
        activations = []
        for layer in self.layers:
            h = layer(h)
            activations.append(h)
        return [activations]


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Least squares: real scores towards 1, generated towards 0, averaged over sub-discriminators."""
    losses = [(r[-1] - 1).square().mean() + f[-1].square().mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(losses).mean()


def generator_adversarial_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Least squares: generated scores towards 1, averaged over sub-discriminators."""
    return torch.stack([(f[-1] - 1).square().mean() for f in fake]).mean()


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's activations on real and generated sound (every layer but the scores),
    averaged over layers and sub-discriminators: the generator learns the statistics the discriminator looks at."""
    losses = [
        (f - r.detach()).abs().mean()
        for real_scale, fake_scale in zip(real, fake, strict=True)
        for r, f in zip(real_scale[:-1], fake_scale[:-1], strict=True)
    ]
    return torch.stack(losses).mean()
