"""Synthetic audio-visual clips where visible events cause sounds at the same instant.

The project's one generator of videos: training data for the demo weights, held-out data for the
alignment score (``s2s eval``), the demo's sample, and the tests' and benchmarks' inputs in any
container PyAV writes (mp4/H.264, webm/VP9, avi/MJPEG, mov/MPEG-4, mkv), with a display rotation
(as phones write), irregular timestamps (variable frame rate) or an audio track on request; plus the
malformed files a user might upload (audio only, no frames). Every clip is drawn from one seed: a
background (colour gradient, texture, floor), one to three objects and their events, rendered with
OpenCV at the pipeline's frame rate, and the matching waveform at its sample rate. Event times come
from the motion itself (solved analytically, not snapped to frames), so the ground-truth onsets are
exact:

- ``bounce``: a ball falls and bounces (gravity, restitution); each floor contact is an impact (damped
  modes whose pitch follows the ball's size, loudness its speed, plus a short noise burst); balls
  that come to rest are thrown up again.
- ``strike``: a stick on a pivot rises slowly and swings down onto a block; each hit is a sharp
  impact with bright, inharmonic modes.
- ``slide``: a box is shoved along the floor and slows down by friction: a short scrape at the shove
  (the onset), then a low band-passed noise whose level follows its speed while it moves.

``variety="wide"`` widens what is drawn (what training on it should generalise from): a fourth event
kind, ``collide`` (two bodies slide into each other on the floor: each collision is an impact), balls of
other shapes (spinning squares and hexagons), striped, checked and cluttered backgrounds, frame rates
from 15 to 60 fps, motion blur (each frame the mean of the scene over its exposure), camera shake and
sensor noise, all drawn from the seed on a stream of their own (``"plain"``, the default, draws exactly
the clips it always has). s2s.independent draws a second held-out set with code of its own.

Every clip also has a faint room tone (pink noise at ``ROOM_TONE_DBFS``), as recordings do. The levels
are chosen so that each visible event is an onset librosa finds in the clip's own sound: the
alignment score (s2s.alignment) then measures the model, not the data. Without room tone, a sound
that starts from digital silence makes a spectral-flux peak many times that of an impact during
friction noise, and ``onset_detect``'s threshold (relative to the clip's largest peak) misses the
latter; a loud friction band over the impacts' band masks them too.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from s2s.constants import REGNET, Recipe
from s2s.video import encode_mono_audio, video_encoder_options

EVENT_KINDS = ("bounce", "strike", "slide")
#: kinds only the wide variety draws
WIDE_KINDS = ("collide",)
#: "plain": the original clips; "wide": more kinds, shapes, backgrounds, frame rates, blur, shake, noise
VARIETIES = ("plain", "wide")
#: frame rates the wide variety draws from (when no ``fps`` is given)
WIDE_FPS = (15.0, 20.0, 21.5, 24.0, 25.0, 30.0, 50.0, 60.0)
#: seeds of the held-out clips that ``s2s eval`` scores on; training must use seeds below
HELD_OUT_SEEDS = range(1_000_000, 2_000_000)
#: the clip `s2s demo` makes (held out: never trained on)
DEMO_SEED = 1_999_999
#: events of one clip closer than this are one ground-truth onset (the metric's own resolution is 0.05 s)
MIN_ONSET_GAP_S = 0.1
#: RMS level of the room tone, dB relative to full scale (clips peak at -1.9 dBFS)
ROOM_TONE_DBFS = -45.0
#: friction noise at full speed, relative to an impact of strength 1
FRICTION_GAIN = 0.35
#: the scrape when a box is shoved: peak level of its noise burst
SHOVE_GAIN = 0.5
#: container -> (format name for PyAV, default video codec, pixel format)
CONTAINERS: dict[str, tuple[str, str, str]] = {
    "mp4": ("mp4", "libx264", "yuv420p"),
    "webm": ("webm", "libvpx-vp9", "yuv420p"),
    "avi": ("avi", "mjpeg", "yuvj420p"),
    "mov": ("mov", "mpeg4", "yuv420p"),
    "mkv": ("matroska", "libx264", "yuv420p"),
    "gif": ("gif", "gif", "rgb8"),  # an animated GIF: mp4 cannot hold it, the mux re-encodes
    "flv": ("flv", "flv", "yuv420p"),  # Sorenson H.263 (FLV1) in FLV: likewise
}


@dataclass
class Clip:
    frames: np.ndarray  #: uint8 (N, H, W, 3) BGR, frame i shown from ``times[i]``
    audio: np.ndarray  #: float32 (samples,) at ``sample_rate``, events peak at 0.8, plus room tone
    onsets: np.ndarray  #: float64 seconds, sorted: when a sound starts
    fps: float  #: nominal frame rate (the mean one, where ``variable_frame_rate``)
    sample_rate: int
    seed: int
    kinds: list[str] = field(default_factory=list)
    times: np.ndarray | None = None  #: float64 (N,) seconds; None: i / fps
    variable_frame_rate: bool = False

    def frame_times(self) -> np.ndarray:
        return self.times if self.times is not None else np.arange(len(self.frames)) / self.fps

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.sample_rate


def ground_truth_onsets(events, duration_s: float) -> np.ndarray:
    """The clip's ground-truth onsets: its event times within the clip, sorted, those closer than
    :data:`MIN_ONSET_GAP_S` to the one before counted once."""
    onsets: list[float] = []
    for t in sorted(events):
        if 0 <= t < duration_s and (not onsets or t - onsets[-1] >= MIN_ONSET_GAP_S):
            onsets.append(t)
    return np.array(onsets)


# ------------------------------------------------------------------------------------------- sounds
def _impact(rng: np.random.Generator, sr: int, base_hz: float, strength: float, bright: bool) -> np.ndarray:
    """A struck object: a few damped modes and a click, ``strength`` in 0..1."""
    length = int(0.35 * sr)
    t = np.arange(length) / sr
    ratios = [1.0, 2.76, 5.40, 8.93] if bright else [1.0, 1.59, 2.14, 2.65]
    out = np.zeros(length)
    for k, ratio in enumerate(ratios):
        freq = base_hz * ratio * (1 + 0.02 * rng.standard_normal())
        if freq > 0.45 * sr:
            continue
        decay = (0.09 if bright else 0.06) / (1 + 0.8 * k) * (0.7 + 0.6 * rng.random())
        out += (0.7**k) * np.exp(-t / decay) * np.sin(2 * np.pi * freq * t + rng.random() * 2 * np.pi)
    click = int(0.004 * sr)
    out[:click] += rng.standard_normal(click) * np.linspace(1, 0, click) * (0.8 if bright else 0.5)
    return strength * out / max(1e-9, np.abs(out).max())


def _friction(rng: np.random.Generator, sr: int, speed: np.ndarray, centre_hz: float) -> np.ndarray:
    """Noise band-passed around ``centre_hz`` whose level follows ``speed`` (0..1, one value per sample)."""
    from scipy.signal import butter, sosfilt

    sos = butter(2, [centre_hz / 1.6, min(centre_hz * 1.6, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    noise = sosfilt(sos, rng.standard_normal(speed.size))
    return noise / max(1e-9, np.abs(noise).max()) * speed


def _shove(rng: np.random.Generator, sr: int) -> np.ndarray:
    """The scrape when a box is shoved: 30 ms of broadband noise decaying in ~8 ms, peak about 1."""
    n = int(0.03 * sr)
    return np.clip(rng.standard_normal(n) / 3, -1, 1) * np.exp(-np.arange(n) / (0.008 * sr))


def _room_tone(rng: np.random.Generator, n: int, dbfs: float = ROOM_TONE_DBFS) -> np.ndarray:
    """Pink (1/f power) noise with an RMS of ``dbfs``: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    spectrum /= np.sqrt(np.maximum(f, 1.0))
    spectrum[0] = 0.0
    tone = np.fft.irfft(spectrum, n)
    return tone * (10 ** (dbfs / 20) / max(1e-12, float(np.sqrt(np.mean(tone**2)))))


