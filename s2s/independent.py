"""A second held-out set, drawn by code written apart from s2s.synth: does the model generalise?

s2s.synth makes the training clips (and the first held-out set); training on it could teach the model
its renderer's quirks (OpenCV's anti-aliasing, its palettes, its physics) rather than "a sound starts
where motion stops suddenly". This module shares none of its drawing, physics or sound code, and its
event kinds are never trained on:

- ``topple``: a row of tall blocks; each tips over about its base edge (accelerating, as an inverted
  pendulum does) and slams flat onto the floor: the impact is a low thud;
- ``knock``: a hammer head on a vertical guide is lifted slowly and dropped onto an anvil plate: a
  bright clang at each landing;
- ``rebound``: a puck slides left and right across the floor without friction and rebounds off two side
  walls: a click at each wall contact.

Pictures are rasterised with numpy from signed distances (coverage anti-aliasing, no OpenCV drawing), at
sizes and aspect ratios other than the training ones (16:9, 4:3, square), at 15 to 60 fps, with motion
blur (temporal supersampling over the exposure), a shaking camera, vignetting, sensor noise and
backgrounds of their own (tiles, wood grain, blotches). The sound: modal impacts of their own recipe
and a brown-noise room tone. Each clip is a :class:`s2s.synth.Clip` (the record every scorer reads),
with exact ground-truth onsets from the analytic event times, counted by the same rule as s2s.synth's
(:func:`s2s.synth.ground_truth_onsets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from s2s.constants import REGNET
from s2s.synth import Clip, ground_truth_onsets

#: the independent set's event kinds (none of them is a kind s2s.synth draws)
INDEPENDENT_KINDS = ("topple", "knock", "rebound")
#: its seeds (apart from training's and from s2s.synth's held-out seeds)
INDEPENDENT_SEEDS = range(3_000_000, 4_000_000)
#: picture sizes it draws from (width, height)
SIZES = ((480, 270), (320, 240), (288, 288), (400, 300), (384, 216))
FRAME_RATES = (15.0, 23.976, 29.97, 48.0, 59.94)


# ------------------------------------------------------------------------------------------ drawing
class Canvas:
    """A float RGB picture that shapes are painted on by coverage (1 px anti-aliased edges)."""

    def __init__(self, image: np.ndarray, centres: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> None:
        """``centres``: :func:`pixel_centres` of the picture's size (computed once, shared by every frame)."""
        self.image = image
        self.dx, self.dy = offset  # the camera's shake: scene coordinates -> picture coordinates
        self.ys, self.xs = centres

    def _paint(self, box: tuple[float, float, float, float], distance, colour) -> None:
        """``distance(xs, ys)``: signed distance (px) to the shape's edge within ``box`` (x0, y0, x1, y1)."""
        h, w = self.image.shape[:2]
        x0, y0 = max(0, int(box[0] + self.dx) - 2), max(0, int(box[1] + self.dy) - 2)
        x1, y1 = min(w, int(box[2] + self.dx) + 3), min(h, int(box[3] + self.dy) + 3)
        if x0 >= x1 or y0 >= y1:
            return
        xs, ys = self.xs[y0:y1, x0:x1] - self.dx, self.ys[y0:y1, x0:x1] - self.dy
        alpha = np.clip(0.5 - distance(xs, ys), 0.0, 1.0)[..., None]
        patch = self.image[y0:y1, x0:x1]
        patch += alpha * (np.asarray(colour, np.float32) - patch)

    def disc(self, cx: float, cy: float, r: float, colour) -> None:
        self._paint((cx - r, cy - r, cx + r, cy + r), lambda x, y: np.hypot(x - cx, y - cy) - r, colour)

    def box(self, cx: float, cy: float, half_w: float, half_h: float, angle: float, colour) -> None:
        """A rectangle centred at (cx, cy), turned by ``angle`` radians."""
        c, s = math.cos(angle), math.sin(angle)
        reach = abs(half_w * c) + abs(half_h * s), abs(half_w * s) + abs(half_h * c)

        def distance(x, y):
            u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
            qx, qy = np.abs(u) - half_w, np.abs(v) - half_h
            return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)

        self._paint((cx - reach[0], cy - reach[1], cx + reach[0], cy + reach[1]), distance, colour)


