"""PyTorch -> ONNX for the model repository, with a manifest of where every artifact came from."""

from __future__ import annotations

import datetime
import json
import logging
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch

from s2s import __version__
from s2s.export.specs import ExportOptions, ModelExport, build_exports
from s2s.export.tensorrt import TensorRTProfile, build_plan, build_plan_cached
from s2s.export.triton_config import (
    ServingOptions,
    check_noise_period,
    model_config,
    read_preprocess_options,
    write_pipeline,
)
from s2s.models.checkpoints import file_sha256
from s2s.models.regnet import regnet_config
from s2s.repository import MANIFEST, MODEL_NAMES, PREPROCESS, generator_inputs
from s2s.runtime.ort_backend import WARNING_METADATA_KEY
from s2s.windowing import PreprocessOptions

log = logging.getLogger(__name__)

#: Fixed ONNX opset of every exported graph.
OPSET = 17


def export_onnx(export: ModelExport, path: Path, example_frames: int = 8) -> Path:
    """Trace ``export.module`` on small examples (2 windows) and write a named, dynamic-axes ONNX graph."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    examples = export.examples(windows=2, frames=example_frames)
    dynamic_axes = {t.name: t.dynamic_axes() for t in export.inputs + export.outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and LSTM batch notes
        torch.onnx.export(
            export.module, examples, str(path),
            input_names=[t.name for t in export.inputs], output_names=[t.name for t in export.outputs],
            dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    model = onnx.load(str(path))
    metadata = {"s2s_model": export.name, "s2s_version": __version__, "s2s_source": json.dumps(export.source)}
    if export.warning:
        metadata[WARNING_METADATA_KEY] = export.warning
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = export.description
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def export_repository(
    repository: Path,
    options: ExportOptions | None = None,
    serving: ServingOptions | None = None,
    names: tuple[str, ...] | None = None,
    trt_profile: TensorRTProfile | None = None,
    preprocess: PreprocessOptions | None = None,
    trt_cache: Path | None = None,
    windows: PreprocessOptions | None = None,
) -> dict:
    """Export the requested models into ``repository`` (artifacts + configs) and update the manifest.

    ``names`` None: every network, and the Python steps (preprocess, postprocess) and the ``s2s``
    ensemble with ``preprocess`` (default options), so the repository serves the whole chain. A subset
    of ``names`` writes just those networks, and the steps only if ``preprocess`` is given. The
    preprocess noise width (``z_dim``) is always the exported generator's. ``trt_cache`` (format
    tensorrt): a device's plan cache directory (see :func:`s2s.export.tensorrt.local_device_key`). The networks
    are exported for the windows of ``preprocess``, else ``windows`` (the windows they will be served in where no
    preprocess step is written), else the repository's preprocess step, else the default windows: the iSTFT vocoder
    reads its noise by their stride.
    """
    repository = Path(repository)
    options, serving = options or ExportOptions(), serving or ServingOptions()
    if preprocess is None and names is None:
        preprocess = PreprocessOptions()
    names = MODEL_NAMES if names is None else names
    manifest_path = repository / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    served = (repository / PREPROCESS / "config.pbtxt").exists()  # then the windows it serves are the fallback
    windows = preprocess or windows or (read_preprocess_options(repository) if served else None)
    if preprocess is not None and "vocoder" not in names:
        check_noise_period(manifest, preprocess, repository)
    exports = build_exports(options, names, windows=windows)
    for export in exports:
        start = time.monotonic()
        version_dir = repository / export.name / "1"
        onnx_path = export_onnx(export, version_dir / "model.onnx")
        artifact = onnx_path
        if serving.format == "tensorrt" and trt_cache is not None:
            artifact, _ = build_plan_cached(onnx_path, version_dir / "model.plan", export, trt_profile, trt_cache)
        elif serving.format == "tensorrt":
            artifact = build_plan(onnx_path, version_dir / "model.plan", export, trt_profile)
        (repository / export.name / "config.pbtxt").write_text(model_config(export, serving))
        manifest["models"][export.name] = {
            "file": str(artifact.relative_to(repository)),
            "sha256": file_sha256(artifact),
            "bytes": artifact.stat().st_size,
            "format": serving.format,
            "opset": OPSET,
            "parameters": export.parameters,
            "source": export.source,
            "description": export.description,
            "noise_weights": export.warning is not None,
            **export.extra,
        }
        log.info("exported %s (%d parameters) in %.1f s -> %s", export.name, export.parameters,
                 time.monotonic() - start, artifact)  # fmt: skip
    if preprocess is not None:
        preprocess = replace(preprocess, z_dim=_generator_z_dim(manifest, options))
        write_pipeline(repository, serving, preprocess, generator_inputs(manifest))
        manifest["preprocess"] = asdict(preprocess)
    manifest.update(
        {
            "s2s_version": __version__,
            "torch": torch.__version__,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "serving": asdict(serving),
        }
    )
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _generator_z_dim(manifest: dict, options: ExportOptions) -> int:
    """The exported generator's noise width (the preprocess step draws z of that width)."""
    entry = manifest["models"].get("generator")
    if entry and "z_dim" in entry:
        return int(entry["z_dim"])
    return regnet_config(options.generator_config).random_z_dim
