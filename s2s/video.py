"""Decode an encoded video in memory and resample it to the recipe's frame rate.

PyAV decodes from a byte buffer (no temporary files, no ffmpeg process); any container/codec FFmpeg
reads works (mp4/H.264, webm/VP9, avi/MJPEG, mov, ...). Frames are resampled to 21.5 fps by their
timestamps, so variable-frame-rate phone videos come out evenly spaced; the display rotation of
phone videos is applied. Each kept picture is scaled by swscale straight to the flow size
(340 x 256, BGR), the size RegNet computes optical flow and TSN inputs from.

Each frame also names the picture its optical flow goes to, the stream's picture nearest one 1/21.5 s after
its own, and the factor that brings that flow to one 1/21.5 s (:class:`Track`): the motion per frame is then
the same at 15, 21.5, 30 or 60 fps, where the flow between consecutive 21.5 fps frames would be still wherever
a picture is shown twice and jump wherever one is skipped.

A still image (PNG, JPEG, WebP, BMP, TIFF: anything FFmpeg reads with a single-picture demuxer) becomes
``still_duration_s`` seconds of that picture (:data:`STILL_DURATION_S`, or the duration limit if lower, unless
the request says), marked
``still`` so that preprocess gives it zero motion instead of computing flow between identical frames.

Inputs that cannot be used raise :class:`VideoError` with a message meant for the user.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Track:
    """Frames at the recipe's rate and, for each, the two pictures its optical flow is measured between.

    A frame shows the stream's latest picture at its time; its flow goes from that picture to the stream's
    picture nearest one recipe period later (at least the next one), scaled to one recipe period
    (``scale``). So the flow is the motion per 1 / 21.5 s whatever the stream's rate: a 15 fps video has
    no still frames where a picture is shown twice, a 30 or 60 fps video no speed that jumps where a
    picture is skipped (either would beat at the difference of the rates, as spurious events). A stream at
    the recipe's rate gives each frame the flow to the next frame, unscaled. A frame at the stream's end,
    with no later picture, keeps the flow of the frame before it.
    """

    pictures: np.ndarray  #: uint8 (M, H, W, 3) BGR: the stream's pictures the frames show or flow to
    shown: np.ndarray  #: int32 (N,): the picture each frame shows
    #: int32 (N,): the picture each frame's flow starts at (``shown``'s; at the stream's end an earlier frame's)
    flow_from: np.ndarray
    flow_to: np.ndarray  #: int32 (N,): the picture it goes to (``flow_from``: no motion, a video of one picture)
    scale: np.ndarray  #: float32 (N,): recipe period / seconds between the two pictures (1 where they are the same)

    @classmethod
    def even(cls, frames: np.ndarray) -> Track:
        """Frames already at the recipe's rate (a generated clip): each frame's flow goes to the next, the last
        frame keeps the one before it."""
        n = len(frames)
        shown = np.arange(n, dtype=np.int32)
        to = np.minimum(shown + 1, n - 1)
        start = np.minimum(shown, max(n - 2, 0))
        return cls(frames, shown, start.astype(np.int32), to.astype(np.int32), np.ones(n, np.float32))

    @property
    def frames(self) -> np.ndarray:
        """uint8 (N, H, W, 3): the picture each frame shows."""
        return self.pictures[self.shown]

    def __len__(self) -> int:
        return int(self.shown.size)

    def take(self, start: int, end: int) -> Track:
        """Frames ``start`` to ``end`` (exclusive) with only the pictures they use: the same flow per frame."""
        parts = (self.shown[start:end], self.flow_from[start:end], self.flow_to[start:end])
        used, inverse = np.unique(np.concatenate(parts), return_inverse=True)
        shown, start_of, to = np.split(inverse.astype(np.int32), 3)
        return Track(self.pictures[used], shown, start_of, to, self.scale[start:end])

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (from, to) picture pairs, int (P, 2) with from != to, and each frame's row in them (-1:
        no motion)."""
        both = np.stack([self.flow_from, self.flow_to], axis=1)
        moving = both[:, 0] != both[:, 1]
        pairs, inverse = np.unique(both[moving], axis=0, return_inverse=True)
        rows = np.full(len(self), -1, dtype=np.int64)
        rows[moving] = inverse.reshape(-1)
        return pairs.reshape(-1, 2), rows


@dataclass
class DecodedVideo:
    track: Track  #: the frames at the recipe's fps and the pictures their flow is measured between
    duration_s: float  #: duration of the video stream
    rotation: int  #: display rotation applied, degrees
    #: frames of the whole video at the recipe's fps (``track`` may hold fewer: see ``max_frames``)
    total_frames: int = 0
    #: a still image: ``track`` holds its one picture, shown for ``duration_s`` (``total_frames`` frames)
    still: bool = False

    @property
    def frames(self) -> np.ndarray:
        """uint8 (N, flow_height, flow_width, 3), BGR, at the recipe's fps."""
        return self.track.frames

    @property
    def num_frames(self) -> int:
        return len(self.track)


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
        stream_pictures, last_time, rotation = _resample(container, stream, limits, recipe, rate, stop)
    if not stream_pictures.shown:
        raise VideoError("the video stream has no decodable frames")
    frame_period = 1.0 / rate if rate else 1.0 / recipe.fps
    duration = declared if declared is not None else last_time + frame_period
    duration = max(duration, last_time + 1e-6)
    expected = max(1, math.ceil(duration * recipe.fps - 1e-6))
    keep = expected if max_frames is None else min(expected, max_frames)
    return DecodedVideo(stream_pictures.track(keep, recipe), duration, rotation, expected)


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
    track = Track(picture[None], *np.zeros((3, 1), dtype=np.int32), np.ones(1, dtype=np.float32))
    return DecodedVideo(track, duration, round(frame.rotation or 0) % 360, total, still=True)


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