def _add(track: np.ndarray, sound: np.ndarray, at: int) -> None:
    end = min(track.size, at + sound.size)
    if 0 <= at < track.size:
        track[at:end] += sound[: end - at]


# ------------------------------------------------------------------------------------------ objects
@dataclass
class _Ball:
    x0: float
    vx: float
    radius: float
    colour: tuple[int, int, int]
    floor: float
    gravity: float
    restitution: float
    segments: list[tuple[float, float, float]]  # (start time, start height above floor, upward speed)

    def contacts(self) -> list[tuple[float, float]]:
        """(time, impact speed) of every floor contact."""
        out = []
        for start, height, v_up in self.segments:
            # time to fall from the segment's start to the floor: height + v t - g t^2 / 2 = 0
            t = (v_up + math.sqrt(v_up * v_up + 2 * self.gravity * height)) / self.gravity
            out.append((start + t, math.sqrt(v_up * v_up + 2 * self.gravity * height)))
        return out

    def position(self, t: float, width: int) -> tuple[float, float]:
        seg = max((s for s in self.segments if s[0] <= t), key=lambda s: s[0], default=self.segments[0])
        start, height, v_up = seg
        dt = max(0.0, t - start)
        h = max(0.0, height + v_up * dt - 0.5 * self.gravity * dt * dt)
        span = width - 2 * self.radius
        x = self.x0 + self.vx * t
        x = self.radius + abs((x - self.radius) % (2 * span) - span) if span > 0 else width / 2  # walls reflect
        return x, self.floor - self.radius - h


