"""Fine-tunes of the shipped demo vocoder with other losses, probed every --every steps on the true mel of 8
held-out generated clips (seeds 1,000,000-1,000,007, 8 s; in process, fp32): hop-rate buzz (dB), log-mel
distance to the clip's own sound (dB), onset accuracy. Training segments: 32 mel frames of the 80 training
clips (seeds 0-79, 6 s), batch 8, as `s2s train`. One JSON line per probe in --out.

Usage: python finetune.py --out A.jsonl [--hop-disc] [--msd 0|1] [--mel-w 45] [--fm-w 2] [--periodic-w 0]
       [--excess] [--mulaw 0] [--linear-w 0] [--lr 1e-4] [--steps 600] [--every 150] [--threads 1] [--save CKPT]
"""

import argparse
import json
import math
import random
import time

import numpy as np
import torch
from torch import nn

from s2s.alignment import onset_scores
from s2s.audio import MelSpectrogram, mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.models.melgan import build_melgan
from s2s.quality import hop_buzz_db, log_mel_distance_db
from s2s.synth import HELD_OUT_SEEDS, make_clip
from s2s.training.adversarial import (
    MultiScaleDiscriminator,
    PeriodDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from s2s.training.train import STFTLoss, hop_periodic_loss
from s2s.weights import DEMO_VOCODER

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--every", type=int, default=150)
ap.add_argument("--mel-w", type=float, default=45, help="mel loss weight (RegNet's [0, 1] scale)")
ap.add_argument("--fm-w", type=float, default=2, help="feature matching weight")
ap.add_argument("--adv-w", type=float, default=1)
ap.add_argument("--periodic-w", type=float, default=0, help="hop-periodic loss weight")
ap.add_argument("--excess", action="store_true", help="periodic loss: only the excess of the periodic level")
ap.add_argument("--hop-disc", action="store_true", help="a period discriminator at the hop")
ap.add_argument("--msd", type=int, default=1, help="MelGAN's multi-scale discriminator")
ap.add_argument("--mulaw", type=float, default=0, help="mu-law compand the discriminators' input (0: off)")
ap.add_argument("--lr", type=float, default=1e-4)
ap.add_argument("--dlr", type=float, default=2e-4)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--linear-w", type=float, default=0, help="spectral convergence of the linear mel magnitudes")
ap.add_argument("--save", default="")
ap.add_argument("--out", required=True)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.set_flush_denormal(True)
torch.manual_seed(0)
rng = random.Random(0)
hop = REGNET.hop_length
mel = MelSpectrogram()
stft = STFTLoss()
train = [make_clip(s, 6.0) for s in range(80)]
waves = [c.audio.astype(np.float32) for c in train]
pairs = [(mel(torch.from_numpy(w)[None])[0].numpy(), w) for w in waves]
held = [make_clip(s, 8.0) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + 8)]
model = build_melgan(checkpoint=DEMO_VOCODER).train()
discriminators = nn.ModuleList()
if a.msd:
    discriminators.append(MultiScaleDiscriminator())
if a.hop_disc:
    discriminators.append(PeriodDiscriminator(hop))


def discriminate(x):
    if a.mulaw:
        x = torch.sign(x) * torch.log1p(a.mulaw * x.abs()) / math.log1p(a.mulaw)
    out = []
    for d in discriminators:
        o = d(x)
        out += o if isinstance(d, MultiScaleDiscriminator) else [o]
    return out


opt_g = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.8, 0.99))
opt_d = torch.optim.Adam(discriminators.parameters(), lr=a.dlr, betas=(0.8, 0.99)) if len(discriminators) else None


def probe():
    model.eval()
    scores = []
    with torch.no_grad():
        for c in held:
            m = torch.from_numpy(mel_spectrogram_librosa(c.audio.astype(np.float32)))[None]
            w = model(m)[0, 0].numpy()[: c.audio.size]
            accuracy = onset_scores(w, REGNET.sample_rate, c.onsets).accuracy
            scores.append((hop_buzz_db(w), log_mel_distance_db(w, c.audio), accuracy))
    model.train()
    return np.mean(scores, axis=0).round(3).tolist()


def linear_mel(v):
    window = torch.hann_window(REGNET.n_fft)
    return mel.basis @ torch.stft(v, REGNET.n_fft, hop, window=window, return_complex=True).abs()


def record(row):
    with open(a.out, "a") as out:
        out.write(json.dumps(row) + "\n")


record({"args": vars(a), "step": 0, "probe": probe()})
t0, history = time.time(), []
for step in range(1, a.steps + 1):
    ms, au = [], []
    for _ in range(8):
        m, x = pairs[rng.randrange(len(pairs))]
        start = rng.randrange(0, min(m.shape[1], x.size // hop) - 32 + 1)
        ms.append(m[:, start : start + 32])
        au.append(x[start * hop : (start + 32) * hop])
    m, x = torch.from_numpy(np.stack(ms)), torch.from_numpy(np.stack(au))
    y = model(m)[:, :, : x.shape[1]]
    mel_loss = (mel(y[:, 0]) - mel(x)).abs().mean()
    loss = stft(y[:, 0], x) + a.mel_w * mel_loss
    if a.linear_w:  # spectral convergence of the linear mel magnitudes: weighs the loud bins (the ringing)
        ly, lx = linear_mel(y[:, 0]), linear_mel(x)
        loss = loss + a.linear_w * torch.linalg.norm(ly - lx) / torch.linalg.norm(lx)
    if a.periodic_w and not a.excess:
        loss = loss + a.periodic_w * hop_periodic_loss(y[:, 0], x)
    if a.periodic_w and a.excess:
        periodic = lambda v: v.reshape(v.shape[0], -1, hop).mean(1)  # noqa: E731
        level = x.square().mean(1).sqrt() + 1e-3
        mine, theirs = (periodic(v).square().mean(1).sqrt() for v in (y[:, 0], x))
        loss = loss + a.periodic_w * (torch.relu(mine - theirs) / level).mean()
    if len(discriminators):
        real = x[:, None]
        d_loss = discriminator_loss(discriminate(real), discriminate(y.detach()))
        opt_d.zero_grad()
        d_loss.backward()
        nn.utils.clip_grad_norm_(discriminators.parameters(), 1.0)
        opt_d.step()
        with torch.no_grad():
            on_real = discriminate(real)
        on_fake = discriminate(y)
        loss = loss + a.adv_w * generator_adversarial_loss(on_fake) + a.fm_w * feature_matching_loss(on_real, on_fake)
    opt_g.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt_g.step()
    history.append((loss.item(), mel_loss.item()))
    if step % a.every == 0 or step == a.steps:
        row = {"step": step, "s_per_step": (time.time() - t0) / step, "loss": np.mean(history, axis=0).tolist()}
        record(row | {"probe": probe()})
        history = []
        if a.save:
            torch.save(
                {
                    "config": {"n_mels": 80, "ngf": 32, "n_residual_layers": 3, "ratios": [8, 8, 2, 2]},
                    "state_dict": model.state_dict(),
                },
                a.save,
            )
