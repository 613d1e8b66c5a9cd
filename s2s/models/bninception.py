"""TSN BN-Inception feature encoder (RGB and optical flow), classifier removed.

Follows BN-Inception (Ioffe & Szegedy 2015) as TSN uses it (yjxiong/tsn-pytorch, the same layer names
as Cadene's pretrainedmodels port), which RegNet (PeihaoChen/regnet) runs at 21.5 fps to get one
1024-d global-pool feature per frame for RGB and for flow. 69 convolutions, each followed by batch
norm and ReLU; 10,270,240 parameters for RGB.

Input conventions (kept inside the exported graph by :class:`TSNEncoder`):
  RGB   uint8 (N, 3, 224, 224), BGR, 0..255, minus mean [104, 117, 128], std 1.
  flow  uint8 (N, 2, 224, 224), one x/y pair, (f + 20) * 255 / 40, minus 128. conv1 of the flow
        network is the RGB conv1 averaged over its 3 input channels (TSN's cross-modality init).

Checkpoint: the ImageNet state dict ``bn_inception-9f5701afb96c8044.pth`` (keys such as
``conv1_7x7_s2.weight``, ``inception_3a_1x1_bn.running_mean``, ``fc.weight``), or Cadene's layout
(``last_linear.*``). The classifier is dropped; everything else must match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from s2s.constants import REGNET, Recipe
from s2s.models.checkpoints import CheckpointError, load_strict, seeded_init, torch_load

log = logging.getLogger(__name__)

#: Inception blocks: name, input channels, 1x1, (3x3 reduce, 3x3), (double reduce, double 1, double 2),
#: pool ("avg" or "max"), pool projection (0: none), stride of the 3x3 branches and the pool.
BLOCKS: tuple[tuple[str, int, int, tuple[int, int], tuple[int, int, int], str, int, int], ...] = (
    ("3a", 192, 64, (64, 64), (64, 96, 96), "avg", 32, 1),
    ("3b", 256, 64, (64, 96), (64, 96, 96), "avg", 64, 1),
    ("3c", 320, 0, (128, 160), (64, 96, 96), "max", 0, 2),
    ("4a", 576, 224, (64, 96), (96, 128, 128), "avg", 128, 1),
    ("4b", 576, 192, (96, 128), (96, 128, 128), "avg", 128, 1),
    ("4c", 576, 160, (128, 160), (128, 160, 160), "avg", 128, 1),
    ("4d", 608, 96, (128, 192), (160, 192, 192), "avg", 128, 1),
    ("4e", 608, 0, (128, 192), (192, 256, 256), "max", 0, 2),
    ("5a", 1056, 352, (192, 320), (160, 224, 224), "avg", 128, 1),
    ("5b", 1024, 352, (192, 320), (192, 224, 224), "max", 128, 1),
)

#: Parameters of the RGB network without its classifier (reference count).
RGB_PARAMETERS = 10_270_240
#: Checkpoint keys of the ImageNet classifier, dropped on load.
CLASSIFIER_KEYS = ("fc.weight", "fc.bias", "last_linear.weight", "last_linear.bias")


@dataclass(frozen=True)
class BNInceptionConfig:
    in_channels: int = 3  #: 3 for RGB, 2 for one flow x/y pair
    feature_dim: int = REGNET.feature_dim


class BNInception(nn.Module):
    """(N, C, 224, 224) float, already normalised -> (N, 1024) global-pool features."""

    def __init__(self, config: BNInceptionConfig = BNInceptionConfig()) -> None:
        super().__init__()
        self.config = config
        self._convs: list[str] = []
        self._conv("conv1_7x7_s2", config.in_channels, 64, 7, stride=2, padding=3)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3, padding=1)
        for name, cin, c1, (r3, c3), (rd, d1, d2), _pool, proj, stride in BLOCKS:
            p = f"inception_{name}_"
            if c1:
                self._conv(p + "1x1", cin, c1, 1)
            self._conv(p + "3x3_reduce", cin, r3, 1)
            self._conv(p + "3x3", r3, c3, 3, stride=stride, padding=1)
            self._conv(p + "double_3x3_reduce", cin, rd, 1)
            self._conv(p + "double_3x3_1", rd, d1, 3, padding=1)
            self._conv(p + "double_3x3_2", d1, d2, 3, stride=stride, padding=1)
            if proj:
                self._conv(p + "pool_proj", cin, proj, 1)

    def _conv(self, name: str, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> None:
        self.add_module(name, nn.Conv2d(cin, cout, k, stride=stride, padding=padding))
        self.add_module(name + "_bn", nn.BatchNorm2d(cout, eps=1e-5))
        self._convs.append(name)

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._cbr("conv1_7x7_s2", x)
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for name, _cin, c1, _b3, _bd, pool, proj, stride in BLOCKS:
            p = f"inception_{name}_"
            branches = []
            if c1:
                branches.append(self._cbr(p + "1x1", x))
            branches.append(self._cbr(p + "3x3", self._cbr(p + "3x3_reduce", x)))
            double = self._cbr(p + "double_3x3_1", self._cbr(p + "double_3x3_reduce", x))
            branches.append(self._cbr(p + "double_3x3_2", double))
            if pool == "avg":
                pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            elif stride == 1:
                pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
            else:
                pooled = F.max_pool2d(x, 3, stride=stride, ceil_mode=True)
            branches.append(self._cbr(p + "pool_proj", pooled) if proj else pooled)
            x = torch.cat(branches, dim=1)
        return x.mean(dim=(2, 3))  # global average pool over the 7x7 map -> (N, 1024)

    @property
    def num_convs(self) -> int:
        return len(self._convs)


def flow_conv1_from_rgb(weight: torch.Tensor, channels: int = 2) -> torch.Tensor:
    """TSN's cross-modality init: average the RGB conv1 kernel over its inputs, repeat ``channels`` times."""
    return weight.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1).contiguous()