def _make_ball(rng, duration: float, width: int, height: int, floor: float) -> tuple[_Ball, list[tuple[float, float]]]:
    radius = rng.uniform(14, 34)
    gravity = rng.uniform(900, 1600)
    restitution = rng.uniform(0.6, 0.85)
    ball = _Ball(
        x0=rng.uniform(radius, width - radius), vx=rng.uniform(-60, 60), radius=radius,
        colour=tuple(int(c) for c in rng.integers(90, 256, 3)), floor=floor, gravity=gravity,
        restitution=restitution, segments=[],
    )  # fmt: skip
    top = floor - 2 * radius - 10
    t = rng.uniform(-0.3, 0.6)
    ball.segments.append((t, rng.uniform(0.4, 1.0) * top, 0.0))
    while True:
        start, h, v = ball.segments[-1]
        contact = start + (v + math.sqrt(v * v + 2 * gravity * h)) / gravity
        if contact > duration:
            break
        speed = math.sqrt(v * v + 2 * gravity * h)
        rebound = restitution * speed
        if rebound < 160:  # at rest: lie there a moment, then get thrown up again
            pause = rng.uniform(0.2, 0.8)
            ball.segments.append((contact, 0.0, 0.0))
            throw = math.sqrt(2 * gravity * rng.uniform(0.5, 1.0) * top)
            ball.segments.append((contact + pause, 0.0, throw))
        else:
            ball.segments.append((contact, 0.0, rebound))
    # segments that start at rest on the floor (v = 0, h = 0) are pauses: their "contact" has no speed
    events = [(c, s) for c, s in ball.contacts() if s > 1.0 and 0 <= c < duration]
    return ball, events


def _ball_sound(rng, sr: int, ball: _Ball, events: list[tuple[float, float]], track: np.ndarray) -> None:
    base = 1800.0 * 20.0 / ball.radius  # smaller balls sound higher
    vmax = math.sqrt(2 * ball.gravity * ball.floor)
    for t, speed in events:
        _add(track, _impact(rng, sr, base, min(1.0, 0.25 + speed / vmax), bright=False), round(t * sr))


@dataclass
class _Stick:
    pivot: tuple[float, float]
    length: float
    side: int  #: +1: the stick points right of its pivot, -1: left
    colour: tuple[int, int, int]
    hits: list[float]
    rest_angle: float  #: on the block, radians below the horizontal
    raise_angle: float  #: fully raised (negative: above the horizontal)
    swing_s: float

    def end(self, angle: float) -> tuple[float, float]:
        return (
            self.pivot[0] + self.side * self.length * math.cos(angle),
            self.pivot[1] + self.length * math.sin(angle),
        )


def _make_stick(rng, duration: float, width: int, floor: float) -> tuple[_Stick, list[tuple[float, float]]]:
    length = rng.uniform(70, 120)
    side = 1 if rng.random() < 0.5 else -1
    px = rng.uniform(20, width - length - 30) if side > 0 else rng.uniform(length + 30, width - 20)
    pivot = (px, floor - rng.uniform(45, 75))
    hits, t = [], rng.uniform(0.2, 0.9)
    while t < duration:
        hits.append(t)
        t += rng.uniform(0.45, 1.3)
    stick = _Stick(
        pivot=pivot, length=length, side=side, colour=tuple(int(c) for c in rng.integers(60, 230, 3)), hits=hits,
        rest_angle=0.35, raise_angle=-1.0, swing_s=rng.uniform(0.07, 0.12),
    )  # fmt: skip
    return stick, [(h, 1.0) for h in hits]


