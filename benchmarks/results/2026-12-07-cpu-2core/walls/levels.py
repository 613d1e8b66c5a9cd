"""Why the rebound scores low: the level of a generator's mel through each independent clip that holds one kind
alone, next to the clip's own sound's, decoded and fed as served (the flow over one 1/21.5 s, the seeded TSN
encoders, the motion statistics: what the generator's checkpoint asks for), one z per clip seeded by its seed.

    python levels.py ENCODERS_DIR GENERATOR [--clips 32]

Per clip: the median and 90th percentile over frames of the mel's mean over bands, in dB above the recipe's floor
(-min_level_db times the [0, 1] mel), generated and own; then the medians per kind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from s2s.audio import mel_spectrogram_librosa
from s2s.constants import REGNET
from s2s.independent import INDEPENDENT_SEEDS, independent_clip
from s2s.models.regnet import build_regnet
from s2s.repository import INPUT_ENCODERS
from s2s.synth import encode_clip
from s2s.training.train import encoder_features
from s2s.video import decode_video

p = argparse.ArgumentParser()
p.add_argument("encoders", type=Path)
p.add_argument("generator", type=Path)
p.add_argument("--clips", type=int, default=32)
a = p.parse_args()
torch.set_num_threads(1)
sessions = {n: ort.InferenceSession(str(a.encoders / f"{n}.onnx"), providers=["CPUExecutionProvider"])
            for n in ("tsn_rgb", "tsn_flow")}  # fmt: skip
net = build_regnet("small", checkpoint=a.generator).eval()
scale = -REGNET.min_level_db
per_kind: dict[str, list[tuple[float, ...]]] = {}
print("| clip | kind | made: median / p90 (dB) | own: median / p90 (dB) |\n|---|---|---:|---:|")  # noqa: T201
for seed in range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + a.clips):
    clip = independent_clip(seed, 8.0)
    if len(clip.kinds) != 1:
        continue
    feats = encoder_features(sessions, decode_video(encode_clip(clip)).track)
    x = np.concatenate([feats[INPUT_ENCODERS.get(i, i)] for i in net.config.inputs], axis=1).astype(np.float32)
    with torch.no_grad():
        z = torch.randn(1, net.config.random_z_dim, generator=torch.Generator().manual_seed(seed))
        mel = net(torch.from_numpy(x)[None], z).clamp(0, 1)[0].numpy()
    own = mel_spectrogram_librosa(clip.audio, REGNET)
    levels = [np.percentile(m.mean(axis=0) * scale, q) for m in (mel, own) for q in (50, 90)]
    per_kind.setdefault(clip.kinds[0], []).append(tuple(levels))
    print(f"| {seed} | {clip.kinds[0]} | {levels[0]:.1f} / {levels[1]:.1f} | {levels[2]:.1f} / {levels[3]:.1f} |")  # noqa: T201
print("\n| kind (clips) | made: median / p90 (dB) | own: median / p90 (dB) |\n|---|---:|---:|")  # noqa: T201
for kind, rows in sorted(per_kind.items()):
    m = np.median(np.array(rows), axis=0)
    print(f"| {kind} ({len(rows)}) | {m[0]:.1f} / {m[1]:.1f} | {m[2]:.1f} / {m[3]:.1f} |")  # noqa: T201
