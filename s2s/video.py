"""Decode an encoded video in memory and resample it to the recipe's frame rate.

PyAV decodes from a byte buffer (no temporary files, no ffmpeg process); any container/codec FFmpeg
reads works (mp4/H.264, webm/VP9, avi/MJPEG, mov, ...). Frames are resampled to 21.5 fps by their
timestamps, so variable-frame-rate phone videos come out evenly spaced; the display rotation of
phone videos is applied. Each kept frame is scaled by swscale straight to the flow size
(340 x 256, BGR), the size RegNet computes optical flow and TSN inputs from.

A still image (PNG, JPEG, WebP, BMP, TIFF: anything FFmpeg reads with a single-picture demuxer) becomes
``still_duration_s`` seconds of that picture (:data:`STILL_DURATION_S`, or the duration limit if lower, unless
the request says), marked
``still`` so that preprocess gives it zero motion instead of computing flow between identical frames.

Inputs that cannot be used raise :class:`VideoError` with a message meant for the user.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from s2s.constants import REGNET, Recipe
from s2s.errors import S2SError
from s2s.flags import flag


class VideoError(S2SError, ValueError):
    """The input is not a usable video: the message says why (and with which value)."""


#: seconds of sound for a still image when the request names none: one RegNet window (a still costs a
#: whole window of the networks whatever its duration, as the last window of a video loops its frames)
STILL_DURATION_S = REGNET.window_s

#: options of every H.264 encode (libx264): without ``cpu-independent`` its SIMD macroblock tree reads
#: memory it never wrote at some widths (400 px: 25 macroblocks), so the same frames gave other bytes from
#: one encode to the next; with it the same frames give the same bytes on any CPU
X264_OPTIONS = {"x264-params": "cpu-independent=1"}


def video_encoder_options(codec: str, *, crf: int | None = None) -> dict[str, str]:
    """The options of a video encoder: for libx264 :data:`X264_OPTIONS` and ``crf`` if given, else none."""
    if codec != "libx264":
        return {}
    return {**X264_OPTIONS, **({"crf": str(crf)} if crf is not None else {})}


@dataclass(frozen=True)
class VideoLimits:
    """What the service accepts; anything outside gets a :class:`VideoError`."""

    max_bytes: int = flag(256 * 1024 * 1024, "--max-bytes", "largest video file accepted, bytes")
    max_duration_s: float = flag(60.0, "--max-duration", "longest video accepted, seconds")
    max_width: int = flag(3840, "--max-width", "widest frame")
    max_height: int = flag(3840, "--max-height", "tallest frame")
    max_pixels: int = flag(
        3840 * 2160, "--max-pixels", "most pixels per frame, width x height", shown="8294400 = 4K UHD"
    )


@dataclass
class DecodedVideo:
    frames: np.ndarray  #: uint8 (N, flow_height, flow_width, 3), BGR, at the recipe's fps
    duration_s: float  #: duration of the video stream
    rotation: int  #: display rotation applied, degrees
    #: frames of the whole video at the recipe's fps (``frames`` may hold fewer: see ``max_frames``)
    total_frames: int = 0
    #: a still image: ``frames`` holds its one picture, shown for ``duration_s`` (``total_frames`` frames)
    still: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def probe_bytes(data: bytes | memoryview | np.ndarray) -> bytes:
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    return bytes(data)


def decode_video(
    data: bytes | memoryview | np.ndarray,
    limits: VideoLimits = VideoLimits(),
    recipe: Recipe = REGNET,
    max_frames: int | None = None,
    still_duration_s: float | None = None,
) -> DecodedVideo:
    """Decode ``data`` (an encoded video file, or a still image) into frames at ``recipe.fps``.

    ``max_frames``: stop once that many frames are kept (where the container declares its duration,
    ``total_frames`` is still the whole video's count) - for work on the start of a video only.
    ``still_duration_s``: how long a still image lasts (default :data:`STILL_DURATION_S`); a video's
    duration is its own, so giving one for a video is an error.
    """

    data = probe_bytes(data)
    if not data:
        raise VideoError("empty input: the request carried no video bytes")
    if len(data) > limits.max_bytes:
        raise VideoError(f"input too large: {len(data)} bytes (limit {limits.max_bytes})")
    with _open(data, "a video file") as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoError(f"no video stream in the input (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if is_still(container):
            return _decode_still(container, stream, limits, recipe, still_duration_s)
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(width, height, limits)
        if still_duration_s is not None:
            raise VideoError("a duration applies to still images only: a video's sound lasts as long as the video")
        declared = declared_duration(container, stream)
        if declared is not None and declared > limits.max_duration_s + 1e-3:
            raise VideoError(f"video too long: {declared:.2f} s (limit {limits.max_duration_s:g} s)")
        rate = float(stream.average_rate) if stream.average_rate else None
        stop = max_frames if declared is not None else None
        frames, last_time, rotation = _resample(container, stream, limits, recipe, rate, stop)
    if not frames:
        raise VideoError("the video stream has no decodable frames")
    frame_period = 1.0 / rate if rate else 1.0 / recipe.fps
    duration = declared if declared is not None else last_time + frame_period
    duration = max(duration, last_time + 1e-6)
    expected = max(1, math.ceil(duration * recipe.fps - 1e-6))
    keep = expected if max_frames is None else min(expected, max_frames)
    while len(frames) < keep:  # the last frame holds until the end of the stream
        frames.append(frames[-1])
    return DecodedVideo(np.stack(frames[:keep]), duration, rotation, expected)


def _open(data: bytes, kind: str):
    """An open PyAV input container on ``data`` (VideoError, in FFmpeg's words, when it cannot be read)."""
    import av

    try:
        return av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot read the input as {kind}: {_reason(exc)}") from None


def is_still(container) -> bool:
    """Whether an open container holds one picture (FFmpeg's image demuxers: png_pipe, jpeg_pipe, ...)."""
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def _decode_still(container, stream, limits: VideoLimits, recipe: Recipe, duration_s: float | None) -> DecodedVideo:
    import av

    duration = min(STILL_DURATION_S, limits.max_duration_s) if duration_s is None else float(duration_s)
    if not 0 < duration <= limits.max_duration_s + 1e-9:
        raise VideoError(
            f"duration for a still image must be above 0 and at most {limits.max_duration_s:g} s, got {duration:g}"
        )
    try:
        frame = next(iter(container.decode(stream)), None)
    except av.error.FFmpegError as exc:
        raise VideoError(f"corrupt image data: {_reason(exc)}") from None
    if frame is None:
        raise VideoError("the image has no decodable picture")
    _check_size(frame.width, frame.height, limits)
    picture = _to_bgr(frame, round(frame.rotation or 0) % 360, recipe)
    total = max(1, math.ceil(duration * recipe.fps - 1e-6))
    return DecodedVideo(picture[None], duration, round(frame.rotation or 0) % 360, total, still=True)


def _reason(exc: Exception) -> str:
    """FFmpeg's own words for an error, without the errno and file-name decoration."""
    return getattr(exc, "strerror", None) or str(exc)


def _check_size(width: int, height: int, limits: VideoLimits) -> None:
    if width <= 0 or height <= 0:
        raise VideoError(f"the video stream has no frame size ({width}x{height})")
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise VideoError(
            f"resolution too large: {width}x{height} (limits {limits.max_width}x{limits.max_height}, "
            f"{limits.max_pixels} pixels)"
        )


def declared_duration(container, stream) -> float | None:
    """Duration of ``stream`` as the container declares it (seconds), or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _resample(container, stream, limits: VideoLimits, recipe: Recipe, rate: float | None, stop: int | None = None):
    """Keep, for each target time k / fps, the latest frame shown at or before it."""
    import av

    fps = recipe.fps
    start = None
    frames: list[np.ndarray] = []
    previous = None  # the last decoded frame, converted (once) only if a target time shows it
    previous_image: np.ndarray | None = None
    last_time, rotation, index = 0.0, 0, 0

    def shown(frame) -> np.ndarray:
        nonlocal previous_image
        if previous_image is None:
            previous_image = _to_bgr(frame, rotation, recipe)
        return previous_image

    try:
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else index / (rate or fps)
            index += 1
            start = t if start is None else start
            t -= start
            if t > limits.max_duration_s + 1e-3:
                raise VideoError(f"video too long: frames beyond {limits.max_duration_s:g} s (limit)")
            _check_size(frame.width, frame.height, limits)
            while previous is not None and len(frames) / fps < t - 1e-9:
                frames.append(shown(previous))
            rotation = round(frame.rotation or 0) % 360
            if previous is None:
                while len(frames) / fps < t - 1e-9:  # stream starts late: show its first frame
                    frames.append(shown(frame))
            else:
                previous_image = None  # this frame's, once a target time shows it
            previous, last_time = frame, t
            if stop is not None and len(frames) >= stop:
                break
    except av.error.FFmpegError as exc:
        raise VideoError(f"corrupt video data after {len(frames)} frames: {_reason(exc)}") from None
    if previous is not None:
        frames.append(shown(previous))
    return frames, last_time, rotation


def _to_bgr(frame, rotation: int, recipe: Recipe) -> np.ndarray:
    """Scale (swscale) to the flow size in BGR, applying the display rotation."""
    w, h = recipe.flow_width, recipe.flow_height
    if rotation in (90, 270):
        image = frame.reformat(width=h, height=w, format="bgr24").to_ndarray()
    else:
        image = frame.reformat(width=w, height=h, format="bgr24").to_ndarray()
    if rotation:
        # FFmpeg's display rotation is counter-clockwise; np.rot90 with k > 0 turns counter-clockwise.
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


def decode_audio(data: bytes | memoryview | np.ndarray, recipe: Recipe = REGNET) -> np.ndarray:
    """The first audio stream of an encoded file, mixed to mono and resampled to ``recipe.sample_rate``:
    float32 in [-1, 1], from the stream's first sample (VideoError: unreadable, or no audio stream)."""
    import av

    with _open(probe_bytes(data), "a media file") as container:
        if not container.streams.audio:
            raise VideoError("no audio track: nothing to learn the sound from")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=recipe.sample_rate)
        parts = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as exc:
            raise VideoError(f"the audio track cannot be decoded: {_reason(exc)}") from None
    if not parts:
        raise VideoError("the audio track has no decodable samples")
    return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)


def encode_mono_audio(container, stream, samples: np.ndarray, chunk: int = 1024) -> None:
    """Encode float samples in [-1, 1] (already at ``stream.rate``) into an open output container, flushed."""
    import av

    samples = np.ascontiguousarray(samples, dtype=np.float32)
    for start in range(0, samples.size, chunk):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + chunk], format="flt", layout="mono")
        frame.sample_rate = stream.rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
