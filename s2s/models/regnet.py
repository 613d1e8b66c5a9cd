"""RegNet spectrogram generator (``Regnet_G``), inference path.

Follows REGNET (Chen et al., IEEE TIP 2020; github.com/PeihaoChen/regnet, ``model.py``): visual
features (B, T, 2048) and a 512-d noise vector z repeated over time go through 3 x [Conv1d k5 -> 2048,
BN, ReLU], a 2-layer BiLSTM (hidden 512 per direction) and a linear projection to 1024; the
"audio forwarding" auxiliary branch (``lstm_last``) is concatenated - as zeros at inference, exactly
what the reference's ``aux_zero`` does - then a decoder (ConvT, Conv, ConvT, Conv) upsamples time x4
to 80 mel bins and a 5-layer postnet (tanh on the first 4) adds a residual. About 94.1 M parameters.

Departures from the reference, on purpose: z is an input instead of ``torch.randn(...).to('cuda:0')``
inside ``forward``; the auxiliary branch is kept only so that official checkpoints load strictly;
there is no ground-truth mel input. Module names match the reference, so its checkpoints
(``checkpoint_XXXXXX_netG``: ``{"optimizer_netG": state_dict, "iteration": ..., ...}``) load as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from s2s.constants import REGNET
from s2s.errors import OptionError
from s2s.models.checkpoints import CheckpointError, load_strict, seeded_init, torch_load
from s2s.repository import GENERATOR_INPUTS, REGNET_INPUTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegNetConfig:
    visual_dim: int = REGNET.visual_dim
    n_mel_channels: int = REGNET.n_mels
    random_z_dim: int = 512
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 2048
    encoder_kernel_size: int = 5
    encoder_n_lstm: int = 2
    auxiliary_dim: int = 32  #: the published dog checkpoint; RegNet's config.py default is 256
    decoder_conv_dim: int = 1024
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5
    #: what it is fed (:data:`GENERATOR_INPUTS`), in order; ``visual_dim`` is the sum of their widths
    inputs: tuple[str, ...] = REGNET_INPUTS

    @classmethod
    def from_record(cls, record: dict) -> RegNetConfig:
        """The config a checkpoint stores (``asdict``; one saved before ``inputs`` existed was fed RegNet's)."""
        return cls(**{**record, "inputs": tuple(record.get("inputs", REGNET_INPUTS))})


def with_inputs(config: RegNetConfig, inputs: Sequence[str]) -> RegNetConfig:
    """``config`` fed ``inputs`` (names of :data:`GENERATOR_INPUTS`, in the order they are joined), its
    ``visual_dim`` their widths' sum."""
    inputs = tuple(inputs)
    unknown = [name for name in inputs if name not in GENERATOR_INPUTS]
    if unknown or not inputs or len(set(inputs)) < len(inputs):
        raise OptionError(f"generator inputs {','.join(inputs) or '(none)'}: give each of "
                          f"{', '.join(GENERATOR_INPUTS)} at most once, at least one")  # fmt: skip
    return replace(config, inputs=inputs, visual_dim=sum(GENERATOR_INPUTS[name][1] for name in inputs))


def parse_inputs(text: str) -> tuple[str, ...]:
    """``--generator-inputs`` ("motion,flow") -> the names, checked (:func:`with_inputs`)."""
    inputs = tuple(part.strip() for part in text.split(",") if part.strip())
    return with_inputs(RegNetConfig(), inputs).inputs


#: Named configurations. "reference" is the published model; "small" is a reduced one for CPU training.
CONFIGS: dict[str, RegNetConfig] = {
    "reference": RegNetConfig(),
    "small": RegNetConfig(
        random_z_dim=64,
        encoder_embedding_dim=256,
        encoder_n_lstm=1,
        auxiliary_dim=8,
        decoder_conv_dim=128,
        postnet_embedding_dim=128,
    ),
}


def regnet_config(name: str) -> RegNetConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise OptionError(f"unknown RegNet configuration {name!r}; known: {', '.join(CONFIGS)}") from None


def config_name(config: RegNetConfig) -> str:
    """The name of ``config`` in :data:`CONFIGS` whatever it is fed, or "custom"."""
    if any(name not in GENERATOR_INPUTS for name in config.inputs):
        return "custom"
    return next((name for name, c in CONFIGS.items() if with_inputs(c, config.inputs) == config), "custom")


class ConvNorm(nn.Module):
    """Conv1d with 'same' padding (the reference's wrapper; keeps its ``.conv`` key level)."""

    def __init__(self, cin: int, cout: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Encoder(nn.Module):
    def __init__(self, c: RegNetConfig) -> None:
        super().__init__()
        dims = [c.visual_dim + c.random_z_dim] + [c.encoder_embedding_dim] * c.encoder_n_convolutions
        self.convolutions = nn.ModuleList(
            nn.Sequential(ConvNorm(dims[i], dims[i + 1], c.encoder_kernel_size), nn.BatchNorm1d(dims[i + 1]))
            for i in range(c.encoder_n_convolutions)
        )
        hidden = c.encoder_embedding_dim // 4
        self.BiLSTM = nn.LSTM(c.encoder_embedding_dim, hidden, c.encoder_n_lstm, batch_first=True, bidirectional=True)
        self.BiLSTM_proj = nn.Linear(2 * hidden, 2 * hidden)

    def forward(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = features.transpose(1, 2)  # (B, visual_dim, T)
        z = z.unsqueeze(2).expand(-1, -1, x.shape[2])  # (B, z_dim, T)
        x = torch.cat([x, z], dim=1)
        for conv in self.convolutions:
            x = torch.relu(conv(x))  # dropout(0.5) in training only
        x, _ = self.BiLSTM(x.transpose(1, 2))  # (B, T, 2 * hidden)
        return self.BiLSTM_proj(x)


class AuxiliaryLSTMLast(nn.Module):
    """The reference's audio-forwarding branch (``lstm_last``). Zeroed at inference; kept for checkpoints."""

    def __init__(self, c: RegNetConfig) -> None:
        super().__init__()
        self.BiLSTM = nn.LSTM(c.n_mel_channels, c.auxiliary_dim, 2, batch_first=True, bidirectional=True)
        self.BiLSTM_proj = nn.Linear(c.auxiliary_dim, c.auxiliary_dim)


class Decoder(nn.Module):
    def __init__(self, c: RegNetConfig) -> None:
        super().__init__()
        half, mels = c.decoder_conv_dim // 2, c.n_mel_channels
        self.model = nn.Sequential(
            nn.ConvTranspose1d(c.decoder_conv_dim + c.auxiliary_dim, half, 4, stride=2, padding=1),
            nn.BatchNorm1d(half),
            nn.ReLU(),
            nn.Conv1d(half, half, 5, padding=2),
            nn.BatchNorm1d(half),
            nn.ReLU(),
            nn.ConvTranspose1d(half, mels, 4, stride=2, padding=1),
            nn.BatchNorm1d(mels),
            nn.ReLU(),
            nn.Conv1d(mels, mels, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(1, 2))  # (B, T, C) -> (B, mels, 4T)


class Postnet(nn.Module):
    def __init__(self, c: RegNetConfig) -> None:
        super().__init__()
        n, e, k = c.postnet_n_convolutions, c.postnet_embedding_dim, c.postnet_kernel_size
        dims = [c.n_mel_channels] + [e] * (n - 1) + [c.n_mel_channels]
        self.convolutions = nn.ModuleList(
            nn.Sequential(ConvNorm(dims[i], dims[i + 1], k), nn.BatchNorm1d(dims[i + 1])) for i in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convolutions[:-1]:
            x = torch.tanh(conv(x))
        return self.convolutions[-1](x)


class RegNetGenerator(nn.Module):
    """features (B, T, visual_dim: its inputs joined, 2048 for RegNet's), z (B, z_dim) -> mel (B, 80, 4T),
    unclamped (the reference's output)."""

    def __init__(self, config: RegNetConfig = RegNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.auxiliary = AuxiliaryLSTMLast(config)
        self.decoder = Decoder(config)
        self.postnet = Postnet(config)

    def forward(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(features, z)  # (B, T, 1024)
        aux = encoded.new_zeros(encoded.shape[0], encoded.shape[1], self.config.auxiliary_dim)  # aux_zero
        mel = self.decoder(torch.cat([encoded, aux], dim=2))
        return mel + self.postnet(mel)


def load_regnet_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``checkpoint_XXXXXX_netG``; returns (state_dict, metadata). Our own checkpoints add ``config``."""
    blob = torch_load(path)
    if not isinstance(blob, dict) or "optimizer_netG" not in blob:
        keys = sorted(blob)[:8] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path}: not a RegNet generator checkpoint (no 'optimizer_netG'; has {keys})")
    state = {k.removeprefix("module."): v for k, v in blob["optimizer_netG"].items()}
    meta = {k: v for k, v in blob.items() if k != "optimizer_netG"}
    return state, meta


def save_regnet_checkpoint(
    model: RegNetGenerator, path: str | Path, iteration: int = 0, lr: float = 0.0, extra: dict | None = None
) -> None:
    """Write the reference layout, plus our config so the model can be rebuilt from the file (and ``extra``
    keys such as the encoder fingerprints of s2s.training.train)."""
    torch.save(
        {"iteration": iteration, "learning_rate": lr, "optimizer_netG": model.state_dict(),
         "config": asdict(model.config), **(extra or {})},
        path,
    )  # fmt: skip


def build_regnet(
    config: RegNetConfig | str = "reference",
    checkpoint: str | Path | None = None,
    seed: int = 0,
    inputs: Sequence[str] | None = None,
) -> RegNetGenerator:
    """A generator from ``checkpoint`` (its stored config wins, if any) or with seeded random weights (fed
    ``inputs``, if given: :func:`with_inputs`)."""
    config = regnet_config(config) if isinstance(config, str) else config
    if checkpoint is None:
        return seeded_init(RegNetGenerator(config if inputs is None else with_inputs(config, inputs)), seed).eval()
    state, meta = load_regnet_checkpoint(checkpoint)
    if "config" in meta:
        config = RegNetConfig.from_record(meta["config"])
    model = RegNetGenerator(config)
    load_strict(model, state, source=str(checkpoint))
    return model.eval()


class GeneratorExport(nn.Module):
    """Export wrapper: the generator's inputs (its config's, in order: e.g. rgb_features (B, n, 1024),
    flow_features (B, n, 1024)), frame_index (B, T) int32, z (B, z_dim) -> mel (B, 80, 4T) in [0, 1].

    The encoders see each distinct frame of a window once (n of them); ``frame_index`` says which makes
    each of the window's T frames, so the inputs are looped here (RegNet loops clips shorter than a
    window) rather than computed again. Concatenates the inputs inside the graph (no extra ensemble
    step) and clamps the mel to the range the vocoders were trained on.
    """

    def __init__(self, generator: RegNetGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        *inputs, frame_index, z = tensors
        features = torch.cat(inputs, dim=2) if len(inputs) > 1 else inputs[0]
        index = frame_index.long().unsqueeze(2).expand(-1, -1, features.shape[2])
        return self.generator(torch.gather(features, 1, index), z).clamp(0.0, 1.0)
