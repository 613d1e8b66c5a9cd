"""Where the ringing goes: for the first impact of two held-out clips (seeds 1,000,000 and 1,000,004, 8 s), the
level (dB, RegNet's scale) of the clip's own 3 strongest mel bands over the frames 2-12 after the onset, frame by
frame from 2 before the onset to 15 after, in the own sound and in a vocoder's sound of the true mel (in process,
fp32), next to the own sound's median band (its room tone). Usage: python ringing_trace.py CHECKPOINT."""

import sys

import numpy as np
import torch

from s2s.audio import mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.models.melgan import build_melgan
from s2s.synth import HELD_OUT_SEEDS, make_clip

vocoder = build_melgan(checkpoint=sys.argv[1])


def to_db(m) -> str:
    return " ".join(f"{v:6.1f}" for v in np.atleast_1d(m * -REGNET.min_level_db + REGNET.min_level_db))


for seed in (HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + 4):
    clip = make_clip(seed, 8.0)
    mel = mel_spectrogram_librosa(clip.audio.astype(np.float32))
    with torch.no_grad():
        wave = vocoder(torch.from_numpy(mel)[None])[0, 0].numpy()[: clip.audio.size]
    made = mel_spectrogram_librosa(wave)
    at = round(float(clip.onsets[0]) * REGNET.sample_rate / REGNET.hop_length)
    bands = np.argsort(mel[:, at + 2 : at + 13].mean(1))[-3:]
    sys.stdout.write(f"seed {seed} {clip.kinds}, onset {clip.onsets[0]:.2f} s, mel bands {bands.tolist()}\n")
    sys.stdout.write("frame | own sound (3 bands) | vocoded true mel (3 bands) | own median band\n")
    for k in range(-2, 16):
        sys.stdout.write(f"{k:+3d} | {to_db(mel[bands, at + k])} | {to_db(made[bands, at + k])} "
                         f"| {to_db(np.median(mel[:, at + k]))}\n")  # fmt: skip
