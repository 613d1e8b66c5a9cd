"""A frequency-domain vocoder: ConvNeXt blocks predict each mel frame's STFT (log-magnitude and phase), and an
inverse STFT turns it into sound (the iSTFT head of Vocos, Siuzdak 2023, here at 2.8 M parameters).

Why it is here next to MelGAN: MelGAN upsamples by the hop with transposed convolutions, which adds the same
waveform to every frame (a buzz on the harmonics of 22050 / 256 Hz) and loses the ringing of struck objects
(their modes, a few narrow bands that last many frames). A head that writes the spectrum directly renders
those bands, and one network step costs a fifth of MelGAN's on a CPU. A mel alone says nothing about the
phase of noise: a network that reads only a steady mel writes the same phase every frame, which is a hop-rate
buzz again. So the network also reads ``noise_channels`` of noise per frame (as the generator reads z): fresh
Gaussian noise in training; when served, a fixed table of it (part of the weights: the same input always makes
the same sound), read frame by frame and repeated after ``noise_frames`` frames (11.9 s, longer than a window).
Served in windows that overlap, the table is read again from its start every ``noise_period`` frames, which the
export sets to the window stride (:attr:`s2s.windowing.PreprocessOptions.stride_mel_frames`, 776 frames = 9 s by
default): every window then reads the noise that its frame in the whole video reads, and two windows make the same
sound where they overlap (read from each window's own first frame, their phases differed there and the cross-fade
stepped: benchmarks/README.md, "Seams: the iSTFT vocoder's noise read at the video's frame").

The inverse STFT is written with plain operations that every ONNX runtime and TensorRT run: a fixed inverse
real-DFT basis (Hann window folded in) as a matrix product, then overlap-add of the hop-long quarters of the
frames by padding and summing, divided by the window's overlap envelope; centred frames (frame t is centred on
sample 256 t, as the mel's), output length frames x hop. It equals ``torch.istft(..., center=True)``.

mel (B, n_mels, F) in [0, 1] -> waveform (B, 1, F * hop), as MelGAN's interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from s2s.constants import REGNET
from s2s.models.checkpoints import CheckpointError, load_strict, seeded_init, torch_load

#: what our checkpoints of this network record as their architecture (export and eval read it)
ARCHITECTURE = "istft"


@dataclass(frozen=True)
class ISTFTVocoderConfig:
    n_mels: int = REGNET.n_mels
    dim: int = 256
    blocks: int = 6
    n_fft: int = 1024
    hop_length: int = REGNET.hop_length
    noise_channels: int = 16
    noise_frames: int = 1024
    #: largest log-magnitude the head may write (e^6: far above any real frame's bins)
    max_log_magnitude: float = 6.0

    def __post_init__(self) -> None:
        if self.n_fft % self.hop_length:
            raise ValueError(f"n_fft {self.n_fft} must be a multiple of the hop {self.hop_length}")


class ConvNeXtBlock(nn.Module):
    """Depthwise convolution over time, channel norm, pointwise 3x expansion with GELU, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.GroupNorm(1, dim)
        self.expand, self.project = nn.Conv1d(dim, 3 * dim, 1), nn.Conv1d(3 * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(nn.functional.gelu(self.expand(self.norm(self.depthwise(x)))))


class InverseSTFT(nn.Module):
    """Centred inverse STFT (Hann window) of (real, imag) spectra (B, n_fft/2+1, F) -> (B, F * hop)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * torch.pi / n_fft * torch.outer(torch.arange(bins, dtype=torch.float64), torch.arange(n_fft))
        weight = torch.full((bins, 1), 2.0 / n_fft, dtype=torch.float64)
        weight[0], weight[-1] = 1.0 / n_fft, 1.0 / n_fft  # DC and Nyquist appear once in the full spectrum
        # frames (B, n_fft, F) = basis^T @ spectrum: the real inverse DFT, windowed for the overlap-add
        self.register_buffer("cos_basis", (weight * torch.cos(angle) * window).T.float().contiguous(), False)
        self.register_buffer("sin_basis", (-weight * torch.sin(angle) * window).T.float().contiguous(), False)
        self.register_buffer("window_square", (window**2).float(), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, n_fft, F) frames, one every ``hop`` samples -> (B, (F + quarters - 1) * hop)."""
        quarters = self.n_fft // self.hop
        parts = frames.reshape(frames.shape[0], quarters, self.hop, frames.shape[-1])
        summed = sum(nn.functional.pad(parts[:, q], (q, quarters - 1 - q)) for q in range(quarters))
        return summed.transpose(1, 2).reshape(frames.shape[0], -1)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        count = real.shape[-1]
        frames = torch.matmul(self.cos_basis, real) + torch.matmul(self.sin_basis, imag)
        ones = torch.ones_like(real[:1, :1]).expand(1, self.n_fft, count)
        envelope = self._overlap_add(ones * self.window_square[:, None])
        waveform = self._overlap_add(frames) / envelope.clamp_min(1e-11)
        start = self.n_fft // 2
        return waveform[:, start : start + count * self.hop]


class ISTFTVocoder(nn.Module):
    """mel (B, n_mels, F) in [0, 1] -> waveform (B, 1, F * hop); ``noise`` (B, noise_channels, F) in training,
    the fixed table otherwise."""

    def __init__(self, config: ISTFTVocoderConfig = ISTFTVocoderConfig(), noise_seed: int = 0) -> None:
        super().__init__()
        self.config = config
        c = config
        table = torch.randn(c.noise_channels, c.noise_frames, generator=torch.Generator().manual_seed(noise_seed))
        self.register_buffer("noise_table", table)  # kept in the weights: the served sound is reproducible
        #: served: frame t of a mel reads the table at (t mod noise_period) mod noise_frames (a serving choice, set
        #: by the export from the window stride; not in the checkpoint)
        self.noise_period = c.noise_frames
        self.inp = nn.Conv1d(c.n_mels + c.noise_channels, c.dim, 7, padding=3)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(c.dim) for _ in range(c.blocks)])
        self.head = nn.Conv1d(c.dim, 2 * (c.n_fft // 2 + 1), 1)
        self.istft = InverseSTFT(c.n_fft, c.hop_length)

    def served_noise(self, mel: torch.Tensor) -> torch.Tensor:
        """The fixed noise table read frame by frame, from its start again every ``noise_period`` frames (and
        repeated past its end), for every item of the batch."""
        index = torch.arange(mel.shape[-1], device=mel.device) % self.noise_period % self.noise_table.shape[-1]
        return self.noise_table[:, index].unsqueeze(0).expand(mel.shape[0], -1, -1)

    def forward(self, mel: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        noise = self.served_noise(mel) if noise is None else noise
        x = self.blocks(self.inp(torch.cat([mel, noise.to(mel.dtype)], dim=1)))
        log_magnitude, phase = self.head(x).chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude.clamp(max=self.config.max_log_magnitude))
        return self.istft(magnitude * torch.cos(phase), magnitude * torch.sin(phase)).unsqueeze(1)


def istft_checkpoint(model: ISTFTVocoder) -> dict:
    """Our checkpoint of ``model``: its architecture and configuration with the weights (and noise table)."""
    return {"architecture": ARCHITECTURE, "config": asdict(model.config), "state_dict": model.state_dict()}


def build_istft_vocoder(
    config: ISTFTVocoderConfig = ISTFTVocoderConfig(), checkpoint: str | Path | None = None, seed: int = 0
) -> ISTFTVocoder:
    """The vocoder from one of our checkpoints (:func:`istft_checkpoint`; float16 files load as float32), or
    seeded random weights (and noise table)."""
    if checkpoint is None:
        return seeded_init(ISTFTVocoder(config, noise_seed=seed), seed).eval()
    blob = torch_load(checkpoint)
    if not isinstance(blob, dict) or blob.get("architecture") != ARCHITECTURE:
        raise CheckpointError(f"{checkpoint}: not an {ARCHITECTURE} vocoder checkpoint (no such architecture record)")
    model = ISTFTVocoder(ISTFTVocoderConfig(**blob["config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    load_strict(model, state, source=str(checkpoint))
    return model.eval()
