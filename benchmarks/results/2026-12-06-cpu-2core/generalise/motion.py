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
        (training clips with motion_block (--form turning / change / scaled: turning_block / change_block /
        scaled_block) in the RGB features' place; --append: the RGB features kept, the statistics and their
        change appended to the flow features instead: 2048 + 60 features a frame)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

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


def probe_clip(stem: str):
    """The clip a probe cache file was made of, by its name (probe.py: KIND_SEED, kind_rate.py: KIND_FPS_SEED,
    speed_peak.py: swing_SEED)."""
    parts = stem.split("_")
    if parts[0] == "independent":
        from s2s.independent import independent_clip

        return independent_clip(int(parts[1]), 8.0)
    if parts[0] == "generated":
        from s2s.synth import make_clip

        return make_clip(int(parts[1]), 8.0)
    if parts[0] == "swing":
        from speed_peak import pendulum_clip

        return pendulum_clip(int(parts[1]))[0]
    from kind_rate import scene_at

    return scene_at(int(parts[2]), parts[0], float(parts[1]))


def motion_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """(N, D) motion statistics -> (N, width): them, their change from the frame before (0 at the first), zeros
    (width 1024: what stands in the RGB features' place for a generator trained on them; 0: no zeros)."""
    change = np.concatenate([np.zeros_like(motion[:1]), np.diff(motion, axis=0)])
    return _padded(np.concatenate([motion, change], axis=1), width)


def _padded(block: np.ndarray, width: int) -> np.ndarray:
    """(N, D) -> (N, width) float32, zeros after the D columns (width 0: D)."""
    out = np.zeros((len(block), width or block.shape[1]), dtype=np.float32)
    out[:, : block.shape[1]] = block
    return out


def turning_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """(N, 3 * R) statistics (per region: velocity x, y, moving share) -> (N, width): per region the same whatever
    way the picture is turned: speed, moving share, the size of the velocity's change from the frame before, its
    dot product with the velocity before (negative where the motion reverses), the change of speed and of the
    moving share (6 * R; 0 at the first frame), then zeros. A ball's bounce off the floor and a puck's rebound off
    a side wall give the same numbers here; in motion_block's their signs sit on different axes."""
    v = motion.reshape(len(motion), -1, 3)
    before = np.concatenate([v[:1], v[:-1]])
    speed = np.hypot(v[..., 0], v[..., 1])
    cols = [
        speed,
        v[..., 2],
        np.hypot(*(v[..., :2] - before[..., :2]).transpose(2, 0, 1)),
        (v[..., :2] * before[..., :2]).sum(axis=-1),
        speed - np.hypot(before[..., 0], before[..., 1]),
        v[..., 2] - before[..., 2],
    ]
    return _padded(np.stack(cols, axis=-1).reshape(len(motion), -1), width)


def change_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """turning_block without the speed and its change: per region the moving share, the size of the velocity's
    change, its dot product with the velocity before and the share's change (4 * R), then zeros: the change of
    motion without the speed the training kinds' impacts peak at."""
    block = turning_block(motion, 0).reshape(len(motion), -1, 6)[..., [1, 2, 3, 5]]
    return _padded(block.reshape(len(motion), -1), width)


#: the least clip scale (motion units: 5 px a frame) scaled_block divides by, 2.5 px a frame: a still or noisy
#: clip's velocities are not blown up to the size of a moving body's
SCALE_FLOOR = 0.5


def clip_scale(motion: np.ndarray) -> float:
    """How fast the clip's bodies move: the 95th percentile over its frames of the fastest grid cell's speed
    (motion units; a cell's, since on a noisy picture the whole frame's mean velocity is diluted by the pixels
    that only seem to move), at least SCALE_FLOOR. The training clips' lie at 2.1-4.4 (5th-95th percentile), the
    first independent clips' at 0.7-2.8."""
    v = motion.reshape(len(motion), -1, 3)
    speed = np.hypot(v[:, 1:, 0], v[:, 1:, 1]).max(axis=1)
    return max(SCALE_FLOOR, float(np.percentile(speed, 95)))


def scaled_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """turning_block of the velocities divided by :func:`clip_scale`: a puck that keeps 5 px a frame and reverses
    gives the same dot product (-1) as a ball that reverses at 25 px a frame, where turning_block's grows with the
    square of the speed."""
    v = motion.reshape(len(motion), -1, 3).copy()
    v[..., :2] /= clip_scale(motion)
    return turning_block(v.reshape(len(motion), -1), width)


def package_block(motion: np.ndarray, width: int = 1024) -> np.ndarray:
    """s2s.motion's statistics as the package computes them (``package``'s files: already per region the speed,
    share, change, dot product, ...: 60 a frame), then zeros."""
    return _padded(motion, width)


FORMS = {
    "signed": motion_block, "turning": turning_block, "change": change_block, "scaled": scaled_block,
    "package": package_block,
}  # fmt: skip


def with_motion(z: dict, motion: np.ndarray, mode: str, form: str = "signed") -> dict:
    """A clip's arrays (``rgb``, ``flow``, ...) with the statistics ``motion`` in ``form`` (FORMS: "signed",
    :func:`motion_block`; "turning", :func:`turning_block`; "change", :func:`change_block`) in the RGB features'
    place (``mode`` "replace") or after the flow features ("append": 2048 + its width); "inputs": in the RGB
    features' place without the zeros after it, as `s2s train --generator-inputs motion,flow` feeds s2s.motion's
    statistics (60 + 1024)."""
    block = FORMS[form](motion, 0 if mode in ("append", "inputs") else 1024)
    if mode == "append":
        return z | {"flow": np.concatenate([z["flow"].astype(np.float32), block], axis=1)}
    return z | {"rgb": block}


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
