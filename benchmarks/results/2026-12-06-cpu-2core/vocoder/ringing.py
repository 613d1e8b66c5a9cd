"""How much of an impact's ringing a vocoder keeps: fed the true mel of 8 held-out generated clips (seeds
1,000,000-1,000,007, 8 s; in process, fp32), the level (dB) of the clip's own 3 strongest mel bands over the
frames 2-12 after each true onset (the modes ringing after the click), own minus vocoded, averaged over
onsets and clips. Usage: python ringing.py CHECKPOINT... (one JSON line per checkpoint)."""

import json
import sys

import numpy as np
import torch

from s2s.audio import mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.models.melgan import build_melgan
from s2s.synth import HELD_OUT_SEEDS, make_clip

clips = [make_clip(s, 8.0) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + 8)]
mels = [mel_spectrogram_librosa(c.audio.astype(np.float32)) for c in clips]
for path in sys.argv[1:]:
    vocoder = build_melgan(checkpoint=path)
    deficits, own_levels = [], []
    for clip, mel in zip(clips, mels, strict=True):
        with torch.no_grad():
            wave = vocoder(torch.from_numpy(mel)[None])[0, 0].numpy()[: clip.audio.size]
        vocoded = mel_spectrogram_librosa(wave)
        for t in clip.onsets:
            f = round(float(t) * REGNET.sample_rate / REGNET.hop_length)
            if f + 13 > mel.shape[1]:
                continue
            own, voc = mel[:, f + 2 : f + 13], vocoded[:, f + 2 : f + 13]
            bands = np.argsort(own.mean(1))[-3:]
            scale = -REGNET.min_level_db  # RegNet's [0, 1] scale spans 100 dB
            deficits.append(float((own[bands] - voc[bands]).mean() * scale))
            own_levels.append(float(own[bands].mean() * scale + REGNET.min_level_db))
    row = {"checkpoint": path, "ringing_deficit_db": float(np.mean(deficits)), "onsets": len(deficits),
           "own_ringing_level_db": float(np.mean(own_levels))}  # fmt: skip
    sys.stdout.write(json.dumps(row) + "\n")
