"""Send a video to the ``s2s`` ensemble over gRPC (default) or HTTP with tritonclient."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from s2s.constants import REGNET
from s2s.errors import OptionError, S2SError
from s2s.repository import ENSEMBLE, PREPROCESS

PROTOCOLS = ("grpc", "http")


class ClientError(S2SError, RuntimeError):
    """The server could not be reached or refused the request; the message is the server's."""


@dataclass
class Generated:
    waveform: np.ndarray  #: float32 (samples,), REGNET.sample_rate Hz, the video's duration
    mel: np.ndarray  #: float32 (80, frames) in [0, 1]
    seconds: float  #: wall time of the request(s)
    windows: int = 0  #: windows of the whole video
    #: where this sound starts in the whole video's (sample, mel frame): non-zero for a range of windows
    #: after the first; ranges overlap where their windows do and join by adding (:func:`join`)
    offset: tuple[int, int] = (0, 0)

    @property
    def duration_s(self) -> float:
        return self.waveform.size / REGNET.sample_rate


def default_url(protocol: str) -> str:
    return "localhost:8001" if protocol == "grpc" else "localhost:8000"


class S2SClient:
    """A thin client for the ensemble; one instance per thread for HTTP (tritonclient's HTTP is gevent-based)."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "grpc",
        model: str = ENSEMBLE,
        timeout_s: float = 900.0,
        admin_key: str | None = None,
    ) -> None:
        """``admin_key``: the server's admin key, for what sits behind it (the served preprocess options)."""
        if protocol not in PROTOCOLS:
            raise OptionError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        self.url = url or default_url(protocol)
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self._module = module
        kwargs = {} if protocol == "grpc" else {"connection_timeout": 30.0, "network_timeout": timeout_s}
        self._client = module.InferenceServerClient(self.url, **kwargs)
        self._config_kwargs = {"as_json": True} if protocol == "grpc" else {}
        if admin_key:
            from s2s.runtime.server import admin_headers

            self._config_kwargs["headers"] = admin_headers(admin_key, protocol)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> S2SClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except (InferenceServerException, OSError, ConnectionError):
            return False

    def preprocess_options(self, fallback: bool = True):
        """The served preprocess step's options (s2s.windowing.PreprocessOptions: window and overlap frames, ...);
        the defaults if they cannot be read and ``fallback``, else a ClientError: model configs are an admin API,
        readable with the server's admin key."""
        from tritonclient.utils import InferenceServerException

        from s2s.windowing import PreprocessOptions

        try:
            config = self._client.get_model_config(PREPROCESS, **self._config_kwargs)
            config = config["config"] if self.protocol == "grpc" else config
            return PreprocessOptions.from_model_config(config)
        except (InferenceServerException, S2SError, KeyError, TypeError, ValueError) as exc:
            if fallback:
                return PreprocessOptions()
            if isinstance(exc, S2SError):  # read, but exported by another version of s2s
                raise ClientError(f"the served preprocess options at {self.url}: {exc}") from None
            raise ClientError(
                f"cannot read the served preprocess options at {self.url} ({exc}): pass the server's admin key"
            ) from None

    def generate(
        self,
        video: bytes,
        progress: Callable[[float], None] | None = None,
        window_start: int | None = None,
        window_count: int | None = None,
        duration_s: float | None = None,
    ) -> Generated:
        """Run the ensemble on an encoded video or a still image; ``progress(elapsed_s)`` is called about once
        a second.

        ``window_start`` / ``window_count`` ask for a range of the video's windows only; ``duration_s``: the
        seconds of sound for a still image (the server's default when None).
        """
        from tritonclient.utils import InferenceServerException

        inputs, outputs = request_tensors(self._module, video, window_start, window_count, duration_s)
        done = threading.Event()
        start = time.monotonic()
        ticker = None
        if progress is not None:

            def tick() -> None:
                while not done.wait(1.0):
                    progress(time.monotonic() - start)

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        try:
            if self.protocol == "grpc":
                result = self._client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
            else:
                result = self._client.infer(self.model, inputs, outputs=outputs)
        except InferenceServerException as exc:
            raise ClientError(server_message(exc)) from None
        except (OSError, ConnectionError) as exc:
            raise ClientError(f"cannot reach Triton at {self.url} ({self.protocol}): {exc}") from None
        finally:
            done.set()
            if ticker is not None:
                ticker.join(timeout=2)
        return generated(result, time.monotonic() - start)

    def generate_by_windows(
        self,
        video: bytes,
        chunk: int = 1,
        on_window: Callable[[int, int], None] | None = None,
        duration_s: float | None = None,
    ) -> Generated:
        """The whole video, ``chunk`` windows per request; ``on_window(done, total)`` after each request.

        The pieces join into exactly what one request for the whole video returns.
        """
        start, plan = time.monotonic(), WindowPlan(chunk)
        while (request := plan.next()) is not None:
            plan.add(self.generate(video, window_start=request[0], window_count=request[1], duration_s=duration_s))
            if on_window is not None:
                on_window(plan.done, plan.total)
        return plan.joined(time.monotonic() - start)


