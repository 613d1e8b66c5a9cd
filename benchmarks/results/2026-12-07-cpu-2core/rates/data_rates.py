"""The plain training clips filmed at other frame rates: `s2s train`'s data stage (the same seeds, scenes and
sounds as its plain clips) with each clip drawn at a rate from s2s.synth.WIDE_FPS (15 to 60 fps, picked by a
stream of its own seeded by the clip's seed), encoded as H.264 and decoded as served (s2s.video.Track: the flow
over one 1/21.5 s at any rate). Only the frame rate and the codec differ from the plain clips.

    python data_rates.py RUN [--clips 80] [--first-seed 0] [--fps F]

RUN: a `s2s train --stages data` run (its encoders/ are used; its encoders.json names them); the clips go to
RUN/data_rates/clip_<seed>.npz in the data stage's layout, with their fps. ``--fps F``: every clip at F instead
(RUN/data_fps<F>/: e.g. 21.5, the plain clips through the codec alone).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from s2s.audio import MelSpectrogram
from s2s.constants import REGNET
from s2s.synth import WIDE_FPS, encode_clip, make_clip
from s2s.training.train import encoder_features
from s2s.video import decode_video


def clip_fps(seed: int) -> float:
    return float(np.random.default_rng([seed, 7919, 3]).choice(WIDE_FPS))


def main(run: Path, clips: int, first_seed: int, fps: float | None = None, clip_seconds: float = 6.0) -> None:
    sessions = {n: ort.InferenceSession(str(run / "encoders" / f"{n}.onnx"), providers=["CPUExecutionProvider"])
                for n in ("tsn_rgb", "tsn_flow")}  # fmt: skip
    out = run / ("data_rates" if fps is None else f"data_fps{fps:g}")
    out.mkdir(exist_ok=True)
    mel = MelSpectrogram()
    for seed in range(first_seed, first_seed + clips):
        path = out / f"clip_{seed:07d}.npz"
        if path.exists():
            continue
        clip = make_clip(seed, clip_seconds, fps=clip_fps(seed) if fps is None else fps)
        track = decode_video(encode_clip(clip)).track
        feats = encoder_features(sessions, track)
        n = len(track)
        target = mel(torch.from_numpy(clip.audio)[None])[0].numpy()[:, : REGNET.mel_frames_per_frame * n]
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, rgb=feats["tsn_rgb"].astype(np.float16), flow=feats["tsn_flow"].astype(np.float16),
                 motion=feats["motion"], mel=target.astype(np.float16), audio=clip.audio, onsets=clip.onsets,
                 flow_per_period=np.array(True), fps=np.array(clip.fps))  # fmt: skip
        partial.replace(path)
        print(seed, clip.fps, n, flush=True)  # noqa: T201


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--clips", type=int, default=80)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    main(a.run, a.clips, a.first_seed, a.fps)
