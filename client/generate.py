"""`s2s generate IN -o OUT.mp4`: a video file through the served ensemble, the sound muxed back in."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from s2s.client.mux import MuxResult, mux_audio, output_format, write_wav
from s2s.client.triton import ClientError, Generated, S2SClient
from s2s.constants import REGNET
from s2s.video import declared_duration


@dataclass
class GenerateResult:
    generated: Generated
    muxed: MuxResult | None
    wav: Path | None


def probe_duration(video: bytes) -> float | None:
    """Duration of the first video stream according to the container, or None."""
    import io

    import av

    try:
        with av.open(io.BytesIO(video)) as container:
            return declared_duration(container, container.streams.video[0])
    except (av.error.FFmpegError, IndexError):
        return None  # the server will say what is wrong with it


def generate_file(
    source: Path,
    output: Path | None,
    *,
    wav: Path | None = None,
    url: str | None = None,
    protocol: str = "grpc",
    timeout_s: float = 900.0,
    show_progress: bool = True,
    chunk_windows: int = 0,
    duration_s: float | None = None,
) -> GenerateResult:
    """Send ``source`` (a video or a still image) to Triton, write ``output`` (video with sound) and/or ``wav``.

    ``chunk_windows`` > 0 sends that many windows per request and reports progress per window;
    0 sends the whole video at once (fastest) with an elapsed-time line. ``duration_s``: seconds of sound
    for a still image (the server refuses it for a video).
    """
    if output is not None:
        output_format(output)  # an output we cannot write is refused before any inference
    video = Path(source).read_bytes()
    duration = probe_duration(video) or duration_s
    windows = None

    interactive = sys.stderr.isatty()

    def progress(elapsed: float) -> None:
        what = f"{duration:.1f} s of video, {windows} window(s)" if duration else "video"
        if interactive:  # one line, rewritten every second
            sys.stderr.write(f"\r  generating sound for {what}: {elapsed:5.0f} s elapsed")
        elif round(elapsed) % 10 == 0:  # logs: a line every 10 s
            sys.stderr.write(f"  generating sound for {what}: {elapsed:5.0f} s elapsed\n")
        sys.stderr.flush()

    with S2SClient(url, protocol, timeout_s=timeout_s) as client:
        if not client.ready():
            raise ClientError(f"Triton at {client.url} ({protocol}) is not ready or has no model 's2s'")
        if duration:
            from s2s.windowing import window_count

            served = client.preprocess_options()
            frames = max(1, math.ceil(duration * REGNET.fps - 1e-6))
            windows = window_count(frames, served.window_frames, served.overlap_frames)
        if chunk_windows > 0:

            def on_window(done: int, total: int) -> None:
                if show_progress:
                    sys.stderr.write(f"  window {done}/{total} done\n")
                    sys.stderr.flush()

            generated = client.generate_by_windows(video, chunk_windows, on_window, duration_s=duration_s)
        else:
            generated = client.generate(video, progress if show_progress else None, duration_s=duration_s)
    if show_progress:
        prefix = "\r" if interactive else ""
        sys.stderr.write(f"{prefix}  generated {generated.duration_s:.2f} s of sound in {generated.seconds:.1f} s\n")
    muxed = mux_audio(video, generated.waveform, output) if output is not None else None
    wav_path = write_wav(wav, generated.waveform) if wav is not None else None
    return GenerateResult(generated, muxed, wav_path)