class WindowPlan:
    """The requests that cover a whole video ``chunk`` windows at a time, and their pieces joined.

    The one window-by-window loop, whatever does the requests (the blocking client here, the gateway's
    async runner): the total is known from the first answer on.

        plan = WindowPlan(chunk)
        while (request := plan.next()) is not None:      # (window_start, window_count)
            plan.add(infer(video, *request))
        result = plan.joined(seconds)
    """

    def __init__(self, chunk: int = 1) -> None:
        if chunk < 1:
            raise OptionError(f"windows per request must be >= 1, got {chunk}")
        self.chunk, self.done, self.total = chunk, 0, None
        self.pieces: list[Generated] = []

    def next(self) -> tuple[int, int] | None:
        """The next request's (window_start, window_count), or None when every window is done."""
        if self.total is not None and self.done >= self.total:
            return None
        return self.done, self.chunk

    def add(self, piece: Generated) -> None:
        self.pieces.append(piece)
        self.total = piece.windows
        self.done = min(self.done + self.chunk, self.total)

    def joined(self, seconds: float) -> Generated:
        return join(self.pieces, seconds)


def request_tensors(
    module, video: bytes, window_start: int | None, window_count: int | None, duration_s: float | None = None
) -> tuple[list, list]:
    """Inputs and requested outputs of one ensemble request (``module``: tritonclient.grpc, .http or .grpc.aio)."""
    from tritonclient.utils import np_to_triton_dtype

    if not video:
        raise ClientError("empty video: nothing to send")
    data = np.frombuffer(video, dtype=np.uint8)
    tensor = module.InferInput("video", [data.size], "UINT8")
    tensor.set_data_from_numpy(data)
    inputs = [tensor]
    optional = (("window_start", window_start, np.int32), ("window_count", window_count, np.int32),
                ("duration_s", duration_s, np.float32))  # fmt: skip
    for name, value, dtype in optional:
        if value is not None:
            extra = module.InferInput(name, [1], np_to_triton_dtype(dtype))
            extra.set_data_from_numpy(np.array([value], dtype=dtype))
            inputs.append(extra)
    return inputs, [module.InferRequestedOutput(name) for name in ("waveform", "mel", "offset", "windows")]


def generated(result, seconds: float) -> Generated:
    windows = int(result.as_numpy("windows").reshape(-1)[0])
    offset = tuple(int(v) for v in result.as_numpy("offset").reshape(-1)[:2])
    return Generated(result.as_numpy("waveform"), result.as_numpy("mel"), seconds, windows, offset)


def join(pieces: list[Generated], seconds: float) -> Generated:
    """Window ranges of one video -> the whole video's result (added at their offsets, where they overlap)."""
    from s2s.windowing import join_ranges

    waveform, mel = join_ranges([(p.waveform, p.mel, p.offset) for p in pieces])
    return Generated(waveform, mel, seconds, pieces[0].windows)


def rejected_input(exc: Exception) -> str | None:
    """preprocess's own words when Triton refused the input itself (INVALID_ARG: the video is the problem,
    sending it again will not help); None for any other failure."""
    status = str(getattr(exc, "status", lambda: "")() or "")
    if "INVALID_ARG" in status or "INVALID_ARG" in server_message(exc):
        text = getattr(exc, "message", None)
        return text() if callable(text) else server_message(exc)
    return None


def server_message(exc: Exception) -> str:
    """The useful part of a tritonclient exception (its message, without the class noise)."""
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    status = getattr(exc, "status", None)
    code = status() if callable(status) else None
    return f"{text} [{code}]" if code else text
