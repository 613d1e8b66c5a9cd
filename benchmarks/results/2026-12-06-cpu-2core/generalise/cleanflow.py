"""Does the flow's noise hold the independent score down? The probe's cached clips again, with the flow encoder
fed a cleaned flow: ``stab`` the DIS flow less its median (the camera's shake), ``clean`` that and zero where
the picture does not change (grey frames blurred by 1.5 px, differing by more than 6 levels, the mask grown by
GROW px). The RGB features, mel, audio and onsets are the cache's; the flow features are recomputed.

    python cleanflow.py RUN_WITH_ENCODERS CACHE OUT VARIANT [--grow 31]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from probe import encoder_sessions

from s2s.constants import REGNET
from s2s.flow import flow_pairs, quantize_flow
from s2s.synth import encode_clip
from s2s.video import decode_video


def cleaned_flows(pictures: np.ndarray, variant: str, grow: int = 31):
    """The DIS flow of each frame (s2s.flow.flow_pairs), cleaned by ``variant`` ("stab" or "clean")."""
    grey = [cv2.GaussianBlur(cv2.cvtColor(p, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.5) for p in pictures]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
    for i, flow in enumerate(flow_pairs(pictures, "dis")):
        flow = flow - np.median(flow.reshape(-1, 2), axis=0)
        if variant == "clean":
            j = min(i, len(grey) - 2)  # the last frame repeats the flow before it
            mask = cv2.dilate((np.abs(grey[j + 1] - grey[j]) > 6).astype(np.uint8), kernel)
            flow = flow * mask[..., None]
        yield flow


def cleaned(pictures: np.ndarray, variant: str, grow: int) -> np.ndarray:
    """Frames (N, H, W, 3) BGR -> the flow encoder's input (N, 2, 224, 224) uint8 of the cleaned flow."""
    size = (REGNET.image_size, REGNET.image_size)
    out = np.empty((len(pictures), 2, *size), np.uint8)
    for i, flow in enumerate(cleaned_flows(pictures, variant, grow)):
        out[i] = cv2.resize(quantize_flow(flow), size, interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("cache", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("variant", choices=("stab", "clean"))
    p.add_argument("--grow", type=int, default=31)
    a = p.parse_args()
    from stems import probe_clip  # this folder's stems.py

    session = encoder_sessions(a.run)["tsn_flow"]
    a.out.mkdir(parents=True, exist_ok=True)
    for path in sorted(a.cache.glob("*.npz")):
        target = a.out / path.name
        if target.exists():
            continue
        z = dict(np.load(path))
        pictures = decode_video(encode_clip(probe_clip(path.stem))).frames
        inputs = cleaned(pictures, a.variant, a.grow)
        z["flow"] = np.concatenate([session.run(None, {"frames": inputs[None, i : i + 64]})[0][0]
                                    for i in range(0, len(inputs), 64)])  # fmt: skip
        assert z["flow"].shape == np.load(path)["flow"].shape
        np.savez(target, **z)
        sys.stdout.write(f"{path.stem}\n")
        sys.stdout.flush()
