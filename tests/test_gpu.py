"""The GPU path on a CUDA device: TV-L1, the network inputs and the networks against the CPU.

Every test here is marked ``gpu`` and is reported as skipped (never passed) on a machine without CUDA.
This module imports only what a CUDA machine without Triton needs (PyTorch, OpenCV without its contrib
module, PyAV), so ``pytest -m gpu tests/test_gpu.py`` runs on a bare GPU node with the project's code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import s2s.tvl1 as tv
from s2s.export.specs import ExportOptions, build_exports
from s2s.repository import MODEL_NAMES
from s2s.synth import make_video
from s2s.windowing import PreprocessOptions, decode_windows, preprocess, windows_on_device
from tests.test_tvl1 import epe, known_motion  # noqa: F401 (known_motion: a fixture)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("fuse", [False, True], ids=["eager", "fused"])
def test_cuda_tvl1_matches_cpu(known_motion, fuse):  # noqa: F811 (the imported fixture)
    """The same solver on CUDA gives the CPU result to float rounding, eager and fused (the default)."""
    i0, i1, truth, cpu = known_motion
    cuda = tv.tvl1(torch.from_numpy(i0).cuda(), torch.from_numpy(i1).cuda(), fuse=fuse).cpu().numpy()
    if fuse:
        assert {name: f.failure for name, f in tv._FUSED.items()} == {"step": None, "median": None}
    assert epe(cuda, cpu) < 0.01 and epe(cuda, truth) < 0.15


def test_windows_on_cuda_match_the_cpu():
    """preprocess with flow on the GPU: same layout and noise as on the CPU, rgb within 1 level, flow close;
    two clips solved in one batch get what each gets alone."""
    options = PreprocessOptions(window_frames=8, flow_method="tvl1", z_dim=8)
    video = make_video(duration_s=0.6, seed=5)  # 13 frames at 21.5 fps: two windows, the last one looping
    cpu = preprocess(video, options, flow_device="cpu")
    gpu = preprocess(video, options, flow_device="cuda")
    assert gpu.rgb.is_cuda and gpu.flow.is_cuda and tuple(gpu.flow.shape) == tuple(cpu.flow.shape)
    assert (gpu.rgb.cpu().int() - cpu.rgb.int()).abs().max() <= 1
    assert (gpu.flow.cpu().float() - cpu.flow.float()).abs().mean() < 0.5
    np.testing.assert_array_equal(gpu.z, cpu.z)
    other = decode_windows(make_video(duration_s=0.3, seed=6), options)
    together = windows_on_device([decode_windows(video, options), other], options, "cuda")
    assert (together[0].flow.int() - gpu.flow.int()).abs().max() <= 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_networks_on_cuda_match_the_cpu(name):
    """Each network on the GPU: float32 (TF32 off) to 1e-3 of the CPU, float16 autocast to 3e-2."""
    (export,) = build_exports(ExportOptions(), (name,), warn_noise=False)
    inputs = export.examples(windows=2, frames=43, seed=1)
    module = export.module.eval()
    with torch.inference_mode():
        cpu = module(*inputs).double()
        module.cuda()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        fp32 = module(*(x.cuda() for x in inputs)).double().cpu()
        with torch.autocast("cuda", dtype=torch.float16):
            fp16 = module(*(x.cuda() for x in inputs)).double().cpu()
    assert torch.isfinite(fp16).all()
    assert float((fp32 - cpu).norm() / cpu.norm()) < 1e-3
    assert float((fp16 - cpu).norm() / cpu.norm()) < 3e-2
