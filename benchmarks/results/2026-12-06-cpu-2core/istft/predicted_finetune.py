"""Fine-tune the istft vocoder of runs/istft (the 6,000 spectral steps of `s2s train --vocoder istft`) on the
generator's predicted mels: in SHARE of the segments the mel is the shipped generator's prediction for the
training clip (runs/v3 holds v2's data stage and the shipped generator as its generator stage), paired with the
clip's own sound; the spectral recipe (STFT + mel 45 + hop-periodic 10), Adam from 2e-4 with cosine decay,
STEPS steps; saves an istft checkpoint as float16. What `s2s train --vocoder-finetune-steps STEPS
--vocoder-predicted-mels SHARE` now does after the other vocoder steps.

Usage: python predicted_finetune.py STEPS SHARE OUT.pt   (run from the project root)
"""

import random
import sys
import time
from pathlib import Path

import torch

from s2s.audio import MelSpectrogram, normalize_db
from s2s.models.istft import build_istft_vocoder, istft_checkpoint
from s2s.training.train import ClipData, Part, STFTLoss, TrainOptions, hop_periodic_loss, predicted_mels

steps, share, out = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
torch.set_flush_denormal(True)
torch.manual_seed(0)
options = TrainOptions(output=Path("runs/v3"))
data = ClipData(sorted(Path("runs/v3/data").glob("*.npz")), ("rgb", "flow"))
predicted = predicted_mels(options, data)
model = build_istft_vocoder(checkpoint="runs/istft/vocoder/best_netG.pt").train()
part = Part.cosine(model, 2e-4, steps, betas=(0.8, 0.99))
stft, mel = STFTLoss(), MelSpectrogram()
rng = random.Random(1)
t0 = time.time()
for step in range(steps):
    m, audio = data.segments(rng, 8, 32, predicted, share)
    y = model(m, torch.randn(m.shape[0], model.config.noise_channels, m.shape[-1]))[:, 0, : audio.shape[1]]
    loss = stft(y, audio) + 45 * (normalize_db(mel.magnitudes(y)) - normalize_db(mel.magnitudes(audio))).abs().mean()
    loss = loss + 10 * hop_periodic_loss(y, audio)
    part.update(loss)
    if step % 100 == 0:
        sys.stdout.write(f"{step} loss {loss.item():.4f} {time.time() - t0:.0f} s\n")
model.eval()
blob = istft_checkpoint(model)
blob["state_dict"] = {k: v.half() for k, v in blob["state_dict"].items()}
torch.save(blob, out)
sys.stdout.write(f"saved {out} after {time.time() - t0:.0f} s\n")
