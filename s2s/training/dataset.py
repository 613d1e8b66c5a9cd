"""``s2s dataset``: a team's own videos with their sound -> training clips, features from the served encoders.

Sources (``--source``):

- a folder of videos with audio tracks, searched recursively: each is cut into the serving windows
  (window k covers seconds [10 k, 10 k + 10) at the recipe's 21.5 fps); a last piece shorter than
  ``--min-seconds`` is dropped. The split comes from a stable hash of the file's path (``--test-fraction``),
  so every clip of a file lands in the same split.
- a CSV in VGGSound's layout (``youtube_id,start_seconds,label,split``; a header line is allowed) with
  ``--videos DIR`` holding the clips as downloaders save them, ``<id>_<start:06d>.<ext>``, 10 s each from
  their start second. Rows whose file is missing are skipped and listed.

Each clip's video goes through the ``s2s_features`` ensemble of a running server (preprocess ->
tsn_rgb + tsn_flow, and the motion statistics of the flow: exactly the inputs serving computes, so training
sees what the generator will be fed), one window per request, ``--concurrency`` files at once, so extraction
scales with the Triton pods behind ``--url``. Its sound is decoded here (PyAV: first audio track, mixed to
mono, resampled to 22050 Hz) and cut to the same window; the mel is RegNet's (s2s.audio). Unreadable files,
files without sound (no audio track, or digital silence), files too short, and files the server refuses (its own
message: too long for its duration limit, too large, ...) are skipped and listed with the reason; the run
goes on. Interrupted, it goes on where it stopped: a file is done once its record is written.

Layout (one file per clip, like RegNet's per-clip feature files)::

    <output>/dataset.json        the request, the served flow method and inputs' revision
                                 (s2s.repository.INPUTS_REVISION), the encoders (from --model-repository's
                                 manifest), clips per split, every skipped file and why
    <output>/clips/<clip>.npz    rgb, flow float16 [n, 1024] (n <= 215 frames), motion float32 [n, 60]
                                 (s2s.motion), mel float16 [80, 4 n], audio float32 [n / 21.5 * 22050], and
                                 source, start_s, label, split
    <output>/files/<key>.json    per source file: its clips, or why it was skipped (what a rerun skips)

``<clip>`` is ``<stem>_<start:06d>`` (VGGSound's naming: the source file's name and the clip's start second;
``<stem>_<start in ms:09d>ms`` where windows are not whole seconds).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from s2s.constants import REGNET
from s2s.errors import OptionError, S2SError
from s2s.flags import flag
from s2s.progress import Progress
from s2s.repository import FEATURES, INPUT_OF_TENSOR, MANIFEST

if TYPE_CHECKING:
    from s2s.windowing import PreprocessOptions

log = logging.getLogger(__name__)

#: what a folder source takes as a video (by suffix; anything else is listed as skipped)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv")
#: the peak below which a sound track counts as silent (digital silence, a muted track)
SILENCE_PEAK = 1e-4
SPLITS = ("train", "test")
#: the inputs' revision of a dataset or file record made before ``s2s dataset`` recorded one: its server computed 1
UNRECORDED_REVISION = 1


@dataclass(frozen=True)
class DatasetOptions:
    source: Path = flag(Path("videos"), "--source", "a folder of videos with sound, or a VGGSound-layout CSV",
                        type=Path)  # fmt: skip
    output: Path = flag(Path("runs/dataset"), "--output", "folder of the dataset (clips/, dataset.json)", type=Path)
    videos: Path | None = flag(None, "--videos", "CSV source: the folder of its clips (<id>_<start:06d>.<ext>)",
                               type=Path)  # fmt: skip
    url: str = flag("localhost:8001", "--url", "Triton gRPC address serving the s2s_features ensemble")
    concurrency: int = flag(2, "--concurrency", "files sent at once")
    min_seconds: float = flag(2.0, "--min-seconds", "shortest clip kept (a file's last piece, or a short file)")
    test_fraction: float = flag(0.1, "--test-fraction", "folder source: share of files in the test split")
    model_repository: Path | None = flag(
        None, "--model-repository", "the served repository, to record which encoders made the features", type=Path
    )
    timeout_s: float = flag(600.0, "--timeout", "seconds per request")
    admin_key_file: Path | None = flag(
        None, "--admin-key-file", "file holding the server's admin key, to read its window length", type=Path,
        shown="$S2S_TRITON_ADMIN_KEY",
    )  # fmt: skip

    def admin_key(self) -> str | None:
        from s2s.runtime.server import ADMIN_KEY_ENV

        if self.admin_key_file is not None:
            return self.admin_key_file.read_text().strip()
        return os.environ.get(ADMIN_KEY_ENV)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or not 0 <= self.test_fraction <= 1 or self.min_seconds <= 0:
            raise OptionError(
                f"need --concurrency >= 1, 0 <= --test-fraction <= 1 and --min-seconds > 0; got {self.concurrency}, "
                f"{self.test_fraction}, {self.min_seconds}"
            )


@dataclass
class SourceFile:
    """One video to cut into clips: where it is, and for a CSV row its start second, label and split."""

    path: Path
    name: str  #: the source as the dataset records it (relative to the folder, or the CSV row)
    split: str
    label: str = ""
    start_s: int = 0  #: the start second its clip names carry (CSV), 0 for a folder's files
    missing: str = ""  #: why it cannot be read at all (CSV: no such file)
    #: clip names are ``<base>_<start second:06d>``: the YouTube id (CSV), the file's path (folder)
    base: str = ""

    @property
    def key(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:24]


@dataclass
class FileRecord:
    source: str
    clips: list[str] = field(default_factory=list)
    skipped: str = ""  #: why the file gave no clips ("" when it gave some)
    #: of the server that made its clips (s2s.repository.INPUTS_REVISION)
    inputs_revision: int = UNRECORDED_REVISION


# ------------------------------------------------------------------------------------------- sources
def _split_of(name: str, test_fraction: float) -> str:
    draw = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") / 2**64
    return "test" if draw < test_fraction else "train"


def list_sources(options: DatasetOptions) -> list[SourceFile]:
    """The files to cut into clips, from a folder or a VGGSound-layout CSV."""
    source = options.source
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        out = []
        for p in files:
            name = p.relative_to(source).as_posix()
            base = p.relative_to(source).with_suffix("").as_posix().replace("/", "__")
            out.append(SourceFile(p, name, _split_of(name, options.test_fraction), base=base))
        return out
    if source.is_file() and source.suffix.lower() == ".csv":
        if options.videos is None or not options.videos.is_dir():
            raise OptionError(f"{source}: a CSV source needs --videos, the folder holding its clips")
        return _csv_sources(source, options.videos)
    raise OptionError(f"--source {source}: neither a folder of videos nor a .csv file")


def _csv_sources(path: Path, videos: Path) -> list[SourceFile]:
    by_stem = {p.stem: p for p in sorted(videos.iterdir()) if p.is_file()}
    out = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or row[0].startswith("#") or (number == 1 and not row[1].strip().lstrip("-").isdigit()):
                continue  # blank, comment or header
            if len(row) < 4:
                raise OptionError(f"{path}:{number}: expected id,start_seconds,label,split; got {row}")
            vid, start, label, split = (cell.strip() for cell in row[:4])
            try:
                start_s = int(float(start))
            except ValueError:
                raise OptionError(f"{path}:{number}: start second {start!r} is not a number") from None
            split = {"val": "test", "validation": "test"}.get(split.lower(), split.lower())
            if split not in SPLITS:
                raise OptionError(f"{path}:{number}: split {row[3]!r} (expected train or test)")
            stem = f"{vid}_{start_s:06d}"
            file = by_stem.get(stem)
            out.append(SourceFile(file or videos / stem, stem, split, label, start_s,
                                  "" if file else f"no file {stem}.* in {videos}", vid))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------- one file
def _clip_name(source: SourceFile, start_s: float, stride_s: float) -> str:
    """``<base>_<start second:06d>`` (VGGSound's names), in milliseconds when windows start every fraction of
    a second (``stride_s``; the same form for all of a file's clips)."""
    start = source.start_s + start_s
    if float(stride_s).is_integer():
        return f"{source.base}_{round(start):06d}"
    return f"{source.base}_{round(start * 1000):09d}ms"


def clip_record(source: SourceFile, start_s: float, inputs: dict[str, np.ndarray], audio: np.ndarray) -> dict:
    """What one clip's file holds: n frames' generator inputs (``inputs``: rgb, flow, motion), the mel and audio of
    the same n frames."""
    from s2s.audio import mel_spectrogram_librosa

    n = inputs["rgb"].shape[0]
    mel = mel_spectrogram_librosa(audio)[:, : REGNET.mel_frames_per_frame * n]
    return {
        "rgb": inputs["rgb"].astype(np.float16), "flow": inputs["flow"].astype(np.float16),
        "motion": inputs["motion"].astype(np.float32), "mel": mel.astype(np.float16),
        "audio": audio.astype(np.float32), "source": np.array(source.name), "label": np.array(source.label),
        "split": np.array(source.split), "start_s": np.array(source.start_s + start_s),
    }  # fmt: skip


def _features(client, video: bytes, window: int, timeout_s: float) -> tuple[dict[str, np.ndarray], int]:
    """The generator inputs of one window's n distinct frames (rgb, flow [n, 1024], motion [n, 60]: the record's
    names), and the video's window count."""
    import tritonclient.grpc as grpcclient

    from s2s.client.triton import request_tensors

    inputs, _ = request_tensors(grpcclient, video, window, 1)
    outputs = [grpcclient.InferRequestedOutput(n) for n in (*INPUT_OF_TENSOR, "windows")]  # every generator input
    result = client.infer(FEATURES, inputs, outputs=outputs, client_timeout=timeout_s)
    windows = int(result.as_numpy("windows").reshape(-1)[0])
    return {name: result.as_numpy(output)[0] for output, name in INPUT_OF_TENSOR.items()}, windows


def extract_file(
    client, source: SourceFile, options: DatasetOptions, clips_dir: Path, served: PreprocessOptions
) -> FileRecord:
    """Cut one file into clips (the served windows: ``served.window_frames`` each, every
    ``served.stride_frames``) and write them; a file that cannot give any says why in its record."""
    from tritonclient.utils import InferenceServerException

    from s2s.client.triton import rejected_input
    from s2s.video import VideoError, decode_audio

    record = FileRecord(source.name, inputs_revision=served.inputs_revision)
    if source.missing:
        record.skipped = source.missing
        return record
    if source.path.suffix.lower() not in VIDEO_SUFFIXES:
        record.skipped = f"not a video file ({source.path.suffix or 'no suffix'})"
        return record
    video = source.path.read_bytes()
    try:
        sound = decode_audio(video)
    except VideoError as exc:
        record.skipped = str(exc)
        return record
    if np.abs(sound).max() < SILENCE_PEAK:
        record.skipped = "silent sound track (digital silence): nothing to learn the sound from"
        return record
    window, windows = 0, 1
    while window < windows:
        try:
            features, windows = _features(client, video, window, options.timeout_s)
        except InferenceServerException as exc:
            reason = rejected_input(exc)
            if reason is None:  # the server, not the file: stop here (a rerun goes on with this file)
                raise
            if not record.clips:  # the server refuses the file (preprocess says why)
                record.skipped = f"refused by the server: {reason}"
                return record
            log.warning("%s: window %d refused (%s); keeping the %d clips before it", source.name, window, reason,
                        len(record.clips))  # fmt: skip
            break
        n, start_s = features["rgb"].shape[0], window * served.stride_frames / REGNET.fps
        first, samples = round(start_s * REGNET.sample_rate), round(n / REGNET.fps * REGNET.sample_rate)
        if n / REGNET.fps >= options.min_seconds - 1e-9:
            audio = sound[first : first + samples]
            audio = np.pad(audio, (0, samples - audio.size))  # a sound track a little shorter than the picture
            name = _clip_name(source, start_s, served.stride_frames / REGNET.fps)
            partial = clips_dir / f"{name}.partial.npz"
            np.savez(partial, **clip_record(source, start_s, features, audio))
            partial.replace(clips_dir / f"{name}.npz")
            record.clips.append(name)
        window += 1
    if not record.clips:
        record.skipped = f"too short: under --min-seconds {options.min_seconds:g}"
    return record


# ------------------------------------------------------------------------------------------ the run
def build_dataset(options: DatasetOptions) -> dict:
    """Every source file -> clips (resuming where an earlier run stopped); writes and returns dataset.json."""
    import tritonclient.grpc as grpcclient

    from s2s.client.triton import S2SClient

    sources = list_sources(options)
    if not sources:
        raise S2SError(f"{options.source}: no files to make a dataset of")
    clips_dir, files_dir = options.output / "clips", options.output / "files"
    clips_dir.mkdir(parents=True, exist_ok=True)
    files_dir.mkdir(parents=True, exist_ok=True)
    with S2SClient(options.url, admin_key=options.admin_key()) as client:
        if not client.ready():
            raise S2SError(f"no Triton server ready at {options.url}")
        served = client.preprocess_options(fallback=False)
    todo = [s for s in sources if not (files_dir / f"{s.key}.json").exists()]
    _check_revision(options.output, [s for s in sources if s not in todo], served.inputs_revision)
    log.info("%d source files, %d to do (%s)", len(sources), len(todo), options.source)
    progress = Progress(len(sources), "dataset", len(sources) - len(todo))
    local = threading.local()
    lock = threading.Lock()

    def one(source: SourceFile) -> None:
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(options.url)
        record = extract_file(local.client, source, options, clips_dir, served)
        partial = files_dir / f"{source.key}.partial"
        partial.write_text(json.dumps(asdict(record)) + "\n")
        partial.replace(files_dir / f"{source.key}.json")
        with lock:
            progress.update(note=f"{source.name}: {len(record.clips)} clips" if record.clips else source.name)

    with ThreadPoolExecutor(options.concurrency) as pool:
        for future in [pool.submit(one, s) for s in todo]:
            future.result()  # a server that stops answering stops the run here; a rerun goes on
    return write_summary(options, sources, served)


def _check_revision(output: Path, done: list[SourceFile], served: int) -> None:
    """A dataset goes on only through a server that computes the inputs its clips hold."""
    for source in done:
        record = json.loads((output / "files" / f"{source.key}.json").read_text())
        revision = _revision(record)
        if record["clips"] and revision != served:
            raise OptionError(
                f"{output}: its clips (e.g. of {source.name}) hold generator inputs of revision {revision}, the "
                f"server computes revision {served} (s2s.repository.INPUTS_REVISION): make the dataset into a new "
                "--output"
            )


def _revision(record: dict) -> int:
    """The inputs' revision a dataset.json or a file record says its clips hold."""
    return int(record.get("inputs_revision", UNRECORDED_REVISION))


def write_summary(options: DatasetOptions, sources: list[SourceFile], served: PreprocessOptions) -> dict:
    records = [json.loads((options.output / "files" / f"{s.key}.json").read_text()) for s in sources]
    splits = {split: [] for split in SPLITS}
    for source, record in zip(sources, records, strict=True):
        splits[source.split] += record["clips"]
    summary = {
        "source": str(options.source), "url": options.url, "window_frames": served.window_frames,
        "overlap_frames": served.overlap_frames, "fps": REGNET.fps, "flow_method": served.flow_method,
        "inputs_revision": served.inputs_revision,
        "sample_rate": REGNET.sample_rate, "min_seconds": options.min_seconds, "files": len(sources),
        "clips": {k: len(v) for k, v in splits.items()}, "splits": splits,
        "skipped": [{"source": r["source"], "reason": r["skipped"]} for r in records if r["skipped"]],
        "encoders": _encoders(options.model_repository),
    }  # fmt: skip
    (options.output / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _encoders(repository: Path | None) -> dict:
    """Which encoder weights made the features: the served repository's manifest entries, when given."""
    if repository is None:
        return {}
    manifest = json.loads((Path(repository) / MANIFEST).read_text())
    return {name: {k: manifest["models"][name].get(k) for k in ("sha256", "source", "format")}
            for name in ("tsn_rgb", "tsn_flow")}  # fmt: skip


def clip_paths(dataset: Path, split: str) -> list[Path]:
    """The clip files of one split of a dataset made by :func:`build_dataset`."""
    summary = json.loads((Path(dataset) / "dataset.json").read_text())
    if split not in summary["splits"]:
        raise OptionError(f"{dataset}: no split {split!r} (has {', '.join(summary['splits'])})")
    return [Path(dataset) / "clips" / f"{name}.npz" for name in summary["splits"][split]]


def inputs_revision(dataset: Path) -> int:
    """The revision of the served inputs a dataset's clips hold (s2s.repository.INPUTS_REVISION; UNRECORDED_REVISION
    for a dataset made before ``s2s dataset`` recorded it)."""
    return _revision(json.loads((Path(dataset) / "dataset.json").read_text()))


def encoder_fingerprints(dataset: Path) -> dict[str, str]:
    """The fingerprints (s2s.models.checkpoints.state_fingerprint) of the encoders that made a dataset's
    features, rebuilt from the served repository's manifest records: seeded encoders always, checkpoint
    ones when the checkpoint is found at its recorded path. What is not known is left out (logged): the
    generator trained on it then carries no pairing check for that encoder."""
    from s2s.models.bninception import TSNEncoder, build_bninception
    from s2s.models.checkpoints import state_fingerprint

    records = json.loads((Path(dataset) / "dataset.json").read_text()).get("encoders") or {}
    channels = {"tsn_rgb": 3, "tsn_flow": 2}
    out = {}
    for name, record in sorted(records.items()):
        source = record.get("source") or {}
        checkpoint = source.get("checkpoint")
        if checkpoint is None and "seed" in source:
            out[name] = state_fingerprint(TSNEncoder(build_bninception(channels[name], None, seed=int(source["seed"]))))
        elif checkpoint is not None and Path(checkpoint).is_file():
            out[name] = state_fingerprint(TSNEncoder(build_bninception(channels[name], Path(checkpoint))))
        else:
            log.warning("%s: the weights of %s (%s) are not here: no pairing record for it", dataset, name, source)
    if not records:
        log.warning("%s records no encoders (made without --model-repository): no pairing record", dataset)
    return out
