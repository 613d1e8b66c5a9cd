"""``s2s eval``: does the served sound follow the picture? Scored through the real Triton ensemble.

Held-out generated clips (seeds from ``s2s.synth.HELD_OUT_SEEDS``, never used in training) go, as encoded
video files, through the ``s2s`` ensemble of the embedded Triton over gRPC, once with the trained weights
(the package's demo weights, or checkpoints given) and once with untrained (seeded) weights of the same
architecture, what the networks make before any training; with ``--baseline-generator-checkpoint`` /
``--baseline-vocoder-checkpoint`` also once with other weights to compare against (before / after a change:
same clips, same run, one table). Each generated waveform is scored against the clip's exact ground-truth
onsets (s2s.alignment: onset accuracy, onset AP) and its own waveform (energy-envelope correlation), and for
how it sounds (s2s.quality: the vocoder's hop-rate buzz, the log-mel distance to the clip's own sound,
spurious onsets at window seams). The clips' own sound is scored the same way as a reference (what a perfect
model would get), and so is the served vocoder fed each clip's true mel (the ceiling of the sound quality
any generator can reach through it). Besides the short clips, a few clips longer than a window (25 s: three
windows) put seams between windows under the seam check.
The generated clips are of the ``--variety`` the weights were trained on; a second, independent
held-out set (s2s.independent: another renderer, other sizes and frame rates, event kinds never trained
on) is scored alongside, and the report states the gap between the two.
When the networks are served in
reduced precision (the openvino CPU accelerator in bf16, the export default on CPUs that compute bf16),
the trained weights are also scored in fp32, so the report shows what the precision costs. Results:
``<output>/eval.json``, ``<output>/report.md`` and, per clip, ``<output>/spectrograms/seed_<seed>.png``:
the mels of the generated sound, the clip's own and the vocoded true mel, one above the other.

``--data``: the test split of a dataset made by ``s2s dataset`` (a team's own videos) instead: each clip's
stored features (what the served encoders computed for it) through the served generator and vocoder,
scored the same way against the clip's own sound, its detected onsets standing for the truth.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from s2s.alignment import envelope_correlation, onset_scores
from s2s.constants import REGNET
from s2s.errors import OptionError, S2SError
from s2s.flags import flag
from s2s.flow import FLOW_METHODS
from s2s.independent import INDEPENDENT_SEEDS, independent_clip
from s2s.models.checkpoints import portable_path
from s2s.quality import (
    away_from_seams,
    hop_buzz_db,
    level_steps_db,
    log_mel_scores,
    seam_onsets,
)
from s2s.repository import GENERATOR_INPUTS, INPUTS_REVISION, generator_inputs
from s2s.runtime.ort_backend import PRECISIONS, resolve_precision
from s2s.synth import HELD_OUT_SEEDS, VARIETIES, encode_clip, make_clip
from s2s.video import VideoLimits
from s2s.windowing import PreprocessOptions, seam_times, window_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOptions:
    output: Path = flag(Path("runs/eval"), "--output", "folder of eval.json and report.md")
    clips: int = flag(16, "--clips", "held-out clips")
    clip_seconds: float = flag(8.0, "--clip-seconds", "length of each clip, seconds")
    long_clips: int = flag(2, "--long-clips", "more held-out clips, longer than a window (seams between windows)")
    long_clip_seconds: float = flag(25.0, "--long-clip-seconds", "length of each long clip, seconds")
    first_seed: int = flag(HELD_OUT_SEEDS.start, "--first-seed", "seed of the first held-out clip")
    variety: str = flag("plain", "--variety", "what the held-out generated clips draw (s2s.synth; as the weights "
                        "were trained on)", choices=VARIETIES)  # fmt: skip
    independent_clips: int = flag(
        8, "--independent-clips", "clips of the independent held-out set (s2s.independent: another renderer, "
        "event kinds never trained on), as long as --clip-seconds",
    )  # fmt: skip
    flow_method: str = flag("dis", "--flow-method", "optical flow of the served preprocess", choices=FLOW_METHODS)
    generator_checkpoint: Path | None = flag(
        None, "--generator-checkpoint", "trained generator", type=Path, shown="the demo weights"
    )
    vocoder_checkpoint: Path | None = flag(
        None, "--vocoder-checkpoint", "trained vocoder (MelGAN or s2s train's)", type=Path, shown="the demo weights"
    )
    #: before / after: other weights scored in the same run on the same clips (either half defaults to the
    #: trained weights' own, so giving one compares that network alone)
    baseline_generator_checkpoint: Path | None = flag(
        None, "--baseline-generator-checkpoint", "a generator to compare against, scored in the same run on the "
        "same clips", type=Path, shown="the trained generator, when only a baseline vocoder is given",
    )  # fmt: skip
    baseline_vocoder_checkpoint: Path | None = flag(
        None, "--baseline-vocoder-checkpoint", "a vocoder to compare against, scored in the same run on the same "
        "clips", type=Path, shown="the trained vocoder, when only a baseline generator is given",
    )  # fmt: skip
    cpu_precision: str = flag(
        "auto", "--cpu-precision", "precision of the served networks (the openvino accelerator); below fp32 the "
        "trained weights are also scored in fp32", choices=PRECISIONS,
    )  # fmt: skip
    window_frames: int = REGNET.frames_per_window
    overlap_frames: int | None = flag(
        None, "--overlap-frames", "frames consecutive windows share and cross-fade (0: they butt)", type=int,
        shown="serving's default",
    )  # fmt: skip
    data: Path | None = flag(
        None, "--data", "score the test split of a dataset made by `s2s dataset` (onsets of each clip's own sound "
        "as the truth) instead of generated clips", type=Path,
    )  # fmt: skip

    def __post_init__(self) -> None:
        window_s = self.window_frames / REGNET.fps
        if self.clips < 1 or self.long_clips < 0 or self.independent_clips < 0:
            raise OptionError(f"need at least one clip and no negative counts, got {self.clips} clips, "
                              f"{self.long_clips} long, {self.independent_clips} independent")  # fmt: skip
        if self.long_clips and self.long_clip_seconds <= window_s:
            raise OptionError(
                f"long clips must be longer than a window ({window_s:.2f} s) to have seams, "
                f"got {self.long_clip_seconds:g}"
            )


@dataclass
class Served:
    """What the ensemble made of each clip, and the served vocoder's sound of each clip's true mel."""

    waveforms: list  #: generated, one per clip
    seconds: list[float]
    vocoded: list | None = None


def _serve(repository: Path, videos: list[bytes], clips: list, vocode: bool) -> Served:
    """Each clip through the ensemble; with ``vocode``, also each clip's true mel through the vocoder alone."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    from s2s.audio import mel_spectrogram_librosa
    from s2s.client.triton import S2SClient
    from s2s.runtime.server import ServerOptions, TritonServer

    options = ServerOptions.local(
        repository, shm_default_byte_size=64 * 1024 * 1024, log_level="error", exit_timeout_s=10
    )
    served = Served([], [], [] if vocode else None)
    with TritonServer(options), S2SClient(options.grpc_url, timeout_s=3600) as client:
        for video in videos:
            result = client.generate(video)
            served.waveforms.append(result.waveform)
            served.seconds.append(result.seconds)
        if served.vocoded is None:
            return served
        with grpcclient.InferenceServerClient(options.grpc_url) as raw:
            for clip in clips:
                mel = mel_spectrogram_librosa(np.asarray(clip.audio, dtype=np.float32))[None]
                tensor = grpcclient.InferInput("mel", list(mel.shape), "FP32")
                tensor.set_data_from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
                served.vocoded.append(raw.infer("vocoder", [tensor]).as_numpy("waveform")[0][: clip.audio.size])
    return served