def _stick_angle(stick: _Stick, t: float) -> float:
    """Rests on the block after a hit, rises slowly, swings down in ``swing_s`` onto the next hit."""
    nxt = next((h for h in stick.hits if h >= t), None)
    prev = max((h for h in stick.hits if h < t), default=None)
    if nxt is not None and nxt - t <= stick.swing_s:  # swinging down (accelerating)
        a = 1 - (nxt - t) / stick.swing_s
        return stick.raise_angle + (stick.rest_angle - stick.raise_angle) * a * a
    start = prev if prev is not None else t - 1.0
    end = (nxt - stick.swing_s) if nxt is not None else start + 1.0
    a = min(1.0, max(0.0, (t - start - 0.1) / max(1e-3, end - start - 0.1)))
    return stick.rest_angle + (stick.raise_angle - stick.rest_angle) * (0.5 - 0.5 * math.cos(math.pi * a))


@dataclass
class _Box:
    size: tuple[float, float]
    colour: tuple[int, int, int]
    floor: float
    pushes: list[tuple[float, float, float, float]]  # (start, duration, x at start, initial speed, signed)


def _make_box(rng, duration: float, width: int, floor: float) -> tuple[_Box, list[tuple[float, float]]]:
    w, h = rng.uniform(40, 70), rng.uniform(30, 50)
    box = _Box(size=(w, h), colour=tuple(int(c) for c in rng.integers(60, 230, 3)), floor=floor, pushes=[])
    x, t = rng.uniform(w, width - w), rng.uniform(0.2, 1.0)
    while t < duration:
        direction = 1 if x < width / 2 else -1
        travel = rng.uniform(0.3, 0.6) * (width - w)
        slide_s = rng.uniform(0.5, 1.1)
        speed = 2 * travel / slide_s  # uniform deceleration to rest
        box.pushes.append((t, slide_s, x, direction * speed))
        x += direction * travel
        t += slide_s + rng.uniform(0.3, 1.0)
    return box, [(p[0], 1.0) for p in box.pushes]


def _box_state(box: _Box, t: float) -> tuple[float, float]:
    """(x centre, speed) at ``t``."""
    x, speed = (box.pushes[0][2] if box.pushes else 0.0), 0.0
    for start, slide_s, x0, v0 in box.pushes:
        if t < start:
            break
        dt = min(t - start, slide_s)
        x = x0 + v0 * dt - 0.5 * (v0 / slide_s) * dt * dt
        speed = abs(v0) * (1 - dt / slide_s) if t - start < slide_s else 0.0
    return x, speed


@dataclass
class _Pair:
    """Two bodies on the floor launched at each other; after each collision they slide apart to rest."""

    radii: tuple[float, float]
    squares: tuple[bool, bool]
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    floor: float
    #: (launch time, x of the left body, x of the right body, its speed, the other's, slide time after)
    episodes: list[tuple[float, float, float, float, float, float]]

    def collision(self, episode) -> float:
        launch, xa, xb, va, vb, _ = episode
        return launch + (xb - xa - sum(self.radii)) / (va + vb)

    def positions(self, t: float) -> tuple[float, float]:
        episode = max((e for e in self.episodes if e[0] <= t), key=lambda e: e[0], default=self.episodes[0])
        launch, xa, xb, va, vb, slide = episode
        tc = self.collision(episode)
        if t <= tc:
            dt = max(0.0, t - launch)
            return xa + va * dt, xb - vb * dt
        dt = min(t - tc, slide)  # elastic, equal masses: they swap speeds, then friction stops them
        ca, cb = xa + va * (tc - launch), xb - vb * (tc - launch)
        return ca - (vb * dt - 0.5 * vb / slide * dt * dt), cb + (va * dt - 0.5 * va / slide * dt * dt)


