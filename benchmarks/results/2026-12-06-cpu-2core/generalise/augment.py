"""The training clips of `s2s train` (plain, 6 s, seeds 0..N-1) turned a quarter (clockwise for even seeds,
counter-clockwise for odd ones, mirrored for every other pair) and resized back to the served 340x256:
a bounce becomes a rebound off a wall, a slide a fall; the sound stays the clip's own. Features as
`s2s train`'s data stage makes them (DIS flow, the run's seeded encoders in ONNX Runtime), same layout.

    python augment.py RUN_WITH_ENCODERS OUT_DIR [--clips 80]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from probe import encoder_sessions  # this folder's probe.py

from s2s.audio import MelSpectrogram
from s2s.constants import REGNET
from s2s.synth import make_clip
from s2s.training.train import encoder_features


def turned(frames: np.ndarray, seed: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    k = 1 if seed % 2 == 0 else 3
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        g = np.rot90(f, k)
        if (seed // 2) % 2:
            g = g[:, ::-1]
        out[i] = cv2.resize(np.ascontiguousarray(g), (w, h), interpolation=cv2.INTER_AREA)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--clips", type=int, default=80)
    a = p.parse_args()
    sessions = encoder_sessions(a.run)
    mel = MelSpectrogram()
    a.out.mkdir(parents=True, exist_ok=True)
    for seed in range(a.clips):
        path = a.out / f"clip_turned_{seed:07d}.npz"
        if path.exists():
            continue
        clip = make_clip(seed, 6.0)
        pictures = turned(clip.frames, seed)
        feats = encoder_features(sessions, pictures)
        n = len(pictures)
        target = mel(torch.from_numpy(clip.audio)[None])[0].numpy()[:, : REGNET.mel_frames_per_frame * n]
        np.savez(
            path,
            rgb=feats["tsn_rgb"].astype(np.float16),
            flow=feats["tsn_flow"].astype(np.float16),
            mel=target.astype(np.float16),
            audio=clip.audio,
            onsets=clip.onsets,
        )
        sys.stdout.write(f"{seed} {n}\n")