def load_imagenet_state(path: str | Path, in_channels: int = 3) -> dict[str, torch.Tensor]:
    """Read an ImageNet BN-Inception state dict, drop the classifier, adapt conv1 for flow."""
    state = torch_load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = state.get("state_dict", state)
    state = {k.removeprefix("module.").removeprefix("base_model."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k not in CLASSIFIER_KEYS}
    conv1 = state.get("conv1_7x7_s2.weight")
    if conv1 is not None and in_channels != conv1.shape[1]:
        if conv1.shape[1] != 3:
            raise CheckpointError(f"{path}: conv1 has {conv1.shape[1]} input channels, cannot adapt to {in_channels}")
        state["conv1_7x7_s2.weight"] = flow_conv1_from_rgb(conv1, in_channels)
    return state


def build_bninception(in_channels: int = 3, checkpoint: str | Path | None = None, seed: int = 0) -> BNInception:
    """BN-Inception with ImageNet weights from ``checkpoint``, or seeded random weights."""
    model = BNInception(BNInceptionConfig(in_channels=in_channels))
    if checkpoint is None:
        seeded_init(model, seed)
        _variance_preserving(model, seed)
    else:
        load_strict(model, load_imagenet_state(checkpoint, in_channels), source=str(checkpoint))
    return model.eval()


def _variance_preserving(model: nn.Module, seed: int) -> None:
    """He-normal convolutions (fan in, ReLU gain), zero biases, from ``seed``.

    PyTorch's default initialisation shrinks activations at every layer: through BN-Inception's 69
    convolutions (BN in eval mode does not renormalise) a random encoder's output is a near-constant
    (per-frame variation ~5e-4 of its mean), useless as features. With He initialisation the seeded
    encoders keep the input's variation (~0.6 of the mean), so a generator can be trained on them
    (s2s.training.train), paired with these exact weights.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class TSNEncoder(nn.Module):
    """Export wrapper: uint8 frames (B, T, C, 224, 224) -> float32 features (B, T, 1024).

    Normalisation lives here, in the graph: RGB (BGR order, as decoded) minus the ImageNet mean; flow
    minus 128. ``B`` windows of ``T`` frames run as one batch of ``B * T`` images.
    """

    def __init__(self, backbone: BNInception, recipe: Recipe = REGNET) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.config.in_channels
        mean = recipe.rgb_mean_bgr if channels == 3 else (recipe.flow_mean,) * channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = frames.shape
        x = frames.reshape(b * t, c, h, w).to(torch.float32) - self.mean
        return self.backbone(x).reshape(b, t, -1)
