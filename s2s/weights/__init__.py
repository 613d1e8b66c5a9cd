"""The demo weights shipped in the package (float16), made by ``s2s train --install``.

A RegNet generator (``small`` configuration) and a MelGAN, trained on generated clips with the seeded
TSN encoders of ``s2s export --seed 0``; ``s2s export`` uses them where no checkpoint is given.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent
DEMO_GENERATOR = WEIGHTS_DIR / "regnet_small_demo_netG.pt"
DEMO_VOCODER = WEIGHTS_DIR / "melgan_demo_best_netG.pt"
