"""`s2s train`'s data stage on the plain clips with the bouncing balls thrown faster sideways: each ball's
horizontal speed times FACTOR (the plain clips draw it from +-60 px/s), everything else the seed draws as it was
(the speed does not change the floor contacts; the turns at the picture's edges, which sound, follow it).

    python data_throws.py RUN [--factor 4] [--clips 80]

Run at commit d1280c5, whose s2s.synth sounds the ball's turns at the picture's edges (reverted after these
runs: benchmarks/README.md, "The rebound"); at a later commit the turns are silent again.

RUN: a folder with the data stage's encoders/ and encoders.json (copied from another run); clips already under
RUN/data are kept, so copy a run's data there and delete the clips with a ball to have only those made again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from s2s import synth
from s2s.training.train import TrainOptions, prepare_data

p = argparse.ArgumentParser()
p.add_argument("run", type=Path)
p.add_argument("--factor", type=float, default=4.0)
p.add_argument("--clips", type=int, default=80)
a = p.parse_args()
torch.set_num_threads(1)
make_ball = synth._make_ball


def thrown(*args, **kwargs):
    ball, events = make_ball(*args, **kwargs)
    ball.vx *= a.factor
    return ball, events


synth._make_ball = thrown
print(len(prepare_data(TrainOptions(output=a.run, clips=a.clips, generator_inputs="motion,flow"))))  # noqa: T201
