"""``s2s generate`` (a video file through a running Triton) and ``s2s demo`` (the main job: a generated
sample through the embedded Triton, with its alignment score)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from s2s.client.triton import PROTOCOLS
from s2s.errors import OptionError
from s2s.repository import MANIFEST, add_repository_flag
from s2s.video import STILL_DURATION_S

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "generate",
        help="turn a silent video into a video with sound, through a running Triton",
        description="Send the video file (or a still image) to the `s2s` ensemble (gRPC by default), receive the "
        "waveform, and write a copy of the video with it as the only audio track (video stream copied, not "
        "re-encoded); a still image becomes a video of that picture with the sound.",
    )
    p.add_argument("input", type=Path, help="video file (mp4, webm, avi, mov, mkv, ...) or still image (png, jpg, ...)")
    p.add_argument(
        "--duration", type=float, metavar="SECONDS",
        help=f"seconds of sound for a still image (default: the server's, {STILL_DURATION_S:g}); not for videos",
    )  # fmt: skip
    p.add_argument("-o", "--output", type=Path, help="video with sound (.mp4, .mov, .mkv or .webm)")
    p.add_argument("--wav", type=Path, help="also write the waveform as a WAV file")
    p.add_argument("--url", help="Triton address (default: localhost:8001 for gRPC, localhost:8000 for HTTP)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc", help="(default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the result (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--windows-per-request", type=int, default=0, metavar="N",
        help="send N windows (10 s each) per request and show progress per window; 0: the whole video "
        "in one request (default)",
    )  # fmt: skip
    p.set_defaults(func=run_generate)

    d = commands.add_parser(
        "demo",
        help="the main job: a generated sample video through the embedded Triton, with sound",
        description="Generate a sample video with visible motion, start the embedded Triton on the exported "
        "model repository, send the video through the `s2s` ensemble over gRPC and write the video with sound.",
    )
    add_repository_flag(d, "exported model repository")
    d.add_argument("--output-dir", type=Path, default=Path("outputs"), help="(default: %(default)s)")
    d.add_argument("--duration", type=float, default=6.0, help="sample video length, seconds (default: %(default)s)")
    d.add_argument("--verbose", action="store_true", help="show the server log")
    d.set_defaults(func=run_demo)


def run_generate(args: argparse.Namespace) -> int:
    from s2s.client.generate import generate_file

    if args.output is None and args.wav is None:
        raise OptionError("nothing to write: give -o OUT.mp4 and/or --wav OUT.wav")
    if not args.input.is_file():
        raise OptionError(f"no such file: {args.input}")
    if args.duration is not None and not args.duration > 0:
        raise OptionError(f"--duration must be above 0 seconds, got {args.duration:g}")
    result = generate_file(
        args.input, args.output, wav=args.wav, url=args.url, protocol=args.protocol,
        timeout_s=args.timeout, show_progress=not args.quiet, chunk_windows=args.windows_per_request,
        duration_s=args.duration,
    )  # fmt: skip
    if result.muxed is not None:
        how = "video copied" if result.muxed.video_copied else "video re-encoded"
        print(f"video with sound: {result.muxed.path} ({how})")
    if result.wav is not None:
        print(f"waveform: {result.wav}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    import soundfile

    from s2s.alignment import envelope_correlation, onset_scores
    from s2s.client.generate import generate_file
    from s2s.runtime.ort_backend import cpu_path
    from s2s.runtime.server import ServerOptions, TritonServer
    from s2s.synth import DEMO_SEED, encode_clip, make_clip

    repo, out = args.model_repository, args.output_dir
    if not (repo / "s2s" / "config.pbtxt").is_file() or not (repo / MANIFEST).is_file():
        raise OptionError(f"{repo} is not an exported repository: run `s2s export --model-repository {repo}` first")
    out.mkdir(parents=True, exist_ok=True)
    sample = out / "sample.mp4"
    clip = make_clip(DEMO_SEED, args.duration, kinds=("bounce", "strike"))  # a held-out seed: never trained on
    encode_clip(clip, sample)
    soundfile.write(out / "sample_reference.wav", clip.audio, clip.sample_rate)
    print(f"sample video (silent, {args.duration:g} s, {len(clip.onsets)} impacts): {sample}")
    options = ServerOptions.local(repo, shm_default_byte_size=64 * 1024 * 1024, log_level="warning", exit_timeout_s=10)
    print(f"starting the embedded Triton on {repo} (models load and warm up) ...", flush=True)
    with TritonServer(options, echo=sys.stderr if args.verbose else None):
        print(f"Triton ready: gRPC {options.grpc_url}, HTTP {options.http_url}", flush=True)
        serving = json.loads((repo / MANIFEST).read_text()).get("serving", {})
        path = cpu_path(serving.get("cpu_accelerator"), serving.get("cpu_precision", "auto"))
        print(f"networks on this CPU: {path}", flush=True)
        result = generate_file(sample, out / "sample_with_sound.mp4", wav=out / "sample_with_sound.wav",
                               url=options.grpc_url)  # fmt: skip
    print(f"video with sound: {result.muxed.path}")
    print(f"waveform:         {result.wav}  (the clip's own sound: {out / 'sample_reference.wav'})")
    generated, rate = soundfile.read(result.wav, dtype="float32")
    scores = onset_scores(generated, rate, clip.onsets)
    print(
        f"alignment with the {scores.truth} impacts on screen: onset accuracy {scores.accuracy:.2f} "
        f"({scores.chance_accuracy:.2f} by chance), AP {scores.ap:.2f}, "
        f"energy-envelope correlation {envelope_correlation(generated, clip.audio):.2f}"
    )
    manifest = json.loads((repo / MANIFEST).read_text())
    if any(entry.get("noise_weights") for entry in manifest["models"].values()):
        print(
            "note: the networks have seeded random weights (no checkpoints given to `s2s export`): the sound is noise"
        )
    return 0
