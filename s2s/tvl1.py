"""Dual TV-L1 optical flow in PyTorch, batched over frame pairs, on CPU or CUDA.

The same algorithm, parameters and discretisation as OpenCV's ``cv2.optflow.DualTVL1OpticalFlow``
(Zach, Pock and Bischof 2007; Sanchez, Meinhardt-Llopis and Facciolo 2013), which RegNet's flow
features were computed with, so the TSN flow encoder sees the same kind of input:

- a pyramid of ``nscales`` levels, each ``scale_step`` times the previous (bilinear, OpenCV's
  pixel-centre convention and its rounding of sizes), solved coarse to fine, the flow upsampled
  bilinearly and divided by ``scale_step`` between levels;
- per level ``warps`` warpings of the second image and its centred gradient (bicubic, a = -0.75,
  positions quantised to 1/32 px and zero outside the image, as ``cv2.remap`` does);
- per warping up to ``outer_iterations`` x ``inner_iterations`` primal-dual steps (thresholding with
  lambda * theta, divergence by backward and gradient by forward differences with OpenCV's borders,
  dual step tau / theta), a ``median_filtering`` x ``median_filtering`` median of the flow before each
  outer iteration, and the stopping test ``sum((u - u_prev)^2) <= epsilon^2 * area`` per frame pair.

Every frame pair of a batch runs the same steps; a pair that has converged in a warping is frozen (its
values no longer change) until the next warping, exactly as if it had been solved alone. Results
differ from OpenCV's only by float rounding (summation order, interpolation tables).

On CUDA (or with ``fuse=True``) the inner iteration and the median step run as kernels compiled by
TorchInductor (the median as a min/max selection network), and the host looks at convergence every
:data:`CHECK_EVERY` iterations: the same values, about 7x faster per window on an H100 than the eager
operations (benchmarks/README.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's DualTVL1OpticalFlow defaults (``cv2.optflow.DualTVL1OpticalFlow_create()``)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5


# ------------------------------------------------------------------------------------ resampling
def _linear_axis(x: torch.Tensor, out_len: int, scale: float, dim: int) -> torch.Tensor:
    """Bilinear resampling along ``dim``: source = (dst + 0.5) * scale - 0.5, clamped to the edges."""
    n = x.shape[dim]
    src = (torch.arange(out_len, device=x.device, dtype=torch.float64) + 0.5) * scale - 0.5
    low = torch.floor(src)
    frac = (src - low).to(x.dtype)
    i0 = low.long().clamp(0, n - 1)
    i1 = (low.long() + 1).clamp(0, n - 1)
    shape = [1] * x.dim()
    shape[dim] = out_len
    frac = frac.view(shape)
    return x.index_select(dim, i0) * (1 - frac) + x.index_select(dim, i1) * frac


def resize_bilinear(
    x: torch.Tensor, height: int, width: int, scale_y: float | None = None, scale_x: float | None = None
) -> torch.Tensor:
    """``cv2.resize(..., INTER_LINEAR)`` of the last two dimensions (float math).

    ``scale_*`` are source pixels per destination pixel; by default the size ratio (OpenCV with a
    ``dsize``); OpenCV with ``fx``/``fy`` uses 1/fx instead.
    """
    h, w = x.shape[-2:]
    y = _linear_axis(x, height, scale_y if scale_y is not None else h / height, x.dim() - 2)
    return _linear_axis(y, width, scale_x if scale_x is not None else w / width, x.dim() - 1)


def _remap_cubic(img: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """``cv2.remap(img, map_x, map_y, INTER_CUBIC)`` with the default constant-zero border; (B, H, W)."""
    _, h, w = img.shape
    # cv2.remap works on positions rounded to 1/32 px (INTER_TAB_SIZE)
    map_x = torch.round(map_x * 32) / 32
    map_y = torch.round(map_y * 32) / 32
    grid = torch.stack((map_x * (2 / (w - 1)) - 1, map_y * (2 / (h - 1)) - 1), dim=-1)
    out = F.grid_sample(img.unsqueeze(1), grid, mode="bicubic", padding_mode="zeros", align_corners=True)
    return out.squeeze(1)


# ------------------------------------------------------------------------------- finite differences
def _centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dx = F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1))
    dy = F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1))
    # OpenCV leaves the last row's dy and the last column's dx at zero, and the corner at zero
    return dx, dy


def _divergence(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    return v1 - F.pad(v1[:, :, :-1], (1, 0)) + v2 - F.pad(v2[:, :-1, :], (0, 0, 1, 0))


def _median(u: torch.Tensor, k: int, chunk_bytes: int = 256 << 20) -> torch.Tensor:
    """``cv2.medianBlur(u, k)`` (replicated borders), in chunks of the batch to bound memory."""
    b, h, w = u.shape
    r = k // 2
    padded = F.pad(u.unsqueeze(1), (r, r, r, r), mode="replicate")
    step = max(1, chunk_bytes // (k * k * h * w * u.element_size()))
    out = []
    for i in range(0, b, step):
        patches = F.unfold(padded[i : i + step], k)  # (b, k*k, h*w)
        out.append(patches.median(dim=1).values.view(-1, h, w))
    return torch.cat(out)


def _median_program(count: int) -> tuple[tuple[tuple[int, bool, int, int], ...], int]:
    """A selection network for the median of ``count`` values: Batcher's odd-even merge sort on the next
    power of two (the extra inputs +inf, folded away), pruned to the min/max operations that the middle
    output depends on (202 for 25 values). Returns the operations ``(result, is_min, a, b)`` over value ids
    (0 .. count - 1 are the inputs, results are numbered on from there) and the median's id."""
    n = 1 << (count - 1).bit_length()
    inf = -1
    wires = list(range(count)) + [inf] * (n - count)
    ops: list[tuple[int, bool, int, int]] = []
    p = 1
    while p < n:  # Batcher's network, comparators (i, i + k) in order
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(j, j + min(k, n - j - k)):
                    if i // (2 * p) != (i + k) // (2 * p):
                        continue
                    a, b = wires[i], wires[i + k]
                    if b == inf:
                        continue
                    if a == inf:
                        wires[i], wires[i + k] = b, inf
                        continue
                    ops.append((count + len(ops), True, a, b))
                    ops.append((count + len(ops), False, a, b))
                    wires[i], wires[i + k] = ops[-2][0], ops[-1][0]
            k //= 2
        p *= 2
    median = wires[count // 2]
    needed, stack = set(), [median]
    while stack:  # keep what the median depends on
        x = stack.pop()
        if x >= count and x not in needed:
            needed.add(x)
            stack.extend(ops[x - count][2:])
    return tuple(op for op in ops if op[0] in needed), median


def _median_network(u: torch.Tensor, k: int) -> torch.Tensor:
    """``cv2.medianBlur(u, k)`` (replicated borders) as elementwise min/max over the k*k shifted views:
    the same values as :func:`_median`, in a form a compiler fuses into one pass with no k*k copy."""
    _, h, w = u.shape
    r = k // 2
    padded = F.pad(u.unsqueeze(1), (r, r, r, r), mode="replicate").squeeze(1)
    values = {i: padded[:, i // k : i // k + h, i % k : i % k + w] for i in range(k * k)}
    program, median = _median_program(k * k)
    for out, is_min, a, b in program:
        values[out] = torch.minimum(values[a], values[b]) if is_min else torch.maximum(values[a], values[b])
    return values[median]


def _median_filter(u1, u2, mask, k: int):
    """The median step before each outer iteration, for the pairs in ``mask``."""
    return torch.where(mask, _median(u1, k), u1), torch.where(mask, _median(u2, k), u2)


def _median_filter_network(u1, u2, mask, k: int):
    return torch.where(mask, _median_network(u1, k), u1), torch.where(mask, _median_network(u2, k), u2)


# --------------------------------------------------------------------------------------- solver
#: inner iterations between two looks (from the host) at whether any pair still moves. A look waits for
#: the device, so on a GPU it is taken rarely; pairs that converged are frozen on the device in between,
#: so the result does not depend on this number, only the iterations spent after the last pair converged.
CHECK_EVERY = 10


def _primal_dual_step(u1, u2, p11, p12, p21, p22, rho_c, i1wx, i1wy, grad, small_grad, mask, l_t, taut, theta):
    """One inner iteration for every pair whose ``mask`` is set (the others keep their values): the
    thresholding step (v), the primal step (u) and the dual step (p); also each pair's squared change of u."""
    rho = rho_c + (i1wx * u1 + i1wy * u2)
    lt_grad = l_t * grad
    fi = torch.where(small_grad, torch.zeros_like(rho), -rho / torch.where(small_grad, 1.0, grad))
    fi = torch.where(rho < -lt_grad, l_t, torch.where(rho > lt_grad, -l_t, fi))
    v1 = u1 + fi * i1wx
    v2 = u2 + fi * i1wy
    new_u1 = v1 + theta * _divergence(p11, p12)
    new_u2 = v2 + theta * _divergence(p21, p22)
    error = ((new_u1 - u1).square() + (new_u2 - u2).square()).sum(dim=(1, 2), dtype=torch.float64)
    u1 = torch.where(mask, new_u1, u1)
    u2 = torch.where(mask, new_u2, u2)
    u1x, u1y = _forward_gradient(u1)
    u2x, u2y = _forward_gradient(u2)
    ng1 = 1 + taut * torch.hypot(u1x, u1y)
    ng2 = 1 + taut * torch.hypot(u2x, u2y)
    p11 = torch.where(mask, (p11 + taut * u1x) / ng1, p11)
    p12 = torch.where(mask, (p12 + taut * u1y) / ng1, p12)
    p21 = torch.where(mask, (p21 + taut * u2x) / ng2, p21)
    p22 = torch.where(mask, (p22 + taut * u2y) / ng2, p22)
    return u1, u2, p11, p12, p21, p22, error


class _Fused:
    """``fn`` compiled by TorchInductor into a few fused kernels (one compilation serves every size: dynamic
    shapes). Compilation happens at the first call; where it cannot (no compiler for the device), ``eager``
    (the same function, unfused) runs instead, said once."""

    def __init__(self, fn, eager) -> None:
        self.compiled = torch.compile(fn, dynamic=True, fullgraph=True)
        self.eager = eager
        self.failure: str | None = None

    def __call__(self, *args):
        if self.failure is None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # the eager function computes the same
                self.failure = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("TV-L1 runs unfused: %s could not be compiled (%s)", self.eager.__name__, self.failure)
        return self.eager(*args)


_FUSED: dict[str, _Fused] = {}


def _kernels(device: torch.device, fuse: bool | None):
    """The inner iteration and the median step for ``device``: fused where asked (``fuse`` None: on CUDA,
    where launching forty small kernels per iteration costs more than their arithmetic), else eager."""
    if fuse is False or (fuse is None and device.type != "cuda"):
        return _primal_dual_step, _median_filter
    if not _FUSED:
        _FUSED["step"] = _Fused(_primal_dual_step, _primal_dual_step)
        _FUSED["median"] = _Fused(_median_filter_network, _median_filter)
    return _FUSED["step"], _FUSED["median"]


def compile_ahead(device: str | torch.device, height: int = 256, width: int = 340) -> dict[str, str]:
    """Compile the fused kernels for ``device`` now rather than in the first request (20 s to over two
    minutes on a cold cache, once per process: dynamic shapes serve every later size). The compiler tunes
    its kernels for the sizes it first sees, so this solves two pairs of the frames to come (RegNet's
    340x256 by default). Returns what could not be compiled (empty when all was), as the solver would:
    the eager functions stand in."""
    # two pairs, not one: the compiler would take a size of 1 for a constant; the pyramid's sizes all
    # differ from each other, or it would assume them equal ever after
    ramp = torch.linspace(0, 255, height * width, device=device).reshape(1, height, width)
    frames = torch.cat([ramp, ramp.flip(-1), ramp.flip(-2)])
    tvl1(frames[:2], frames[1:], fuse=True)
    return {name: f.failure for name, f in _FUSED.items() if f.failure}


def _one_scale(i0, i1, u1, u2, p: TVL1Params, kernels, stats: dict | None):
    step, median = kernels
    b, h, w = i0.shape
    scaled_epsilon = p.epsilon * p.epsilon * h * w
    l_t = p.lambda_ * p.theta
    taut = p.tau / p.theta
    i1x, i1y = _centered_gradient(i1)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=i0.device, dtype=i0.dtype), torch.arange(w, device=i0.device, dtype=i0.dtype),
        indexing="ij",
    )  # fmt: skip
    p11, p12, p21, p22 = (torch.zeros_like(i0) for _ in range(4))
    iterations = 0
    for _ in range(p.warps):
        map_x, map_y = xs + u1, ys + u2
        i1w = _remap_cubic(i1, map_x, map_y)
        i1wx = _remap_cubic(i1x, map_x, map_y)
        i1wy = _remap_cubic(i1y, map_x, map_y)
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        small_grad = grad <= torch.finfo(grad.dtype).eps
        active = torch.ones(b, dtype=torch.bool, device=i0.device)
        for _ in range(p.outer_iterations):
            if not bool(active.any()):
                break
            mask = active.view(b, 1, 1)
            if p.median_filtering > 1:
                u1, u2 = median(u1, u2, mask, p.median_filtering)
            for n in range(p.inner_iterations):
                if n and n % CHECK_EVERY == 0 and not bool(active.any()):
                    break
                u1, u2, p11, p12, p21, p22, error = step(
                    u1, u2, p11, p12, p21, p22, rho_c, i1wx, i1wy, grad, small_grad, active.view(b, 1, 1),
                    l_t, taut, p.theta,
                )  # fmt: skip
                active = active & (error > scaled_epsilon)
                iterations += 1
    if stats is not None:
        stats.setdefault("inner_iterations", []).append({"size": [h, w], "iterations": iterations})
    return u1, u2


def _opencv_round(x: float) -> int:
    """cvRound / saturate_cast<int> of a positive size: round half to even, like rint."""
    return round(x)


@torch.no_grad()
def tvl1(
    i0: torch.Tensor,
    i1: torch.Tensor,
    params: TVL1Params = TVL1Params(),
    fuse: bool | None = None,
    stats: dict | None = None,
) -> torch.Tensor:
    """Flow from ``i0`` to ``i1`` for a batch of grey image pairs.

    ``i0``, ``i1``: (B, H, W), uint8 or float in 0..255 (as OpenCV takes them). Returns float32
    (B, H, W, 2): x and y displacement in pixels, like ``DualTVL1OpticalFlow.calc``. ``fuse``: compile
    the inner iteration into fused kernels (None: on CUDA only). ``stats``: a dict that receives the inner
    iterations run per pyramid level.
    """
    if i0.shape != i1.shape or i0.dim() != 3:
        raise ValueError(f"expected two (B, H, W) batches of the same shape, got {tuple(i0.shape)}, {tuple(i1.shape)}")
    levels = [(i0.float(), i1.float())]
    for _ in range(1, params.nscales):
        a, c = levels[-1]
        h, w = a.shape[-2:]
        size = (_opencv_round(h * params.scale_step), _opencv_round(w * params.scale_step))
        if size[0] < 16 or size[1] < 16:
            break
        inv = 1 / params.scale_step
        levels.append((resize_bilinear(a, *size, inv, inv), resize_bilinear(c, *size, inv, inv)))
    kernels = _kernels(i0.device, fuse)
    b, h, w = levels[-1][0].shape
    u1 = torch.zeros((b, h, w), device=i0.device)
    u2 = torch.zeros_like(u1)
    for s in range(len(levels) - 1, -1, -1):
        u1, u2 = _one_scale(*levels[s], u1, u2, params, kernels, stats)
        if s == 0:
            break
        h, w = levels[s - 1][0].shape[-2:]
        u1 = resize_bilinear(u1, h, w) / params.scale_step
        u2 = resize_bilinear(u2, h, w) / params.scale_step
    return torch.stack((u1, u2), dim=-1)


def tvl1_pairs(
    first: torch.Tensor,
    second: torch.Tensor,
    max_pairs: int = 256,
    params: TVL1Params = TVL1Params(),
    fuse: bool | None = None,
) -> torch.Tensor:
    """Flow from ``first[i]`` to ``second[i]`` (B, H, W) for every i: (B, H, W, 2), ``max_pairs`` pairs at a time."""
    return torch.cat([tvl1(first[i : i + max_pairs], second[i : i + max_pairs], params, fuse)
                      for i in range(0, first.shape[0], max_pairs)])  # fmt: skip


def tvl1_consecutive(
    frames: torch.Tensor, max_pairs: int = 256, params: TVL1Params = TVL1Params(), fuse: bool | None = None
) -> torch.Tensor:
    """Flow from each of N grey frames (N, H, W) to the next: (N - 1, H, W, 2), ``max_pairs`` pairs at a time."""
    return tvl1_pairs(frames[:-1], frames[1:], max_pairs, params, fuse)


def bgr_to_grey(frames: torch.Tensor) -> torch.Tensor:
    """``cv2.cvtColor(f, COLOR_BGR2GRAY)`` of uint8 (N, H, W, 3), bit-exact (OpenCV 4's 15-bit fixed point)."""
    f = frames.to(torch.int32)
    grey = (f[..., 0] * 3735 + f[..., 1] * 19235 + f[..., 2] * 9798 + (1 << 14)) >> 15
    return grey.to(torch.uint8)
