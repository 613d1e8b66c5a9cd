"""RegNet's mel spectrogram, as a torch module (training, tests) and as a librosa reference.

Recipe (see :mod:`s2s.constants`): |STFT| (n_fft 1024, hop 256, Hann 1024, centred with reflect
padding, as librosa < 0.10 did for the reference), Slaney mel 80 bands 125-7600 Hz, then
``clip((20 log10(max(mel, 1e-5)) - 20 + 100) / 100, 0, 1)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from s2s.constants import REGNET, Recipe


def mel_basis(recipe: Recipe = REGNET) -> np.ndarray:
    """Slaney-normalised mel filter bank, float32 (n_mels, n_fft // 2 + 1)."""
    import librosa

    return librosa.filters.mel(
        sr=recipe.sample_rate, n_fft=recipe.n_fft, n_mels=recipe.n_mels, fmin=recipe.fmin, fmax=recipe.fmax
    ).astype(np.float32)


def normalize_db(mel: torch.Tensor | np.ndarray, recipe: Recipe = REGNET):
    """Mel magnitudes -> RegNet's [0, 1] log scale (works on numpy arrays and tensors)."""
    lib = torch if isinstance(mel, torch.Tensor) else np
    db = 20 * lib.log10(lib.maximum(mel, lib.full_like(mel, recipe.amp_floor))) - recipe.ref_level_db
    return lib.clip((db - recipe.min_level_db) / -recipe.min_level_db, 0.0, 1.0)


class MelSpectrogram(nn.Module):
    """(B, samples) float waveform in [-1, 1] -> (B, n_mels, frames) in [0, 1].

    ``frames = 1 + samples // hop``; RegNet keeps the first ``4 * T`` of them per window.
    """

    def __init__(self, recipe: Recipe = REGNET) -> None:
        super().__init__()
        self.recipe = recipe
        self.register_buffer("basis", torch.from_numpy(mel_basis(recipe)), persistent=False)
        self.register_buffer("window", torch.hann_window(recipe.win_length), persistent=False)

    def magnitudes(self, wav: torch.Tensor) -> torch.Tensor:
        """The linear mel magnitudes, before the dB scale: (B, n_mels, frames)."""
        r = self.recipe
        spec = torch.stft(
            wav, n_fft=r.n_fft, hop_length=r.hop_length, win_length=r.win_length, window=self.window,
            center=True, pad_mode="reflect", return_complex=True,
        )  # fmt: skip
        return self.basis @ spec.abs()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return normalize_db(self.magnitudes(wav), self.recipe)


def mel_spectrogram_librosa(wav: np.ndarray, recipe: Recipe = REGNET) -> np.ndarray:
    """Reference implementation with librosa, (samples,) -> (n_mels, frames)."""
    import librosa

    spec = np.abs(
        librosa.stft(
            wav.astype(np.float32), n_fft=recipe.n_fft, hop_length=recipe.hop_length,
            win_length=recipe.win_length, window="hann", center=True, pad_mode="reflect",
        )
    )  # fmt: skip
    return normalize_db(mel_basis(recipe) @ spec, recipe)