def pixel_centres(width: int, height: int) -> np.ndarray:
    """(2, height, width) float32: each pixel centre's y and x."""
    return np.mgrid[0:height, 0:width].astype(np.float32) + 0.5


def _backdrop(rng: np.random.Generator, width: int, height: int, floor_y: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    style = rng.integers(3)
    base, other = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    if style == 0:  # tiles
        size = rng.uniform(12, 48)
        mask = ((np.floor(xs / size) + np.floor(ys / size)) % 2)[..., None]
    elif style == 1:  # wood grain: wavy bands
        mask = (0.5 + 0.5 * np.sin(ys / rng.uniform(3, 9) + 2.5 * np.sin(xs / rng.uniform(30, 90))))[..., None]
    else:  # blotches: a few soft blobs
        mask = np.zeros((height, width, 1), np.float32)
        for _ in range(int(rng.integers(3, 8))):
            cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(15, 70)
            mask[..., 0] += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))
        mask = np.clip(mask, 0, 1)
    image = base + (other - base) * mask
    ground = rng.uniform(40, 160, 3)
    image[int(floor_y) :] = ground + 12 * np.sin(xs[int(floor_y) :, :, None] / 5.0)
    return image.astype(np.float32)


# ------------------------------------------------------------------------------------------- events
@dataclass
class _Toppler:
    x: float  #: the edge it tips about
    direction: int  #: +1 falls to the right
    half_w: float
    half_h: float
    start: float  #: starts tipping
    fall_s: float  #: from standing to flat
    colour: tuple[float, float, float]

    def angle(self, t: float) -> float:
        """0 standing, pi/2 flat; a slow start and a fast end, as the inverted pendulum tips."""
        a = min(1.0, max(0.0, (t - self.start) / self.fall_s))
        return (0.03 + (math.pi / 2 - 0.03) * a**3) if t >= self.start else 0.0

    def draw(self, canvas: Canvas, floor_y: float, t: float) -> None:
        a, d = self.angle(t), self.direction
        # the block's centre turns about its bottom edge on the side it falls to
        edge = self.x + d * self.half_w
        cx = edge - d * math.cos(a) * self.half_w + d * math.sin(a) * self.half_h
        cy = floor_y - math.sin(a) * self.half_w - math.cos(a) * self.half_h
        canvas.box(cx, cy, self.half_w, self.half_h, d * a, self.colour)


@dataclass
class _Hammer:
    x: float
    half_w: float
    plate_y: float
    lift: float  #: height it is raised to, px
    drops: list[float]  #: landing times
    colour: tuple[float, float, float]

    def height(self, t: float) -> float:
        """Above the plate: dropped in free fall onto each landing, lifted slowly after it."""
        fall_s = 0.16
        for land in self.drops:
            if land - fall_s <= t <= land:
                return self.lift * (1 - ((t - land + fall_s) / fall_s) ** 2)
        before = [d for d in self.drops if d < t]
        after = [d for d in self.drops if d > t]
        if not before:
            return self.lift
        start, end = before[-1] + 0.05, (after[0] - fall_s) if after else before[-1] + 1.0
        a = min(1.0, max(0.0, (t - start) / max(1e-3, end - start)))
        return self.lift * (0.5 - 0.5 * math.cos(math.pi * a))

    def draw(self, canvas: Canvas, floor_y: float, t: float) -> None:
        canvas.box(self.x, self.plate_y + 4, self.half_w * 1.6, 4, 0.0, (90, 90, 100))
        bottom = self.plate_y - self.height(t)
        canvas.box(self.x, (bottom - 20) / 2, 2.5, (bottom - 20) / 2, 0.0, (60, 60, 60))  # its rod
        canvas.box(self.x, bottom - 10, self.half_w, 10, 0.0, self.colour)