def _pictures(folder: Path, clips: list, served: Served) -> list[str]:
    """Per clip, the mels of the generated sound, its own and the vocoded true mel, one above the other."""
    from s2s.audio import mel_spectrogram_librosa
    from s2s.pictures import png, stacked

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, clip in enumerate(clips):
        sounds = {"generated": served.waveforms[i], "own sound": clip.audio}
        if served.vocoded is not None:
            sounds["vocoder on the true mel"] = served.vocoded[i]
        picture = stacked({label: mel_spectrogram_librosa(wave) for label, wave in sounds.items()})
        names.append(f"{folder.name}/seed_{clip.seed}.png")
        (folder / f"seed_{clip.seed}.png").write_bytes(png(picture))
    return names


def _set_of(clip) -> str:
    """Which held-out set a clip belongs to: its seed tells (a dataset's clips are named, not seeded)."""
    return "independent" if isinstance(clip.seed, int) and clip.seed in INDEPENDENT_SEEDS else "generated"


def _summaries(rows: list[dict]) -> dict:
    """The summary of the generated (in-distribution) clips and, where there are any, of the independent set."""
    out = {"summary": _summary([r for r in rows if r.get("set", "generated") == "generated"]), "clips": rows}
    independent = [r for r in rows if r.get("set") == "independent"]
    if independent:
        out["independent"] = _summary(independent)
    return out


