"""The shipped generator and vocoder on the cached features of the 32 independent clips (probe.py's cache,
runs/gfeat): onset accuracy per clip with its frame rate and size, and the mean per frame rate.

    python per_rate.py   (from the repository root, after probe.py features)
"""

import sys

import numpy as np
import torch

from s2s.alignment import detect_onsets, score_onsets
from s2s.constants import REGNET
from s2s.export.specs import build_vocoder
from s2s.independent import independent_clip
from s2s.models.regnet import build_regnet

fps = {}
for s in range(3000000, 3000032):
    c = independent_clip(s, 1.0)
    fps[s] = (c.fps, c.frames.shape[2], c.frames.shape[1])
g = build_regnet("small", checkpoint="s2s/weights/regnet_small_demo_netG.pt").eval()
v = build_vocoder("melgan", "s2s/weights/melgan_demo_best_netG.pt", 0).eval()
noise = torch.Generator().manual_seed(0)
by = {}
for s in range(3000000, 3000032):
    z = np.load(f"runs/gfeat/independent_{s}.npz")
    x = torch.from_numpy(np.concatenate([z["rgb"], z["flow"]], 1).astype(np.float32))[None]
    with torch.no_grad():
        w = v(g(x, torch.randn(1, g.config.random_z_dim, generator=noise)).clamp(0, 1))[0].reshape(-1).numpy()
    sc = score_onsets(z["onsets"], *detect_onsets(w, REGNET.sample_rate))
    by.setdefault(fps[s][0], []).append(sc.accuracy)
    sys.stdout.write(f"{s} {fps[s]} {list(z['kinds'])} {sc.accuracy:.2f}\n")
for k, vals in sorted(by.items()):
    sys.stdout.write(f"{k} {len(vals)} {np.mean(vals):.3f}\n")
