"""The shipped generator and vocoder on the cached features of the 32 independent clips (probe.py's cache,
runs/gfeat): onset accuracy per clip with its frame rate and size, and the mean per frame rate.

    python per_rate.py   (from the repository root, after probe.py features)
"""

import sys
from pathlib import Path

import numpy as np
from probe import Renderer  # this folder's probe.py

from s2s.alignment import detect_onsets, score_onsets
from s2s.constants import REGNET
from s2s.independent import independent_clip

fps = {}
for s in range(3000000, 3000032):
    c = independent_clip(s, 1.0)
    fps[s] = (c.fps, c.frames.shape[2], c.frames.shape[1])
render = Renderer(Path("s2s/weights/regnet_small_demo_netG.pt"), Path("s2s/weights/melgan_demo_best_netG.pt"))
by = {}
for s in range(3000000, 3000032):
    z = np.load(f"runs/gfeat/independent_{s}.npz")
    sc = score_onsets(z["onsets"], *detect_onsets(render(z), REGNET.sample_rate))
    by.setdefault(fps[s][0], []).append(sc.accuracy)
    sys.stdout.write(f"{s} {fps[s]} {list(z['kinds'])} {sc.accuracy:.2f}\n")
for k, vals in sorted(by.items()):
    sys.stdout.write(f"{k} {len(vals)} {np.mean(vals):.3f}\n")
