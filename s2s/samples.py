"""Synthetic videos made by the project: the demo's sample clip and the tests' inputs.

A ball bounces across a textured background while a bar sweeps round, so there is visible motion for
the optical flow. Any container/codec PyAV can write is available (mp4/H.264, webm/VP9, avi/MJPEG,
mov/MPEG-4), with an optional display rotation (as phones write), irregular timestamps (variable
frame rate) and an optional audio track (to check that existing audio is replaced).
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from s2s.video import encode_mono_audio

#: container -> (format name for PyAV, default video codec, pixel format)
CONTAINERS: dict[str, tuple[str, str, str]] = {
    "mp4": ("mp4", "libx264", "yuv420p"),
    "webm": ("webm", "libvpx-vp9", "yuv420p"),
    "avi": ("avi", "mjpeg", "yuvj420p"),
    "mov": ("mov", "mpeg4", "yuv420p"),
    "mkv": ("matroska", "libx264", "yuv420p"),
}


def render_frame(t: float, width: int, height: int, seed: int = 0) -> np.ndarray:
    """One BGR frame at time ``t`` seconds."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 120, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    for c in range(3):  # a static texture: gradients plus a checker, so flow has something to track
        image[..., c] = (base[c] + 60 * (xx / width) + 40 * (yy / height) + 25 * (((xx // 16) + (yy // 16)) % 2)) % 256
    radius = max(4, min(width, height) // 10)
    period = 1.2 + rng.random()
    phase = abs(math.sin(math.pi * t / period))  # bounce: |sin| makes a sharp contact at the floor
    cx = int((0.1 + 0.8 * ((t * 0.37 + rng.random()) % 1.0)) * width)
    cy = int(height - radius - phase * (height - 2 * radius - 2))
    color = tuple(int(v) for v in rng.integers(150, 256, size=3))
    cv2.circle(image, (cx, cy), radius, color, -1, lineType=cv2.LINE_AA)
    angle = 2 * math.pi * t / 3.0
    center = (width // 4, height // 3)
    tip = (int(center[0] + radius * 2 * math.cos(angle)), int(center[1] + radius * 2 * math.sin(angle)))
    cv2.line(image, center, tip, (255, 255, 255), max(2, radius // 4), lineType=cv2.LINE_AA)
    return image


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
) -> bytes:
    """Encode a synthetic clip; returns the file's bytes (and writes them to ``path`` if given)."""
    import av

    fmt, default_codec, pix_fmt = CONTAINERS[container]
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed + 1)
    with av.open(buffer, mode="w", format=fmt) as out:
        rate = Fraction(fps).limit_denominator(1000)
        stream = out.add_stream(codec or default_codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        time_base = Fraction(1, 1000) if variable_frame_rate else 1 / rate
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio:
            audio_stream = out.add_stream("libopus" if container == "webm" else "aac", rate=48000)
            audio_stream.layout = "mono"
        n = max(1, round(duration_s * fps))
        t = 0.0
        for i in range(n):
            if variable_frame_rate:  # jittered frame times, 0.5 to 1.5 frame periods apart
                t = i / fps if i == 0 else t + (0.5 + rng.random()) / fps
                if t >= duration_s:
                    break
            else:
                t = i / fps
            frame = av.VideoFrame.from_ndarray(render_frame(t, width, height, seed), format="bgr24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio_stream is not None:
            _write_tone(out, audio_stream, duration_s)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _write_tone(out, stream, duration_s: float, frequency: float = 440.0) -> None:
    rate = stream.rate
    encode_mono_audio(out, stream, 0.2 * np.sin(2 * np.pi * frequency * np.arange(int(duration_s * rate)) / rate))


def make_audio_only(duration_s: float = 2.0, container: str = "mp4") -> bytes:
    """A file with an AAC audio stream and no video (what a user might upload by mistake)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=CONTAINERS[container][0]) as out:
        stream = out.add_stream("aac", rate=22050)
        stream.layout = "mono"
        _write_tone(out, stream, duration_s)
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
