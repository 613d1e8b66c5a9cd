"""Motion statistics of the served flow, per frame: where the picture moves and which way, independent of what is
drawn. The DIS flow of the served frames (s2s.flow.flow_pairs, as the data stage), less its median (the camera's
shake: cleanflow.py's "stab"); per region (the whole frame and a 3 x 3 grid), the mean velocity of the pixels
that move (weighted by their speed, over those faster than 0.5 px a frame; 0 where none does) and the share of
pixels that move.
A ball's velocity there does not depend on its size, colour or the background; a reversal flips its sign and a
stop takes it to 0.

    python motion.py train DATA_DIR OUT_DIR [--variety wide] [--clean] [--adaptive]
        (the training clips of a data stage: seeds from the file names)
    python motion.py probe CACHE [--clean] [--adaptive]
        (the cached clips of probe.py, kind_rate.py or speed_peak.py: NAME.motion.npy beside each; --clean:
        NAME.motion-clean.npy, of the cleaned flow; --adaptive: NAME.motion-adaptive.npy, motion_features' adaptive
        threshold)
    python motion.py direction CACHE [--clean] [--adaptive]
        (does the flow follow the puck? On the probe's rebound-only clips, the share of frames, away from the
        contacts, whose whole-frame x velocity has the puck's direction: it reverses at each contact)
    python motion.py package CACHE
        (the cached clips of probe.py: NAME.motion-package.npy beside each, s2s.motion's statistics as preprocess
        computes them (s2s.flow.network_inputs); probe.py's --motion inputs --motion-form package reads them)
    python motion.py combine DATA_DIR MOTION_DIR OUT_DIR [--append] [--form signed|turning|change|scaled]
        (training clips with forms.py's motion_block (--form turning / change / scaled: turning_block /
        change_block / scaled_block) in the RGB features' place; --append: the RGB features kept, the statistics
        and their change appended to the flow features instead: 2048 + 60 features a frame)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from forms import FORMS, with_motion  # this folder's forms.py
from stems import probe_clip  # this folder's stems.py

from s2s.constants import REGNET

GRID = 3
THRESHOLD = 0.5  # px a frame: slower counts as still
SCALE = 5.0  # px a frame -> about unit spread
#: --adaptive: the threshold is THRESHOLD plus this many times the frame's median speed (its noise: DIS finds 1-2 px
#: of motion nearly everywhere on a noisy picture, 0 on the training renderer's)
NOISE_FACTOR = 3.0


def region_stats(flow: np.ndarray, threshold: float = THRESHOLD) -> list[float]:
    speed = np.hypot(flow[..., 0], flow[..., 1])
    moving = speed > threshold
    if not moving.any():
        return [0.0, 0.0, 0.0]
    w = speed[moving]
    v = (flow[moving] * w[:, None]).sum(axis=0) / w.sum()
    return [float(v[0]) / SCALE, float(v[1]) / SCALE, float(moving.mean()) * 10]


def motion_features(pictures: np.ndarray, clean: bool = False, adaptive: bool = False) -> np.ndarray:
    """Frames (N, H, W, 3) BGR -> (N, 3 * (1 + GRID**2)) float32; ``clean``: of cleanflow.py's "clean" flow
    (zero where the picture does not change); ``adaptive``: a pixel moves if faster than THRESHOLD plus
    NOISE_FACTOR times the frame's median speed (on a noiseless picture the same as without)."""
    from cleanflow import cleaned_flows

    rows = []
    for flow in cleaned_flows(pictures, "clean" if clean else "stab"):  # less the median (the shake) in both
        h, w = flow.shape[:2]
        noise = float(np.median(np.hypot(flow[..., 0], flow[..., 1]))) if adaptive else 0.0
        threshold = THRESHOLD + NOISE_FACTOR * noise
        stats = region_stats(flow, threshold)
        for i in range(GRID):
            for j in range(GRID):
                cell = flow[i * h // GRID : (i + 1) * h // GRID, j * w // GRID : (j + 1) * w // GRID]
                stats += region_stats(cell, threshold)
        rows.append(stats)
    return np.asarray(rows, dtype=np.float32)


def suffix(clean: bool, adaptive: bool) -> str:
    """The file beside each cached clip that holds its statistics (``probe``'s output, ``direction``'s input)."""
    return ".motion" + ("-clean" if clean else "") + ("-adaptive" if adaptive else "") + ".npy"


def direction_agreement(cache: Path, suffix: str) -> list[float]:
    """Per rebound-only clip of a probe cache: the share of frames more than 1.5 frames from a contact whose whole-frame
    x velocity (of PATH``suffix``) has the puck's sign (its direction flips at each contact, the first unknown:
    the larger of the two shares); frames slower than 0.1 px left out."""
    shares = []
    for path in sorted(cache.glob("independent_*.npz")):
        z = np.load(path)
        if [str(k) for k in z["kinds"]] != ["rebound"]:
            continue
        vx, onsets = np.load(path.with_suffix(suffix))[:, 0], z["onsets"]
        t = (np.arange(len(vx)) + 0.5) / REGNET.fps  # the flow from frame i to i + 1
        sign = np.where(np.searchsorted(onsets, t) % 2 == 0, 1, -1)
        far = np.abs(t[:, None] - onsets[None, :]).min(axis=1) > 1.5 / REGNET.fps
        keep = far & (np.abs(vx) > 0.1 / SCALE)
        agree = float(np.mean(np.sign(vx[keep]) == sign[keep]))
        shares.append(max(agree, 1 - agree))
    return shares


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("train", "probe", "combine", "direction", "package"))
    p.add_argument("dirs", type=Path, nargs="+")
    p.add_argument("--append", action="store_true")
    p.add_argument("--clean", action="store_true")
    p.add_argument("--adaptive", action="store_true", help="motion_features' adaptive threshold")
    p.add_argument("--form", choices=tuple(FORMS), default="signed", help="combine: with_motion's form")
    p.add_argument("--variety", default="plain", help="train: the data stage's --variety")
    a = p.parse_args()
    if a.what == "train":
        from s2s.synth import encode_clip, make_clip
        from s2s.video import decode_video

        data, out = a.dirs
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(data.glob("clip_*.npz")):
            target = out / path.name
            if target.exists():
                continue
            seed = int(path.stem.rsplit("_", 1)[1])
            n = np.load(path)["flow"].shape[0]
            clip = make_clip(seed, 6.0, variety=a.variety)
            # as the data stage: other varieties through the served decode (H.264, 21.5 fps)
            pictures = clip.frames if a.variety == "plain" else decode_video(encode_clip(clip)).frames
            m = motion_features(pictures, a.clean, a.adaptive)
            assert m.shape[0] == n, (m.shape, n)
            np.savez(target, motion=m)
            sys.stdout.write(f"{seed} {n}\n")
    elif a.what == "package":
        from s2s.flow import network_inputs
        from s2s.synth import encode_clip
        from s2s.video import decode_video

        for path in sorted(a.dirs[0].glob("*.npz")):
            target = path.with_suffix(".motion-package.npy")
            if not target.exists():
                motion = network_inputs(decode_video(encode_clip(probe_clip(path.stem))).frames, "dis")[2]
                assert motion.shape[0] == np.load(path)["flow"].shape[0]
                np.save(target, motion)
                sys.stdout.write(f"{path.stem} {len(motion)}\n")
    elif a.what == "direction":
        shares = direction_agreement(a.dirs[0], suffix(a.clean, a.adaptive))
        sys.stdout.write(f"{len(shares)} clips: {np.round(shares, 2).tolist()} mean {np.mean(shares):.3f}\n")
    elif a.what == "combine":
        data, motion, out = a.dirs
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(data.glob("clip_*.npz")):
            z = with_motion(
                dict(np.load(path)), np.load(motion / path.name)["motion"], "append" if a.append else "replace", a.form
            )
            np.savez(out / path.name, **z)
    else:
        from s2s.synth import encode_clip
        from s2s.video import decode_video

        (cache,) = a.dirs
        for path in sorted(cache.glob("*.npz")):
            target = path.with_suffix(suffix(a.clean, a.adaptive))
            if target.exists():
                continue
            clip = probe_clip(path.stem)
            pictures = decode_video(encode_clip(clip)).frames
            m = motion_features(pictures, a.clean, a.adaptive)
            assert m.shape[0] == np.load(path)["flow"].shape[0]
            np.save(target, m)
            sys.stdout.write(f"{path.stem} {len(m)}\n")