def _make_pair(rng, duration: float, width: int, floor: float) -> tuple[_Pair, list[tuple[float, float]]]:
    radii = (rng.uniform(14, 28), rng.uniform(14, 28))
    pair = _Pair(radii=radii, squares=(bool(rng.random() < 0.5), bool(rng.random() < 0.5)),
                 colours=tuple(tuple(int(c) for c in rng.integers(70, 256, 3)) for _ in range(2)),
                 floor=floor, episodes=[])  # fmt: skip
    xa, xb = rng.uniform(radii[0] + 5, 0.35 * width), rng.uniform(0.65 * width, width - radii[1] - 5)
    t = rng.uniform(-0.2, 0.8)
    events = []
    while t < duration:
        va, vb = rng.uniform(90, 260), rng.uniform(90, 260)
        episode = (t, xa, xb, va, vb, 1.0)
        tc = pair.collision(episode)
        ca, cb = xa + va * (tc - t), xb - vb * (tc - t)
        # slide apart for at most 0.9 s, and stop before leaving the picture
        slide = min(rng.uniform(0.4, 0.9), 2 * (ca - radii[0] - 2) / vb, 2 * (width - radii[1] - 2 - cb) / va)
        slide = max(slide, 0.05)
        pair.episodes.append((t, xa, xb, va, vb, slide))
        events.append((tc, min(1.0, (va + vb) / 400)))
        xa, xb = ca - vb * slide / 2, cb + va * slide / 2
        t = tc + slide + rng.uniform(0.3, 0.9)
    return pair, [(t, s) for t, s in events if 0 <= t < duration]


def _polygon(centre: tuple[float, float], radius: float, sides: int, angle: float) -> np.ndarray:
    a = angle + 2 * np.pi * np.arange(sides) / sides
    return np.stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)], axis=1)


@dataclass
class _Look:
    """How the wide variety films a scene: ball shape, exposure (motion blur), shake, noise."""

    ball_sides: int  #: 0: a disc; 4 or 6: a spinning polygon
    spin: float  #: radians per second of a polygon ball
    exposure_s: float  #: the shutter's open time (0: a sharp frame)
    shake: np.ndarray  #: (N, 2) px offset of the camera per frame
    noise_sigma: float
    seed: int

    def film(self, scene, t: float, index: int) -> np.ndarray:
        """The frame at ``t``: the scene averaged over the exposure, shaken, with sensor noise."""
        if self.exposure_s > 0:
            subs = [scene(t + self.exposure_s * (k / 3 - 0.5)) for k in range(4)]
            frame = np.mean(subs, axis=0, dtype=np.float32)
        else:
            frame = scene(t).astype(np.float32)
        dx, dy = self.shake[index]
        if dx or dy:
            matrix = np.float32([[1, 0, dx], [0, 1, dy]])
            frame = cv2.warpAffine(frame, matrix, frame.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
        if self.noise_sigma:
            noise = np.random.default_rng([self.seed, 611953, index]).standard_normal(frame.shape)
            frame = frame + self.noise_sigma * noise.astype(np.float32)
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def _make_look(look: np.random.Generator, frames: int, seed: int) -> _Look:
    shake = np.zeros((frames, 2))
    if look.random() < 0.5:  # a hand-held camera: a smooth random walk of a few pixels
        from scipy.ndimage import gaussian_filter1d

        walk = gaussian_filter1d(look.standard_normal((frames, 2)), 3.0, axis=0)
        shake = walk / max(1e-9, float(np.abs(walk).max())) * look.uniform(1.0, 5.0)
    return _Look(ball_sides=int(look.choice([0, 0, 4, 6])), spin=look.uniform(-6, 6),
                 exposure_s=float(look.choice([0.0, 0.0, 0.01, 0.02, 0.03])), shake=shake,
                 noise_sigma=float(look.choice([0.0, 0.0, 2.0, 4.0, 6.0])), seed=seed)  # fmt: skip


# ---------------------------------------------------------------------------------------- rendering
def _background(rng, width: int, height: int, floor: float) -> np.ndarray:
    yy = np.mgrid[0:height, 0:width][0].astype(np.float32)
    top, bottom = rng.integers(20, 160, 3), rng.integers(20, 160, 3)
    image = np.empty((height, width, 3), np.float32)
    for c in range(3):
        image[..., c] = top[c] + (bottom[c] - top[c]) * yy / height
    texture = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 3) * 25
    image += texture[..., None]
    image[int(floor) :] = rng.integers(30, 110, 3)  # the floor
    image[int(floor) :] += texture[int(floor) :, :, None] * 0.6
    return np.clip(image, 0, 255).astype(np.uint8)