def _clip_row(clip, waveform, windows: PreprocessOptions) -> dict:
    """One clip's scores for ``waveform`` (generated, or the clip's own sound for the reference row); the
    seams are where ``windows`` hand over from one to the next."""
    duration = clip.audio.size / REGNET.sample_rate
    seams = seam_times(duration, windows)
    scores = onset_scores(waveform, REGNET.sample_rate, clip.onsets)
    return {"seed": clip.seed, "set": _set_of(clip), "kinds": clip.kinds, **scores.as_dict(),
            "envelope_correlation": envelope_correlation(waveform, clip.audio),
            "buzz_db": hop_buzz_db(waveform), **log_mel_scores(waveform, clip.audio, clip.onsets),
            "seam_onsets": seam_onsets(waveform, clip.onsets, seams),
            "seam_steps_db": level_steps_db(waveform, seams),
            "steady_steps_db": level_steps_db(waveform, away_from_seams(duration, seams)),
            "seams": int(seams.size)}  # fmt: skip


def _summary(rows: list[dict]) -> dict:
    """Means over clips, the accuracy pooled over all onsets (clips with more onsets weigh more), the
    spurious seam onsets of all clips and the mean level step over all their seams (None without seams); the
    ringing lost over the clips that have onsets to measure it at (None without any)."""
    keys = ("accuracy", "chance_accuracy", "ap", "envelope_correlation", "buzz_db", "mel_distance_db",
            "matched_mel_distance_db")  # fmt: skip
    pooled = sum(r["hits"] for r in rows) / max(1, sum(r["truth"] for r in rows))
    steps = [step for r in rows for step in r.get("seam_steps_db", [])]
    # away from seams, on the clips that have seams (the same sounds the seam steps come from)
    steady = [step for r in rows if r.get("seams") for step in r.get("steady_steps_db", [])]
    ringing = [r["ringing_lost_db"] for r in rows if r.get("ringing_lost_db") is not None]
    return {k: statistics.mean(r[k] for r in rows) for k in keys} | {
        "pooled_accuracy": pooled, "seam_onsets": sum(r["seam_onsets"] for r in rows), "clips": len(rows),
        "seams": sum(r.get("seams", 0) for r in rows), "seam_step_db": statistics.mean(steps) if steps else None,
        "steady_step_db": statistics.mean(steady) if steady else None,
        "ringing_lost_db": statistics.mean(ringing) if ringing else None,
    }  # fmt: skip


