"""Vocoder checkpoints on the true mel of 8 held-out generated clips (seeds 1,000,000-1,000,007, 8 s), in
process, fp32: hop-rate buzz, log-mel distance to the clip's own sound, onset accuracy (s2s.quality,
s2s.alignment). Usage: python probe.py CHECKPOINT... (prints one JSON line per checkpoint)."""

import json
import sys

import numpy as np
import torch

from s2s.alignment import onset_scores
from s2s.audio import mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.models.melgan import build_melgan
from s2s.quality import hop_buzz_db, log_mel_distance_db
from s2s.synth import HELD_OUT_SEEDS, make_clip

clips = [make_clip(s, 8.0) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + 8)]
for path in sys.argv[1:]:
    vocoder = build_melgan(checkpoint=path)
    scores = []
    with torch.no_grad():
        for clip in clips:
            mel = torch.from_numpy(mel_spectrogram_librosa(clip.audio.astype(np.float32)))[None]
            wave = vocoder(mel)[0, 0].numpy()[: clip.audio.size]
            accuracy = onset_scores(wave, REGNET.sample_rate, clip.onsets).accuracy
            scores.append((hop_buzz_db(wave), log_mel_distance_db(wave, clip.audio), accuracy))
    buzz, distance, accuracy = np.mean(scores, axis=0)
    row = {"checkpoint": path, "buzz_db": buzz, "mel_distance_db": distance, "onset_accuracy": accuracy}
    sys.stdout.write(json.dumps(row) + "\n")