def _wide_background(look: np.random.Generator, plain: np.ndarray, floor: float) -> np.ndarray:
    """The plain background, or stripes, checks or clutter (static shapes) above its floor."""
    style = str(look.choice(["plain", "stripes", "checks", "clutter"]))
    if style == "plain":
        return plain
    height, width = plain.shape[:2]
    image = plain.astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wall = image[: int(floor)]
    colour = look.integers(20, 200, 3).astype(np.float32)
    if style == "stripes":
        angle, period = look.uniform(0, np.pi), look.uniform(8, 40)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        mask = (0.5 + 0.5 * np.sin(2 * np.pi * phase))[: int(floor), :, None]
        wall[:] = wall * (1 - 0.6 * mask) + colour * 0.6 * mask
    elif style == "checks":
        size = look.uniform(10, 36)
        mask = ((xx // size + yy // size) % 2)[: int(floor), :, None]
        wall[:] = wall * (1 - 0.5 * mask) + colour * 0.5 * mask
    else:
        for _ in range(int(look.integers(4, 12))):
            c = tuple(int(v) for v in look.integers(0, 256, 3))
            x, y = int(look.integers(0, width)), int(look.integers(0, int(floor)))
            if look.random() < 0.5:
                cv2.circle(wall, (x, y), int(look.integers(6, 40)), c, -1, cv2.LINE_AA)
            else:
                w, h = int(look.integers(10, 80)), int(look.integers(10, 60))
                cv2.rectangle(wall, (x, y), (x + w, y + h), c, -1, cv2.LINE_AA)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_clip(seed: int, duration_s: float = 8.0, width: int | None = None, height: int | None = None,
              recipe: Recipe = REGNET, kinds: tuple[str, ...] | None = None, fps: float | None = None,
              variable_frame_rate: bool = False, variety: str = "plain") -> Clip:  # fmt: skip
    """One clip from ``seed`` (same seed, same clip). ``kinds``: event kinds to draw from (default all
    of the variety's).

    The scene is laid out and drawn at the recipe's flow size (340x256) and its frame rate (21.5 fps);
    ``width``/``height`` resize the frames, ``fps`` draws them at another rate (the wide variety draws
    one from :data:`WIDE_FPS` when none is given), and ``variable_frame_rate`` at jittered times 0.5 to
    1.5 frame periods apart (as phones record). ``variety``: one of :data:`VARIETIES`.
    """
    if variety not in VARIETIES:
        raise ValueError(f"unknown variety {variety!r}; known: {VARIETIES}")
    rng = np.random.default_rng([seed, 7919])
    look_rng = np.random.default_rng([seed, 7919, 2]) if variety == "wide" else None  # the wide draws' own stream
    out_size = (width or recipe.flow_width, height or recipe.flow_height)
    width, height = recipe.flow_width, recipe.flow_height
    if fps is None and look_rng is not None:
        fps = float(look_rng.choice(WIDE_FPS))
    fps, sr = fps or recipe.fps, recipe.sample_rate
    floor = height * rng.uniform(0.78, 0.88)
    background = _background(rng, width, height, floor)
    if look_rng is not None:
        background = _wide_background(look_rng, background, floor)
    pool = kinds or (EVENT_KINDS + WIDE_KINDS if look_rng is not None else EVENT_KINDS)
    chosen = [str(k) for k in rng.choice(pool, size=int(rng.integers(1, 3)), replace=len(pool) < 2)]
    track = np.zeros(round(duration_s * sr))
    events: list[float] = []
    balls, sticks, boxes, pairs = [], [], [], []
    for kind in chosen:
        if kind == "bounce":
            ball, ev = _make_ball(rng, duration_s, width, height, floor)
            _ball_sound(rng, sr, ball, ev, track)
            balls.append(ball)
        elif kind == "strike":
            stick, ev = _make_stick(rng, duration_s, width, floor)
            base = rng.uniform(700, 2500)
            for t, _ in ev:
                _add(track, _impact(rng, sr, base, rng.uniform(0.7, 1.0), bright=True), round(t * sr))
            sticks.append(stick)
        elif kind == "slide":
            box, ev = _make_box(rng, duration_s, width, floor)
            times = np.arange(track.size) / sr
            speed = np.array([_box_state(box, t)[1] for t in times[::64]])
            speed = np.interp(times, times[::64], speed)
            vmax = max(1e-9, max(abs(p[3]) for p in box.pushes)) if box.pushes else 1.0
            track += FRICTION_GAIN * _friction(rng, sr, np.clip(speed / vmax, 0, 1), rng.uniform(250, 900))
            for t, _ in ev:
                _add(track, SHOVE_GAIN * _shove(rng, sr), round(t * sr))
            boxes.append(box)
        elif kind == "collide":
            pair, ev = _make_pair(rng, duration_s, width, floor)
            base = 2600.0 * 20.0 / sum(pair.radii)
            for t, strength in ev:
                _add(track, _impact(rng, sr, base, 0.5 + 0.5 * strength, bright=any(pair.squares)), round(t * sr))
            pairs.append(pair)
        else:
            raise ValueError(f"unknown event kind {kind!r}; known: {EVENT_KINDS + WIDE_KINDS}")
        events += [t for t, _ in ev]
    onsets = ground_truth_onsets(events, duration_s)
    peak = np.abs(track).max()
    audio = ((0.8 * track / peak if peak > 0 else track) + _room_tone(rng, track.size)).astype(np.float32)
    times = _frame_times(seed, duration_s, fps, variable_frame_rate)
    look = _make_look(look_rng, len(times), seed) if look_rng is not None else None
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    s = 1 << shift

    def px(x: float, y: float) -> tuple[int, int]:
        return round(x * s), round(y * s)

    def scene(t: float) -> np.ndarray:
        frame = background.copy()
        for box in boxes:
            x, _ = _box_state(box, t)
            w, h = box.size
            p1, p2 = px(x - w / 2, box.floor - h), px(x + w / 2, box.floor)
            cv2.rectangle(frame, p1, p2, box.colour, -1, cv2.LINE_AA, shift)
            cv2.rectangle(frame, p1, p2, (20, 20, 20), 2, cv2.LINE_AA, shift)
        for stick in sticks:
            bx, by = stick.end(stick.rest_angle)
            cv2.rectangle(frame, px(bx - 18, by + 4), px(bx + 18, floor), (70, 70, 70), -1, cv2.LINE_AA, shift)
            ex, ey = stick.end(_stick_angle(stick, t))
            pivot = px(*stick.pivot)
            cv2.line(frame, pivot, px(ex, ey), stick.colour, 7, cv2.LINE_AA, shift)
            cv2.circle(frame, pivot, 5 * s, (30, 30, 30), -1, cv2.LINE_AA, shift)
        for pair in pairs:
            for x, r, square, colour in zip(pair.positions(t), pair.radii, pair.squares, pair.colours, strict=True):
                if square:
                    cv2.rectangle(frame, px(x - r, pair.floor - 2 * r), px(x + r, pair.floor), colour, -1,
                                  cv2.LINE_AA, shift)  # fmt: skip
                else:
                    cv2.circle(frame, px(x, pair.floor - r), round(r * s), colour, -1, cv2.LINE_AA, shift)
        for ball in balls:
            x, y = ball.position(t, width)
            if look is not None and look.ball_sides:
                corners = _polygon((x, y), ball.radius, look.ball_sides, look.spin * t) * s
                cv2.fillPoly(frame, [np.round(corners).astype(np.int32)], ball.colour, cv2.LINE_AA, shift)
                continue
            cv2.circle(frame, px(x, y), round(ball.radius * s), ball.colour, -1, cv2.LINE_AA, shift)
            highlight = px(x - ball.radius / 3, y - ball.radius / 3)
            cv2.circle(frame, highlight, round(ball.radius / 4 * s), (255, 255, 255), -1, cv2.LINE_AA, shift)
        return frame

    frames = np.empty((len(times), out_size[1], out_size[0], 3), np.uint8)
    for i, t in enumerate(times):
        frame = look.film(scene, t, i) if look is not None else scene(t)
        frames[i] = frame if out_size == (width, height) else cv2.resize(frame, out_size, interpolation=cv2.INTER_AREA)
    return Clip(frames=frames, audio=audio, onsets=onsets, fps=fps, sample_rate=sr, seed=seed, kinds=chosen,
                times=times if variable_frame_rate else None, variable_frame_rate=variable_frame_rate)  # fmt: skip


def _frame_times(seed: int, duration_s: float, fps: float, variable: bool) -> np.ndarray:
    if not variable:
        return np.arange(max(1, round(duration_s * fps))) / fps
    rng = np.random.default_rng([seed, 104729])  # its own stream: the scene is the same either way
    times = [0.0]
    while (t := times[-1] + (0.5 + rng.random()) / fps) < duration_s:
        times.append(t)
    return np.array(times)


def encode_clip(
    clip: Clip,
    path: str | Path | None = None,
    *,
    container: str = "mp4",
    codec: str | None = None,
    rotation: int = 0,
    with_audio: bool = False,
) -> bytes:
    """The clip as a video file (silent unless ``with_audio``); returns the bytes, writes ``path`` if given.

    ``container``: a key of :data:`CONTAINERS`; ``codec`` replaces its default video codec; ``rotation``
    (degrees) is stored as display rotation metadata. H.264 is encoded at crf 18, the same
    frames always to the same bytes (:data:`s2s.video.X264_OPTIONS`).
    """
    import av

    fmt, default_codec, pix_fmt = CONTAINERS[container]
    codec = codec or default_codec
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as out:
        rate = Fraction(clip.fps).limit_denominator(1000)
        stream = out.add_stream(codec, rate=rate, options=video_encoder_options(codec, crf=18))
        stream.height, stream.width = clip.frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        time_base = Fraction(1, 1000) if clip.variable_frame_rate else 1 / rate
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if with_audio:
            audio_stream = out.add_stream("libopus" if container == "webm" else "aac",
                                          rate=48000 if container == "webm" else clip.sample_rate)  # fmt: skip
            audio_stream.layout = "mono"
        for image, t in zip(clip.frames, clip.frame_times(), strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio_stream is not None:
            audio = clip.audio
            if audio_stream.rate != clip.sample_rate:
                import soxr

                audio = soxr.resample(audio, clip.sample_rate, audio_stream.rate)
            encode_mono_audio(out, audio_stream, audio)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def make_video(
    path: str | Path | None = None,
    *,
    duration_s: float = 3.0,
    fps: float = 25.0,
    width: int = 320,
    height: int = 240,
    container: str = "mp4",
    codec: str | None = None,
    rotation: int = 0,
    variable_frame_rate: bool = False,
    audio: bool = False,
    seed: int = 0,
    kinds: tuple[str, ...] | None = None,
) -> bytes:
    """A generated clip encoded as a video file (:func:`make_clip` + :func:`encode_clip`); returns its bytes."""
    clip = make_clip(seed, duration_s, width, height, kinds=kinds, fps=fps, variable_frame_rate=variable_frame_rate)
    return encode_clip(clip, path, container=container, codec=codec, rotation=rotation, with_audio=audio)


def make_audio_only(duration_s: float = 2.0, container: str = "mp4") -> bytes:
    """A file with an AAC audio stream and no video (what a user might upload by mistake)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=CONTAINERS[container][0]) as out:
        stream = out.add_stream("aac", rate=REGNET.sample_rate)
        stream.layout = "mono"
        t = np.arange(int(duration_s * REGNET.sample_rate)) / REGNET.sample_rate
        encode_mono_audio(out, stream, 0.2 * np.sin(2 * np.pi * 440.0 * t))
    return buffer.getvalue()


def make_zero_frame_video() -> bytes:
    """An AVI file whose video stream holds no frame at all."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        out.start_encoding()
    return buffer.getvalue()


#: still-image formats a user uploads, by file suffix (OpenCV encodes them)
STILL_FORMATS = (".png", ".jpg", ".webp", ".bmp", ".tiff")


def make_still(suffix: str = ".png", *, width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """A still picture (a ball above a floor on a gradient background) encoded as ``suffix``."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    image[..., 1] = rng.integers(60, 180)
    cv2.rectangle(image, (0, int(height * 0.8)), (width, height), (90, 70, 50), -1)
    centre = (int(rng.integers(width // 4, 3 * width // 4)), int(height * 0.4))
    cv2.circle(image, centre, max(4, height // 10), (30, 30, 220), -1)
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {suffix!r}")
    return encoded.tobytes()
