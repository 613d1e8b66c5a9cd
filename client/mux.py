"""Put a generated waveform into a copy of the video with PyAV.

The video stream is copied packet by packet (not re-encoded); existing audio streams are dropped and
replaced by one AAC stream of the waveform. Where the output container cannot hold the input's video
codec as it is (e.g. MJPEG, GIF or FLV1 into mp4), the video is re-encoded to H.264 instead, with
timestamps from the decoded frames' own times (variable frame rates kept) and even dimensions, and the
result says so. A still image becomes an H.264 (VP9 for webm) video of that picture lasting as long as the
sound, a frame a second. A video that cannot be written either way is a :class:`MuxError`.
"""

from __future__ import annotations

import io
import logging
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from s2s.constants import REGNET
from s2s.errors import OptionError, S2SError
from s2s.video import encode_mono_audio, is_still, video_encoder_options

log = logging.getLogger(__name__)

#: output container by file suffix
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
#: time base of re-encoded video: milliseconds, so any frame timing survives
_REENCODE_TIME_BASE = Fraction(1, 1000)


class MuxError(S2SError):
    """The video could not be written back with its sound, neither copied nor re-encoded."""


def output_format(output: str | Path) -> str:
    """The container for ``output``'s suffix; :class:`OptionError` for a suffix we cannot write (checked
    before any inference)."""
    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise OptionError(f"unsupported output type {Path(output).suffix!r}; use one of {sorted(FORMATS)}")
    return fmt


@dataclass
class MuxResult:
    path: Path
    video_copied: bool  #: False where the video had to be re-encoded


def pcm16(waveform: np.ndarray) -> np.ndarray:
    """A float waveform in [-1, 1] as the 16-bit samples a WAV holds (little-endian int16)."""
    return (np.clip(waveform, -1.0, 1.0) * 32767.0).round().astype("<i2")


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int = REGNET.sample_rate) -> Path:
    """16-bit PCM mono WAV."""
    path = Path(path)
    pcm = pcm16(waveform)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())
    return path


def mux_audio(
    video: bytes, waveform: np.ndarray, output: str | Path, sample_rate: int = REGNET.sample_rate
) -> MuxResult:
    """Write ``output``: the video of ``video`` (bytes of the input file) with ``waveform`` as its only audio."""
    output = Path(output)
    fmt = output_format(output)
    audio_codec = "libopus" if fmt == "webm" else "aac"
    still = _holds_still(video)
    if not still:
        try:
            _mux(video, waveform, output, fmt, audio_codec, sample_rate, copy_video=True)
            return MuxResult(output, True)
        except Exception as exc:  # FFmpeg refuses this codec in this container: re-encode the video
            log.info("cannot copy the video stream into %s (%s); re-encoding it", fmt, exc)
            output.unlink(missing_ok=True)
    try:
        _mux(video, waveform, output, fmt, audio_codec, sample_rate, copy_video=False, still=still)
    except Exception as exc:
        output.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # FFmpeg's words, without file paths
        raise MuxError(f"cannot write this video with its sound as {fmt} ({reason})") from None
    return MuxResult(output, False)


def _holds_still(data: bytes) -> bool:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            return is_still(container)
    except av.error.FFmpegError:
        return False  # whatever it is, the mux says what is wrong with it


def _mux(
    video: bytes,
    waveform: np.ndarray,
    output: Path,
    fmt: str,
    audio_codec: str,
    sample_rate: int,
    copy_video: bool,
    still: bool = False,
) -> None:
    import av

    with av.open(io.BytesIO(video), mode="r") as src, av.open(str(output), mode="w", format=fmt) as dst:
        in_video = src.streams.video[0]
        if copy_video:
            out_video = dst.add_stream_from_template(in_video)
        else:
            codec = "libvpx-vp9" if fmt == "webm" else "libx264"
            out_video = dst.add_stream(codec, rate=in_video.average_rate or 25, options=video_encoder_options(codec))
            width, height = (max(2, d - d % 2) for d in (in_video.codec_context.width, in_video.codec_context.height))
            out_video.width, out_video.height, out_video.pix_fmt = width, height, "yuv420p"
            out_video.codec_context.time_base = _REENCODE_TIME_BASE
        rate = 48000 if audio_codec == "libopus" else sample_rate
        out_audio = dst.add_stream(audio_codec, rate=rate)
        out_audio.layout = "mono"
        if copy_video:
            for packet in src.demux(in_video):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = out_video
                dst.mux(packet)
        elif still:  # the picture, a frame a second until the sound ends
            picture = next(iter(src.decode(in_video))).reformat(width=width, height=height, format="yuv420p")
            end = round(waveform.size / sample_rate / _REENCODE_TIME_BASE)
            for pts in [*range(0, end, round(1 / _REENCODE_TIME_BASE)), end]:
                picture.pts, picture.time_base = pts, _REENCODE_TIME_BASE
                for packet in out_video.encode(picture):
                    dst.mux(packet)
            for packet in out_video.encode():
                dst.mux(packet)
        else:
            fps, last = float(in_video.average_rate or 25), -1
            for index, frame in enumerate(src.decode(in_video)):
                # the frame's own time (GIF delays, FLV timestamps), strictly increasing in milliseconds
                seconds = frame.time if frame.time is not None else index / fps
                last = max(round(seconds / _REENCODE_TIME_BASE), last + 1)
                picture = frame.reformat(width=width, height=height, format="yuv420p")
                picture.pts, picture.time_base = last, _REENCODE_TIME_BASE
                for packet in out_video.encode(picture):
                    dst.mux(packet)
            for packet in out_video.encode():
                dst.mux(packet)
        _encode_audio(dst, out_audio, waveform, sample_rate, rate)


def _encode_audio(dst, stream, waveform: np.ndarray, source_rate: int, rate: int) -> None:
    samples = np.clip(waveform, -1.0, 1.0).astype(np.float32)
    if rate != source_rate:
        import soxr

        samples = soxr.resample(samples, source_rate, rate)
    encode_mono_audio(dst, stream, samples)
