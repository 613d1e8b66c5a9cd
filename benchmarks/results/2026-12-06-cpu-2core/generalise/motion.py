"""Motion statistics of the served flow, per frame: where the picture moves and which way, independent of what is
drawn. The DIS flow of the served frames (s2s.flow.flow_pairs, as the data stage), less its median (the camera's
shake: cleanflow.py's "stab"); per region (the whole frame and a 3 x 3 grid), the mean velocity of the pixels
that move (weighted by their speed, over those faster than 0.5 px a frame; 0 where none does) and the share of
pixels that move.
A ball's velocity there does not depend on its size, colour or the background; a reversal flips its sign and a
stop takes it to 0.

    python motion.py train DATA_DIR OUT_DIR [--variety wide] [--clean]
        (the training clips of a data stage: seeds from the file names)
    python motion.py probe CACHE [--clean]
        (the cached clips of probe.py, kind_rate.py or speed_peak.py: NAME.motion.npy beside each; --clean:
        NAME.motion-clean.npy, of the cleaned flow)
    python motion.py combine DATA_DIR MOTION_DIR OUT_DIR [--append]
        (training clips with motion_block in the RGB features' place; --append: the RGB features kept, the
        statistics and their change appended to the flow features instead: 2048 + 60 features a frame)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

GRID = 3
THRESHOLD = 0.5  # px a frame: slower counts as still
SCALE = 5.0  # px a frame -> about unit spread


def region_stats(flow: np.ndarray) -> list[float]:
    speed = np.hypot(flow[..., 0], flow[..., 1])
    moving = speed > THRESHOLD
    if not moving.any():
        return [0.0, 0.0, 0.0]
    w = speed[moving]
    v = (flow[moving] * w[:, None]).sum(axis=0) / w.sum()
    return [float(v[0]) / SCALE, float(v[1]) / SCALE, float(moving.mean()) * 10]


def motion_features(pictures: np.ndarray, clean: bool = False) -> np.ndarray:
    """Frames (N, H, W, 3) BGR -> (N, 3 * (1 + GRID**2)) float32; ``clean``: of cleanflow.py's "clean" flow
    (zero where the picture does not change)."""
    from cleanflow import cleaned_flows

    rows = []
    for flow in cleaned_flows(pictures, "clean" if clean else "stab"):  # less the median (the shake) in both
        h, w = flow.shape[:2]
        stats = region_stats(flow)
        for i in range(GRID):
            for j in range(GRID):
                stats += region_stats(flow[i * h // GRID : (i + 1) * h // GRID, j * w // GRID : (j + 1) * w // GRID])
        rows.append(stats)
    return np.asarray(rows, dtype=np.float32)


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
    out = np.zeros((motion.shape[0], width or 2 * motion.shape[1]), dtype=np.float32)
    out[:, : 2 * motion.shape[1]] = np.concatenate([motion, change], axis=1)
    return out


def with_motion(z: dict, motion: np.ndarray, mode: str) -> dict:
    """A clip's arrays (``rgb``, ``flow``, ...) with the statistics ``motion`` and their change (:func:`motion_block`)
    in the RGB features' place (``mode`` "replace") or after the flow features ("append": 2048 + 60)."""
    block = motion_block(motion, 0 if mode == "append" else 1024)
    if mode == "append":
        return z | {"flow": np.concatenate([z["flow"].astype(np.float32), block], axis=1)}
    return z | {"rgb": block}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("train", "probe", "combine"))
    p.add_argument("dirs", type=Path, nargs="+")
    p.add_argument("--append", action="store_true")
    p.add_argument("--clean", action="store_true")
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
            m = motion_features(pictures, a.clean)
            assert m.shape[0] == n, (m.shape, n)
            np.savez(target, motion=m)
            sys.stdout.write(f"{seed} {n}\n")
    elif a.what == "combine":
        data, motion, out = a.dirs
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(data.glob("clip_*.npz")):
            z = with_motion(
                dict(np.load(path)), np.load(motion / path.name)["motion"], "append" if a.append else "replace"
            )
            np.savez(out / path.name, **z)
    else:
        from s2s.synth import encode_clip
        from s2s.video import decode_video

        (cache,) = a.dirs
        for path in sorted(cache.glob("*.npz")):
            target = path.with_suffix(".motion-clean.npy" if a.clean else ".motion.npy")
            if target.exists():
                continue
            clip = probe_clip(path.stem)
            pictures = decode_video(encode_clip(clip)).frames
            m = motion_features(pictures, a.clean)
            assert m.shape[0] == np.load(path)["flow"].shape[0]
            np.save(target, m)
            sys.stdout.write(f"{path.stem} {len(m)}\n")
