"""The embedded Triton Inference Server: the `tritonserver` binary of the nvidia-pytriton wheel.

The wheel carries a real Triton 2.51.0 server with the Python backend only. We make the model
repository's `backend: "onnxruntime"` models load anyway by preparing a backend directory in which
`onnxruntime/model.py` is a *Python-based backend* (Triton's own mechanism: a backend folder holding a
`model.py`, served by the Python backend's `libtriton_python.so`) that runs `model.onnx` with the
onnxruntime package. In production the NGC image's native onnxruntime backend serves the very same
repository.

Layout prepared by :func:`prepare_backend_dir`::

    <backend-dir>/python/libtriton_python.so           real copies: Triton refuses backend paths
    <backend-dir>/python/triton_python_backend_utils.py that resolve outside the backend directory
    <backend-dir>/python/triton_python_backend_stub     stub built for the running Python (3.x)
    <backend-dir>/onnxruntime/model.py                  -> s2s.runtime.ort_backend.TritonPythonModel
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from s2s.errors import S2SError

#: Name of the Python-based backends we provide, mapped to the module that implements each.
PYTHON_BASED_BACKENDS: dict[str, str] = {"onnxruntime": "s2s.runtime.ort_backend"}

_SHIM = '''"""Python-based Triton backend "{name}", prepared by s2s (do not edit: regenerated per server)."""

from {module} import TritonPythonModel  # noqa: F401
'''


class EmbeddedTritonNotFoundError(S2SError, RuntimeError):
    """The nvidia-pytriton wheel (which carries the tritonserver binary) is not installed."""


@dataclass(frozen=True)
class EmbeddedTriton:
    """Paths of the server pieces shipped in the nvidia-pytriton wheel."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    @property
    def libs(self) -> Path:
        """Shared libraries the wheel's binaries find through a relative RPATH (lost on copies)."""
        return self.root.parent.parent / "nvidia_pytriton.libs"

    def stub(self, python_version: str | None = None) -> Path:
        """The Python-backend stub built for ``python_version`` (default: the running Python)."""
        version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
        path = self.root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not path.is_file():
            available = sorted(p.name for p in (self.root / "python_backend_stubs").iterdir())
            raise EmbeddedTritonNotFoundError(
                f"no Triton Python-backend stub for Python {version} in {path.parent.parent} "
                f"(available: {', '.join(available)})"
            )
        return path


def locate() -> EmbeddedTriton:
    """Find the tritonserver shipped with nvidia-pytriton, or raise with the install hint."""
    try:
        import pytriton
    except ImportError as exc:
        raise EmbeddedTritonNotFoundError(
            "the embedded Triton server needs the nvidia-pytriton wheel: pip install 'nvidia-pytriton==0.7.0' "
            "(or `make setup`)"
        ) from exc
    root = Path(pytriton.__file__).parent / "tritonserver"
    triton = EmbeddedTriton(root)
    if not os.access(triton.binary, os.X_OK):
        raise EmbeddedTritonNotFoundError(f"tritonserver binary missing or not executable: {triton.binary}")
    return triton


def prepare_backend_dir(target: Path, triton: EmbeddedTriton | None = None) -> Path:
    """Fill ``target`` with the Python backend and our Python-based backends; returns ``target``."""
    triton = triton or locate()
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(triton.python_backend / name, python_dir / name)
    shutil.copy2(triton.stub(), python_dir / "triton_python_backend_stub")
    for name, module in PYTHON_BASED_BACKENDS.items():
        backend = target / name
        backend.mkdir(exist_ok=True)
        (backend / "model.py").write_text(_SHIM.format(name=name, module=module))
    return target


def server_environment(triton: EmbeddedTriton | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver so that its Python stubs run *this* interpreter's environment.

    The stub embeds libpython and finds its prefix (and so site-packages) through the first
    ``python3`` on PATH; we put this interpreter's bin/ first. Where this Python is a shared build,
    its libpython goes first on LD_LIBRARY_PATH so the stub loads the exact matching library. The
    copied stub no longer finds the wheel's bundled libraries through its relative RPATH, so those
    go on LD_LIBRARY_PATH too.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]).rstrip(os.pathsep)
    libs = []
    libdir = sysconfig.get_config_var("LIBDIR")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir:
        libs.append(libdir)
    if triton is not None:
        libs.append(str(triton.libs))
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    env.setdefault("PYTHONUNBUFFERED", "1")  # model logs reach the server log as they happen
    return env