@dataclass
class _Puck:
    r: float
    left: float  #: wall x positions
    right: float
    x0: float
    speed: float  #: px/s, sign = initial direction
    colour: tuple[float, float, float]

    def x(self, t: float) -> float:
        span = self.right - self.left - 2 * self.r
        u = (self.x0 - self.left - self.r + self.speed * t) % (2 * span)
        return self.left + self.r + (u if u <= span else 2 * span - u)

    def contacts(self, duration: float) -> list[float]:
        span = self.right - self.left - 2 * self.r
        u0 = self.x0 - self.left - self.r
        # contacts where u0 + speed t is a multiple of span
        k_first, k_last = sorted(((u0) / span, (u0 + self.speed * duration) / span))
        ks = range(math.floor(k_first) + 1, math.ceil(k_last))
        return sorted((k * span - u0) / self.speed for k in ks)

    def draw(self, canvas: Canvas, floor_y: float, t: float) -> None:
        for wall in (self.left, self.right):
            canvas.box(wall, floor_y - 30, 3, 30, 0.0, (35, 35, 35))
        canvas.disc(self.x(t), floor_y - self.r, self.r, self.colour)


# ------------------------------------------------------------------------------------------- sounds
def _modal_hit(rng: np.random.Generator, sr: int, freqs, decay_s: float, noise: float) -> np.ndarray:
    """An impact: modes at ``freqs`` (higher ones quieter and shorter) and a noise transient, peak 1."""
    n = int(0.5 * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k, f in enumerate(freqs):
        if f < 0.45 * sr:
            envelope = np.exp(-t * (1 + 0.5 * k) / decay_s) / (1 + k)
            out += envelope * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    burst = int(0.006 * sr)
    out[:burst] += noise * rng.uniform(-1, 1, burst) * np.exp(-np.arange(burst) / (0.0015 * sr))
    return out / max(1e-9, np.abs(out).max())


def _brown_noise(rng: np.random.Generator, n: int, rms: float) -> np.ndarray:
    walk = np.cumsum(rng.standard_normal(n))
    walk -= np.convolve(walk, np.ones(2048) / 2048, mode="same")  # keep it from wandering off
    return walk * rms / max(1e-12, float(np.sqrt(np.mean(walk**2))))


# ------------------------------------------------------------------------------------------- clips
def independent_clip(seed: int, duration_s: float = 8.0) -> Clip:
    """One clip of the independent set from ``seed`` (same seed, same clip)."""
    rng = np.random.default_rng([seed, 104723, 5])
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    fps = float(FRAME_RATES[int(rng.integers(len(FRAME_RATES)))])
    sr = REGNET.sample_rate
    floor_y = height * rng.uniform(0.72, 0.86)
    backdrop = _backdrop(rng, width, height, floor_y)
    kinds = [str(k) for k in rng.choice(INDEPENDENT_KINDS, size=int(rng.integers(1, 3)), replace=False)]
    scale = height / 270
    things: list = []
    hits: list[tuple[float, np.ndarray, float]] = []  # (time, sound, gain)
    for kind in kinds:
        colour = tuple(float(c) for c in rng.uniform(40, 255, 3))
        if kind == "topple":
            count, t = int(rng.integers(2, 5)), rng.uniform(0.3, 1.0)
            for i in range(count):
                half_w, half_h = rng.uniform(5, 10) * scale, rng.uniform(25, 45) * scale
                x = width * (0.15 + 0.7 * (i + 0.5) / count)
                fall_s = rng.uniform(0.35, 0.7)
                things.append(_Toppler(x, int(rng.choice([-1, 1])), half_w, half_h, t, fall_s, colour))
                sound = _modal_hit(rng, sr, rng.uniform(120, 260) * np.array([1.0, 2.3, 3.9]), 0.05, 0.6)
                hits.append((t + fall_s, sound, rng.uniform(0.7, 1.0)))
                t += fall_s + rng.uniform(0.4, 1.6)
        elif kind == "knock":
            t, drops = rng.uniform(0.4, 1.0), []
            while t < duration_s:
                drops.append(t)
                t += rng.uniform(0.6, 1.5)
            plate_y = floor_y - rng.uniform(10, 30) * scale
            things.append(_Hammer(rng.uniform(0.2, 0.8) * width, rng.uniform(12, 22) * scale, plate_y,
                                  rng.uniform(40, 80) * scale, drops, colour))  # fmt: skip
            pitch = rng.uniform(600, 1400)
            for d in drops:
                hits.append((d, _modal_hit(rng, sr, pitch * np.array([1.0, 2.92, 4.1, 6.3]), 0.12, 0.3), 1.0))
        else:
            r = rng.uniform(8, 16) * scale
            left, right = rng.uniform(0.05, 0.2) * width, rng.uniform(0.8, 0.95) * width
            puck = _Puck(r, left, right, rng.uniform(left + r, right - r),
                         rng.choice([-1, 1]) * rng.uniform(0.5, 1.2) * (right - left), colour)  # fmt: skip
            things.append(puck)
            pitch = rng.uniform(1500, 3000)
            for c in puck.contacts(duration_s):
                hits.append((c, _modal_hit(rng, sr, pitch * np.array([1.0, 1.7, 2.6]), 0.03, 1.0), 0.8))
    track = np.zeros(round(duration_s * sr))
    for t, sound, gain in hits:
        at = round(t * sr)
        if 0 <= at < track.size:
            end = min(track.size, at + sound.size)
            track[at:end] += gain * sound[: end - at]
    peak = float(np.abs(track).max())
    audio = (0.8 * track / peak if peak > 0 else track) + _brown_noise(rng, track.size, 10 ** (-44 / 20))
    onsets = ground_truth_onsets([t for t, _, _ in hits], duration_s)
    frames = _film(rng, backdrop, things, floor_y, fps, duration_s, seed)
    return Clip(frames=frames, audio=audio.astype(np.float32), onsets=onsets, fps=fps, sample_rate=sr,
                seed=seed, kinds=kinds)  # fmt: skip


def _film(rng, backdrop: np.ndarray, things: list, floor_y: float, fps: float, duration_s: float,
          seed: int) -> np.ndarray:  # fmt: skip
    """The scene at ``fps``: exposure-blurred, shaken, vignetted, noisy uint8 RGB->BGR frames."""
    height, width = backdrop.shape[:2]
    count = max(1, round(duration_s * fps))
    exposure = rng.choice([0.0, 0.4, 0.8]) / fps  # open shutter, as a fraction of the frame period
    shake = np.zeros((count, 2))
    if rng.random() < 0.6:
        steps = rng.standard_normal((count, 2))
        kernel = np.hanning(9) / np.hanning(9).sum()
        shake = np.stack([np.convolve(steps[:, k], kernel, mode="same") for k in range(2)], axis=1)
        shake *= rng.uniform(1.0, 4.0) / max(1e-9, float(np.abs(shake).max()))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    vignette = 1 - rng.uniform(0.0, 0.35) * (((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) * 2)[..., None]
    sigma = rng.choice([0.0, 3.0, 6.0])
    noise_rng = np.random.default_rng([seed, 7])
    frames = np.empty((count, height, width, 3), np.uint8)
    centres = pixel_centres(width, height)
    subs = 3 if exposure > 0 else 1
    margin = 8  # the backdrop moves with the camera too: a shifted window of a wider copy
    wide = np.pad(backdrop, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
    for i in range(count):
        t = i / fps
        picture = np.zeros((height, width, 3), np.float32)
        dx, dy = (round(v) for v in shake[i])
        for k in range(subs):
            canvas = Canvas(wide[margin - dy : margin - dy + height, margin - dx : margin - dx + width].copy(),
                            centres, tuple(shake[i]))  # fmt: skip
            tk = t + (exposure * (k / (subs - 1) - 0.5) if subs > 1 else 0.0)
            for thing in things:
                thing.draw(canvas, floor_y, tk)
            picture += canvas.image / subs
        picture *= vignette
        if sigma:
            picture += sigma * noise_rng.standard_normal(picture.shape).astype(np.float32)
        frames[i] = np.clip(picture[..., ::-1] + 0.5, 0, 255).astype(np.uint8)  # BGR, as Clip frames are
    return frames
