"""Feasibility probe of a frequency-domain vocoder: can a network that predicts STFT log-magnitudes and phases
frame by frame and inverts them (an iSTFT head, as in Vocos) render the impacts' ringing and avoid the hop-rate
buzz within a CPU budget, where MelGAN (time-domain, transposed-convolution upsampling) does not?

The network: mel (80 x T) -> Conv1d 7 -> 256, 6 ConvNeXt blocks (depthwise conv 7, channel norm, 256 -> 768 ->
256, GELU, residual), Conv1d 1 -> 513 log-magnitudes and 513 phases, complex spectrum -> torch.istft (n_fft 1024,
hop 256, Hann, centred: frame t is centred on sample 256 t, as the mel's frames). Trained like `s2s train`'s
spectral steps (the 80 training clips of the data stage, batch 8 of 32 mel frames; multi-resolution STFT loss +
mel loss, here weighted 45) with Adam at --lr; --periodic-w adds the hop-periodic loss (s2s.training.train), --disc
trains against `s2s train`'s VocoderDiscriminator (multi-scale + hop period) with feature matching 2 and the
adversarial loss 1, as its adversarial vocoder steps do. Probed on the true mel of the 8 held-out
generated clips (seeds 1,000,000-1,000,007, 8 s; in process, fp32), next to the shipped MelGAN under the same
code: hop-rate buzz, log-mel distance, onset accuracy, ringing lost (s2s.quality; mean over clips).

Usage: python istft_probe.py --data runs/v2/data --out istft.jsonl [--steps 1500] [--every 500] [--lr 5e-4]
       [--periodic-w 0] [--disc] [--threads 2]
"""

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s2s.alignment import onset_scores
from s2s.audio import MelSpectrogram, mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.models.melgan import build_melgan
from s2s.quality import hop_buzz_db, log_mel_distance_db, ringing_lost_db
from s2s.synth import HELD_OUT_SEEDS, make_clip
from s2s.training.adversarial import (
    VocoderDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from s2s.training.train import ClipData, STFTLoss, hop_periodic_loss
from s2s.weights import DEMO_VOCODER

ap = argparse.ArgumentParser()
ap.add_argument("--data", type=Path, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--steps", type=int, default=1500)
ap.add_argument("--every", type=int, default=500)
ap.add_argument("--lr", type=float, default=5e-4)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--periodic-w", type=float, default=0.0)
ap.add_argument("--disc", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.set_flush_denormal(True)
torch.manual_seed(0)
N_FFT, HOP = 1024, REGNET.hop_length


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.GroupNorm(1, dim)
        self.up, self.down = nn.Conv1d(dim, 3 * dim, 1), nn.Conv1d(3 * dim, dim, 1)

    def forward(self, x):
        return x + self.down(nn.functional.gelu(self.up(self.norm(self.depthwise(x)))))


class ISTFTVocoder(nn.Module):
    def __init__(self, dim: int = 256, blocks: int = 6) -> None:
        super().__init__()
        self.inp = nn.Conv1d(REGNET.n_mels, dim, 7, padding=3)
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(blocks)])
        self.head = nn.Conv1d(dim, 2 * (N_FFT // 2 + 1), 1)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, mel):  # (B, 80, T) -> (B, 256 T)
        log_magnitude, phase = self.head(self.blocks(self.inp(mel))).chunk(2, dim=1)
        spectrum = torch.exp(log_magnitude.clamp(max=6.0)) * torch.exp(1j * phase)
        return torch.istft(spectrum, N_FFT, HOP, N_FFT, self.window, center=True, length=mel.shape[-1] * HOP)


clips = [make_clip(s, 8.0) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + 8)]
true_mels = [mel_spectrogram_librosa(c.audio.astype(np.float32)) for c in clips]


def probe(vocode) -> list[float]:
    scores = []
    with torch.no_grad():
        for clip, mel in zip(clips, true_mels, strict=True):
            wave = vocode(torch.from_numpy(mel)[None]).reshape(-1).numpy()[: clip.audio.size]
            scores.append((hop_buzz_db(wave), log_mel_distance_db(wave, clip.audio),
                           onset_scores(wave, REGNET.sample_rate, clip.onsets).accuracy,
                           ringing_lost_db(wave, clip.audio, clip.onsets)))  # fmt: skip
    return np.mean(scores, axis=0).round(3).tolist()


def record(row) -> None:
    with open(a.out, "a") as out:
        out.write(json.dumps(row) + "\n")


shipped = build_melgan(checkpoint=DEMO_VOCODER)
record({"vocoder": "shipped MelGAN", "probe [buzz, log-mel, onset accuracy, ringing lost]": probe(shipped)})
model = ISTFTVocoder()
optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.8, 0.99))
data, rng = ClipData(sorted(a.data.glob("*.npz")), ("rgb", "flow")), random.Random(0)
stft, mel = STFTLoss(), MelSpectrogram()
if a.disc:
    discriminator = VocoderDiscriminator(HOP)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.8, 0.99))
started = time.time()
for step in range(1, a.steps + 1):
    m, audio = data.segments(rng, 8, 32)
    y = model(m)
    loss = stft(y, audio) + 45 * (mel(y) - mel(audio)).abs().mean()
    if a.periodic_w:
        loss = loss + a.periodic_w * hop_periodic_loss(y, audio)
    if a.disc:
        real, fake = audio[:, None], y[:, None]
        d_loss = discriminator_loss(discriminator(real), discriminator(fake.detach()))
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        with torch.no_grad():
            on_real = discriminator(real)
        on_fake = discriminator(fake)
        loss = loss + generator_adversarial_loss(on_fake) + 2 * feature_matching_loss(on_real, on_fake)
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if step % a.every == 0:
        model.eval()
        record({"vocoder": "iSTFT head", "periodic_w": a.periodic_w, "disc": a.disc, "step": step,
                "loss": round(loss.item(), 4),
                "s_per_step": round((time.time() - started) / step, 3),
                "parameters": sum(p.numel() for p in model.parameters()),
                "probe [buzz, log-mel, onset accuracy, ringing lost]": probe(model)})  # fmt: skip
        model.train()
