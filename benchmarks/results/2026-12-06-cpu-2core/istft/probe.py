"""The vocoders of this folder on the true mel of the 8 held-out generated clips (seeds 1,000,000-1,000,007,
8 s; in process, fp32, one thread), as the probes of ../vocoder/ do: hop-rate buzz, log-mel distance, onset
accuracy, ringing lost (s2s.quality; means over clips). Each checkpoint is built as `s2s export` builds it
(the architecture it records). Output: probe.txt.

Usage: python probe.py CHECKPOINT [CHECKPOINT ...]   (run from the project root)
"""

import sys

import numpy as np
import torch

from s2s.alignment import onset_scores
from s2s.audio import mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.export.specs import build_vocoder
from s2s.models.checkpoints import recorded_architecture
from s2s.quality import hop_buzz_db, log_mel_distance_db, ringing_lost_db
from s2s.synth import HELD_OUT_SEEDS, make_clip

torch.set_num_threads(1)
clips = [make_clip(s, 8.0) for s in range(HELD_OUT_SEEDS.start, HELD_OUT_SEEDS.start + 8)]
mels = [mel_spectrogram_librosa(c.audio.astype(np.float32)) for c in clips]
for path in sys.argv[1:]:
    v = build_vocoder(recorded_architecture(path) or "melgan", path, 0)
    rows = []
    with torch.no_grad():
        for c, m in zip(clips, mels, strict=True):
            w = v(torch.from_numpy(m)[None]).reshape(-1).numpy()[: c.audio.size]
            accuracy = onset_scores(w, REGNET.sample_rate, c.onsets).accuracy
            ringing = ringing_lost_db(w, c.audio, c.onsets)
            rows.append((hop_buzz_db(w), log_mel_distance_db(w, c.audio), accuracy, ringing))
    scores = np.mean(rows, axis=0).round(3).tolist()
    sys.stdout.write(f"{path} [buzz, log-mel, onset accuracy, ringing lost] {scores}\n")