#: a flow partner this close to one recipe period away (relative) counts as exactly one: timestamps rounded to the
#: stream's time base (a millisecond in WebM: 46 or 47 ms at 21.5 fps) are not another rate
SAME_PERIOD = 0.05


@dataclass
class _Pictures:
    """What :func:`_resample` keeps: the stream's pictures that frames show or flow to, the picture each frame
    shows, and each shown picture's flow partner (a picture; ``times`` gives the seconds between them)."""

    images: list = field(default_factory=list)
    times: list = field(default_factory=list)
    shown: list = field(default_factory=list)
    partner: dict = field(default_factory=dict)

    def track(self, frames: int, recipe: Recipe) -> Track:
        """:class:`Track` of ``frames`` frames: the last shown picture holds until the end; a frame whose picture
        has no partner (the stream's end) keeps the flow of the frame before it."""
        shown = np.array((self.shown + self.shown[-1:] * frames)[:frames], dtype=np.int32)
        start, to, scale = shown.copy(), shown.copy(), np.ones(frames, dtype=np.float32)
        for i, picture in enumerate(shown):
            if picture in self.partner:
                to[i] = self.partner[picture]
                scale[i] = (1.0 / recipe.fps) / (self.times[to[i]] - self.times[picture])
                if abs(scale[i] - 1) < SAME_PERIOD:  # the time base's rounding, not another rate
                    scale[i] = 1.0
            elif i:
                start[i], to[i], scale[i] = start[i - 1], to[i - 1], scale[i - 1]
        return Track(np.stack(self.images), shown, start, to, scale)


def _resample(container, stream, limits: VideoLimits, recipe: Recipe, rate: float | None, stop: int | None = None):
    """Keep, for each target time k / fps, the latest picture shown at or before it, and for each picture kept
    that way its flow partner: the later picture nearest one target period after it (at least the next one,
    or the stream's last). Each picture is converted once; ``stop``: stop after that many targets (and the
    partners they wait for)."""
    import av

    fps = recipe.fps
    kept = _Pictures()
    number_of: dict[int, int] = {}  # the stream's frame number -> its picture in ``kept``
    waiting: list[tuple[int, float, int]] = []  # shown frames' numbers, times and first targets, not yet partnered
    previous = None  # (number, time, frame): the last decoded frame
    start, last_time, rotation, index = None, 0.0, 0, 0

    def keep(number: int, t: float, frame) -> int:
        if number not in number_of:
            number_of[number] = len(kept.images)
            kept.images.append(_to_bgr(frame, round(frame.rotation or 0) % 360, recipe))
            kept.times.append(t)
        return number_of[number]

    def show(number: int, t: float, frame) -> None:
        picture = keep(number, t, frame)
        if not kept.shown or kept.shown[-1] != picture:
            waiting.append((number, t, len(kept.shown)))
        kept.shown.append(picture)

    def partner(number: int, later: tuple) -> None:  # ``later``: (number, time, frame) of the one chosen
        kept.partner[number_of[number]] = keep(*later)

    try:
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else index / (rate or fps)
            number, index = index, index + 1
            start = t if start is None else start
            t -= start
            if t > limits.max_duration_s + 1e-3:
                raise VideoError(f"video too long: frames beyond {limits.max_duration_s:g} s (limit)")
            _check_size(frame.width, frame.height, limits)
            rotation = round(frame.rotation or 0) % 360
            while previous is not None and len(kept.shown) / fps < t - 1e-9:
                show(*previous)
            if previous is None:
                while len(kept.shown) / fps < t - 1e-9:  # stream starts late: show its first frame
                    show(number, t, frame)
            still_waiting = []
            for shown_number, shown_time, first in waiting:
                target = shown_time + 1.0 / fps
                if t < target - 1e-9:
                    still_waiting.append((shown_number, shown_time, first))
                elif previous[1] > shown_time + 1e-6 and target - previous[1] <= t - target:
                    partner(shown_number, previous)
                else:
                    partner(shown_number, (number, t, frame))
            waiting = still_waiting
            previous, last_time = (number, t, frame), t
            if stop is not None and len(kept.shown) >= stop and all(first >= stop for *_, first in waiting):
                break
    except av.error.FFmpegError as exc:
        raise VideoError(f"corrupt video data after {len(kept.shown)} frames: {_reason(exc)}") from None
    if previous is not None:
        for shown_number, shown_time, _ in waiting:  # the stream ended first: its last picture, if later
            if previous[1] > shown_time + 1e-6:
                partner(shown_number, previous)
        show(*previous)  # the next target; nothing after it: the stream's last picture has no partner
    return kept, last_time, rotation


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
