"""A generator variant trained like `s2s train`'s generator stage (same data, steps, batch, losses, schedule),
with one change to what it is fed: ``flow`` (the RGB features zeroed, in training and in the probe), ``delta``
(the RGB features replaced by the flow features' change from the frame before, probe.py's ``flow_delta``),
``noflow`` (the flow features zeroed: with motion.py's combined data, the motion statistics alone),
``dropout`` (input dropout P on the features in training only), ``noise`` (Gaussian noise of SIGMA times each
channel's std in training only), ``flowdrop`` (in training only, each window's flow features zeroed with probability
P: with motion.py's combined data the statistics must carry the events alone in those windows), ``flux`` (the loss
also P times the L1 distance of the mels' change from one mel frame to the next: the onsets' sharpness),
``adversarial`` (the loss also P times a least-squares adversarial loss from a small discriminator that sees a
window's mel beside its features, s2s.training.adversarial.MelDiscriminator, which `s2s train
--generator-adversarial-weight` trains against too: it tells the clips' own mels from the generator's by the shape of
their events where the picture shows them).

    python train_variant.py DATA [DATA ...] OUT VARIANT [--p 0.3] [--steps 5000] [--seed 0]

DATA: folders of the data stage's clip_*.npz (several: their clips together, e.g. plain and wide ones).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from probe import flow_delta  # this folder's probe.py (a script's folder is on its path)

from s2s.models.regnet import RegNetGenerator, regnet_config, save_regnet_checkpoint
from s2s.training.adversarial import MelDiscriminator, discriminator_loss, generator_adversarial_loss
from s2s.training.train import ClipData, Part

p = argparse.ArgumentParser()
p.add_argument("data", type=Path, nargs="+")
p.add_argument("out", type=Path)
p.add_argument(
    "variant", choices=("baseline", "flow", "noflow", "delta", "dropout", "noise", "flowdrop", "flux", "adversarial")
)
p.add_argument("--p", type=float, default=0.3)
p.add_argument("--steps", type=int, default=5000)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()


torch.manual_seed(a.seed)
rng = random.Random(a.seed)
data = ClipData(sorted(f for d in a.data for f in d.glob("clip_*.npz")), ("rgb", "flow"))  # motion.py's in "rgb"
std = torch.from_numpy(np.concatenate([c[0] for c in data.clips]).std(axis=0))
# the data's width (2048, or more with motion.py's appended statistics)
model = RegNetGenerator(replace(regnet_config("small"), visual_dim=data.clips[0][0].shape[1]))
part = Part.cosine(model, 1e-3, a.steps)
if a.variant == "adversarial":
    critic = Part.cosine(MelDiscriminator(data.clips[0][0].shape[1]), 2e-4, a.steps, betas=(0.5, 0.9))
start = time.time()
for step in range(1, a.steps + 1):
    x, y = data.windows(rng, 8, 43)
    if a.variant == "flow":
        x[..., :1024] = 0
    elif a.variant == "noflow":
        x[..., 1024:] = 0
    elif a.variant == "delta":
        x = flow_delta(x)
    elif a.variant == "dropout":
        x = torch.nn.functional.dropout(x, a.p)
    elif a.variant == "noise":
        x = x + a.p * std * torch.randn_like(x)
    elif a.variant == "flowdrop":
        x[torch.rand(x.shape[0]) < a.p, :, 1024:2048] = 0
    out = model(x, torch.randn(x.shape[0], model.config.random_z_dim))
    loss = (out - y).abs().mean() + (out - y).square().mean()
    if a.variant == "flux":
        loss = loss + a.p * (out.diff(dim=-1) - y.diff(dim=-1)).abs().mean()
    elif a.variant == "adversarial":
        critic.update(discriminator_loss(critic.model(y, x), critic.model(out.detach(), x)))
        loss = loss + a.p * generator_adversarial_loss(critic.model(out, x))
    part.update(loss)
    if step % 500 == 0:
        sys.stdout.write(f"{step} {loss.item():.4f} {time.time() - start:.0f}\n")
        sys.stdout.flush()
a.out.parent.mkdir(parents=True, exist_ok=True)
extra = {"variant": a.variant, "p": a.p, "seed": a.seed, "clips": len(data.clips)}
save_regnet_checkpoint(model, a.out, iteration=a.steps, lr=1e-3, extra=extra)