def _weights(options: EvalOptions):
    """The export options of the trained weights, of the baseline to compare them with (None unless one of
    its checkpoints is given) and of the untrained networks (same architecture, seeded)."""
    from s2s.export.specs import ExportOptions

    trained = replace(
        ExportOptions(),
        generator_checkpoint=options.generator_checkpoint,
        vocoder_checkpoint=options.vocoder_checkpoint,
    ).with_demo_weights()
    if trained.generator_checkpoint is None:
        raise S2SError("no trained generator: pass --generator-checkpoint, or make the demo weights with "
                       "`s2s train --install`")  # fmt: skip
    from s2s.models.regnet import RegNetConfig, config_name, load_regnet_checkpoint

    _, meta = load_regnet_checkpoint(trained.generator_checkpoint)
    recorded = RegNetConfig.from_record(meta["config"]) if "config" in meta else None  # as build_regnet reads it
    config = config_name(recorded) if recorded else "reference"
    if config == "custom":
        raise OptionError(f"{trained.generator_checkpoint}: the untrained networks need a named RegNet configuration")
    baseline = None
    if options.baseline_generator_checkpoint or options.baseline_vocoder_checkpoint:
        baseline = replace(
            trained,
            generator_checkpoint=options.baseline_generator_checkpoint or trained.generator_checkpoint,
            vocoder_checkpoint=options.baseline_vocoder_checkpoint or trained.vocoder_checkpoint,
        )
    inputs = ",".join(recorded.inputs) if recorded else None  # the untrained generator is fed what the trained one is
    return trained, baseline, ExportOptions(generator_config=config, generator_inputs=inputs,
                                            vocoder=trained.vocoder_name())  # fmt: skip


#: the rows of a report, in order: label -> what the row is called (``{precision}`` filled in)
ROWS = {
    "trained": "trained ({precision})", "trained-fp32": "trained (fp32)", "baseline": "baseline ({precision})",
    "untrained": "untrained ({precision})", "vocoded": "trained vocoder on the true mel (ceiling)",
    "baseline-vocoded": "baseline vocoder on the true mel (its ceiling)",
    "reference": "reference (the clips' own sound)",
}  # fmt: skip
#: runs whose vocoder is also fed each clip's true mel (the ceiling of its sound), and where those rows go
VOCODED = {"trained": "vocoded", "baseline": "baseline-vocoded"}


def evaluate(options: EvalOptions = EvalOptions()) -> dict:
    from s2s.export.onnx_export import export_repository
    from s2s.export.triton_config import ServingOptions

    if options.data is not None:
        return evaluate_dataset(options)
    if options.first_seed < HELD_OUT_SEEDS.start:
        raise OptionError(f"evaluation seeds start at {HELD_OUT_SEEDS.start} (lower ones are for training)")
    trained, baseline, untrained = _weights(options)
    started = time.monotonic()
    seeds = range(options.first_seed, options.first_seed + options.clips + options.long_clips)
    clips = [make_clip(s, options.clip_seconds if i < options.clips else options.long_clip_seconds,
                       variety=options.variety) for i, s in enumerate(seeds)]  # fmt: skip
    independent = range(INDEPENDENT_SEEDS.start, INDEPENDENT_SEEDS.start + options.independent_clips)
    clips += [independent_clip(s, options.clip_seconds) for s in independent]
    videos = [encode_clip(c) for c in clips]
    longest = max(options.clip_seconds, options.long_clip_seconds if options.long_clips else 0.0) + 1.0
    preprocess = PreprocessOptions(
        flow_method=options.flow_method, window_frames=options.window_frames, instances=1,
        overlap_frames=options.overlap_frames, limits=VideoLimits(max_duration_s=longest),
    )  # fmt: skip
    windows = window_count(math.ceil(longest * REGNET.fps), preprocess.window_frames, preprocess.overlap_frames)
    serving = ServingOptions(
        warmup_frames=0, max_windows=max(windows, ServingOptions.max_windows), cpu_precision=options.cpu_precision
    )
    runs = [("trained", trained, serving)]
    if resolve_precision(options.cpu_precision) != "fp32":
        runs.append(("trained-fp32", trained, replace(serving, cpu_precision="fp32")))
    if baseline is not None:
        runs.append(("baseline", baseline, serving))
    runs.append(("untrained", untrained, serving))
    recorded = {k: portable_path(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    results: dict = {"options": recorded, "weights": {}}
    # the clips' own sound under the same scoring: what a perfect model would get
    results["reference"] = _summaries([_clip_row(c, c.audio, preprocess) for c in clips])
    results["precision"] = resolve_precision(options.cpu_precision)
    for label, export_options, serving_options in runs:
        with tempfile.TemporaryDirectory(prefix=f"s2s-eval-{label}-") as tmp:
            manifest = export_repository(Path(tmp), export_options, serving_options, None, None, preprocess)
            results["weights"][label] = {name: m["source"] for name, m in manifest["models"].items()}
            served = _serve(Path(tmp), videos, clips, vocode=label in VOCODED)
        _record(results, label, clips, served, preprocess, options.output)
    return _finish(options, results, started)


def _record(results: dict, label: str, clips: list, served: Served, windows: PreprocessOptions, output: Path) -> None:
    """The scores of one run's sound for each clip (and of the vocoded true mel, with the pictures)."""
    rows = [_clip_row(c, w, windows) | {"seconds": s}
            for c, w, s in zip(clips, served.waveforms, served.seconds, strict=True)]  # fmt: skip
    for row in rows:
        log.info("%s %s %s: accuracy %.2f AP %.2f, buzz %.1f dB", label, row["seed"], row["kinds"], row["accuracy"],
                 row["ap"], row["buzz_db"])  # fmt: skip
    results[label] = _summaries(rows)
    if served.vocoded is not None:
        vocoded = [_clip_row(c, w, windows) for c, w in zip(clips, served.vocoded, strict=True)]
        results[VOCODED[label]] = _summaries(vocoded)
    if label == "trained":
        results["pictures"] = _pictures(output / "spectrograms", clips, served)


def _finish(options: EvalOptions, results: dict, started: float) -> dict:
    results["seconds"] = time.monotonic() - started
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    (options.output / "report.md").write_text(report(results))
    return results


@dataclass
class DatasetClip:
    """A test clip of a dataset, scored like a generated one: its own sound's onsets are the truth."""

    seed: str  #: the clip's name (where generated clips have their seed)
    kinds: list[str]  #: its label
    audio: object
    onsets: object
    mel: object
    #: the generator inputs it holds (rgb, flow, motion: s2s.repository.GENERATOR_INPUTS' names), float32 (n, width)
    inputs: dict


def _dataset_clips(dataset: Path) -> list[DatasetClip]:
    import numpy as np

    from s2s.alignment import detect_onsets
    from s2s.training.dataset import clip_paths

    clips = []
    for path in clip_paths(dataset, "test"):
        with np.load(path) as z:
            audio, label = z["audio"].astype(np.float32), str(z["label"])
            onsets, _ = detect_onsets(audio, REGNET.sample_rate)
            inputs = {name: z[name].astype(np.float32) for name in GENERATOR_INPUTS if name in z.files}
            clips.append(DatasetClip(path.stem, [label] if label else [], audio, np.sort(onsets),
                                     z["mel"].astype(np.float32), inputs))  # fmt: skip
    if not clips:
        raise OptionError(f"{dataset}: its test split holds no clip")
    return clips


def _generate_from_features(
    repository: Path, clips: list[DatasetClip], manifest: dict, vocode: bool
) -> Served:  # fmt: skip
    """Each clip's stored features (what the served encoders computed) through the served generator and
    vocoder; with ``vocode``, also its true mel through the vocoder alone."""
    import hashlib

    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    from s2s.runtime.server import ServerOptions, TritonServer

    z_dim, inputs = int(manifest["models"]["generator"]["z_dim"]), generator_inputs(manifest)
    lacking = next((f"{c.seed} holds no {name}" for c in clips for name in inputs if name not in c.inputs), None)
    if lacking:
        raise OptionError(f"the generator is fed {', '.join(inputs)}, but the dataset's clip {lacking} (made before "
                          "`s2s dataset` stored it): make the dataset again")  # fmt: skip
    options = ServerOptions.local(repository, shm_default_byte_size=64 * 1024 * 1024, log_level="error")
    served = Served([], [], [] if vocode else None)

    def infer(client, model: str, output: str, **arrays) -> np.ndarray:
        tensors = []
        for name, value in arrays.items():
            tensor = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(value))
            tensors.append(tensor)
        return client.infer(model, tensors).as_numpy(output)

    def fit(wave: np.ndarray, samples: int) -> np.ndarray:
        return np.pad(wave[:samples], (0, max(0, samples - wave.size)))

    with TritonServer(options), grpcclient.InferenceServerClient(options.grpc_url) as client:
        for clip in clips:
            started = time.monotonic()
            fed = {GENERATOR_INPUTS[name][0]: clip.inputs[name][None] for name in inputs}
            n = next(iter(fed.values())).shape[1]  # the clip's frames: each input has a row per frame
            seed = int.from_bytes(hashlib.sha256(clip.seed.encode()).digest()[:8], "little")
            z = np.random.default_rng(seed).standard_normal((1, z_dim)).astype(np.float32)
            mel = infer(client, "generator", "mel", **fed, frame_index=np.arange(n, dtype=np.int32)[None], z=z)
            served.waveforms.append(fit(infer(client, "vocoder", "waveform", mel=mel)[0], clip.audio.size))
            served.seconds.append(time.monotonic() - started)
            if served.vocoded is not None:
                wave = infer(client, "vocoder", "waveform", mel=clip.mel[None])[0]
                served.vocoded.append(fit(wave, clip.audio.size))
    return served


def evaluate_dataset(options: EvalOptions) -> dict:
    """The trained and untrained weights on a dataset's test split: the stored features (exactly what the
    served encoders computed) through the served generator and vocoder, scored against each clip's own sound."""
    from s2s.export.onnx_export import export_repository
    from s2s.export.triton_config import ServingOptions
    from s2s.training.dataset import inputs_revision

    trained, baseline, untrained = _weights(options)
    started = time.monotonic()
    clips = _dataset_clips(options.data)
    revision = inputs_revision(options.data)
    if revision != INPUTS_REVISION:  # a legitimate before / after, but not what this version serves: said
        log.warning("%s holds inputs of revision %d; this version serves revision %d (s2s.repository."
                    "INPUTS_REVISION): the scores are of stored features it no longer computes", options.data,
                    revision, INPUTS_REVISION)  # fmt: skip
    serving = ServingOptions(warmup_frames=0, cpu_precision=options.cpu_precision)
    recorded = {k: portable_path(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    results: dict = {"options": recorded, "weights": {}, "precision": resolve_precision(options.cpu_precision),
                     "inputs_revision": revision}  # fmt: skip
    windows = PreprocessOptions(window_frames=options.window_frames, overlap_frames=options.overlap_frames)
    runs = [("trained", trained), ("baseline", baseline), ("untrained", untrained)]
    for label, export_options in [(label, o) for label, o in runs if o is not None]:
        with tempfile.TemporaryDirectory(prefix=f"s2s-eval-{label}-") as tmp:
            manifest = export_repository(Path(tmp), export_options, serving, ("generator", "vocoder"), windows=windows)
            results["weights"][label] = {name: m["source"] for name, m in manifest["models"].items()}
            served = _generate_from_features(Path(tmp), clips, manifest, vocode=label in VOCODED)
        _record(results, label, clips, served, windows, options.output)
    return _finish(options, results, started)


def _revision_note(revision: int | None) -> str:
    if revision is None or revision == INPUTS_REVISION:
        return f" (inputs' revision {INPUTS_REVISION})"
    return (f" (inputs' revision {revision}: this version serves revision {INPUTS_REVISION}; the scores are of stored "
            "features it no longer computes)")  # fmt: skip


def _chance(summary: dict) -> str:
    """A summary's chance accuracy for the report; "-" for results written before it was measured."""
    chance = summary.get("chance_accuracy")
    return "-" if chance is None else f"{chance:.3f}"


def report(results: dict) -> str:
    options = results.get("options", {})
    long = f" and {options['long_clips']} of {options['long_clip_seconds']:g} s" if options.get("long_clips") else ""
    clips = results["trained"]["summary"]["clips"]
    title = (
        f"Scores on the {clips} test clips of the dataset {options['data']} (onsets of each clip's own sound as the "
        "truth): its stored features, as the served encoders computed them, through the served generator and vocoder"
        + _revision_note(results.get("inputs_revision"))
        if options.get("data")
        else f"Alignment on {clips} held-out generated clips ({options.get('clips', '?')} of "
        f"{options.get('clip_seconds', '?')} s{long}; variety {options.get('variety', 'plain')}), through the Triton "
        "ensemble"
    )
    lines = [
        title,
        "",
        "| weights | onset accuracy | by chance | onset AP | energy-envelope correlation | accuracy pooled over onsets "
        "| hop-rate buzz (dB) | log-mel distance (dB) | ringing lost (dB) | seam onsets | level step at seams (dB) "
        "| level step away from seams (dB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    precision = results.get("precision", "fp32")
    names = {label: name.format(precision=precision) for label, name in ROWS.items()}
    for label in [label for label in ROWS if label in results]:
        s = results[label]["summary"]
        name = names[label]
        step, steady, ringing = ("-" if s.get(k) is None else f"{s[k]:.1f}"
                                 for k in ("seam_step_db", "steady_step_db", "ringing_lost_db"))  # fmt: skip
        lines.append(f"| {name} | {s['accuracy']:.3f} | {_chance(s)} | {s['ap']:.3f} | {s['envelope_correlation']:.3f} "
                     f"| {s['pooled_accuracy']:.3f} | {s.get('buzz_db', float('nan')):.1f} "
                     f"| {s.get('mel_distance_db', float('nan')):.1f} | {ringing} | {s.get('seam_onsets', '-')} "
                     f"| {step} | {steady} |")  # fmt: skip
    lines += ["", "By chance: the onset accuracy of the same detections shifted around each clip (s2s.alignment."
              "chance_accuracy: as many onsets in the same rhythm, nothing to do with the picture; accuracy counts "
              "hits, not false alarms, so a sound with onsets everywhere scores high on both). Buzz: the hop-rate "
              "harmonics above the local median spectrum in the quietest third of the frames "
              "(about 0 dB for natural sound); log-mel distance: to the clip's own sound; ringing lost: the clip's own "
              "3 strongest mel bands over the 2-12 frames after each true onset (where struck objects ring), own "
              "level minus this sound's (0 for the own sound); seam onsets: detected "
              "onsets near a seam (the middle of two windows' cross-fade) with no true onset near them "
              f"(s2s.quality), over {results['trained']['summary'].get('seams', 0)} seams; level step: the RMS "
              "level of the 0.2 s after an instant against the 0.2 s before it, mean |dB|, at the seams and "
              "every 0.25 s at least 1 s away from any seam of the same clips (what the sound does anyway)."
              ]  # fmt: skip
    independent = [label for label in ROWS if results.get(label, {}).get("independent")]
    if independent:
        count = results["trained"]["independent"]["clips"]
        lines += ["", f"Generalisation: {count} clips of the independent held-out set (s2s.independent: drawn by "
                  "another renderer, at other sizes and frame rates, with event kinds never trained on) next to the "
                  "generated held-out clips above; gap: generated minus independent; level-matched: the log-mel "
                  "distance after the one gain per clip that brings the sound closest to the clip's own (another "
                  "renderer's loudness, which the plain distance mostly measures there, counts for nothing).", "",
                  "| weights | onset accuracy, generated | onset accuracy, independent | by chance, independent | gap "
                  "| onset AP, independent "
                  "| accuracy pooled over onsets, independent | log-mel distance, independent (dB) "
                  "| level-matched, independent (dB) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for label in independent:
            g, i = results[label]["summary"], results[label]["independent"]
            matched = i.get("matched_mel_distance_db", math.nan)  # results written before it was measured: none
            lines.append(f"| {names[label]} | {g['accuracy']:.3f} | {i['accuracy']:.3f} | {_chance(i)} "
                         f"| {g['accuracy'] - i['accuracy']:+.3f} | {i['ap']:.3f} | {i['pooled_accuracy']:.3f} "
                         f"| {i['mel_distance_db']:.1f} | {matched:.1f} |")  # fmt: skip
    if results.get("pictures"):
        lines += ["", "Spectrograms (log-mel, low frequencies at the bottom): the generated sound, the clip's own, "
                  "and the served vocoder on the clip's true mel, one above the other.", ""]  # fmt: skip
        lines += [f"![{name}]({name})" for name in results["pictures"]]
    return "\n".join(lines) + "\n"
