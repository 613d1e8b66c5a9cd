"""The s2s gateway: a FastAPI service and web page in front of Triton. It never loads a model itself.

Upload a silent video (``POST /v1/jobs``), follow its progress (``GET /v1/jobs/{id}`` or the
server-sent events at ``/v1/jobs/{id}/events``), download the video with sound (``/video``), the
sound alone (``/audio``) or its mel spectrogram as a picture (``/spectrogram``, PNG).
``POST /v1/generate`` does it in one call for small files. Jobs live in a directory the gateway owns,
so finished results survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from s2s import __version__
from s2s.errors import OptionError
from s2s.flags import flag, format_size, parse_size
from s2s.gateway.audit import audit
from s2s.gateway.audit import configure as configure_audit
from s2s.gateway.auth import ANONYMOUS, Caller, KeyRing, Quota, read_secret, same_secret
from s2s.gateway.jobs import Job, StoreUnavailableError, open_store
from s2s.gateway.metrics import GatewayMetrics
from s2s.gateway.quotas import Admission, QuotaError
from s2s.gateway.runner import (
    UNAVAILABLE,
    JobRunner,
    QueueFullError,
    RunnerSettings,
    TritonGateway,
    TritonRejectedError,
    TritonUnavailableError,
)
from s2s.gateway.uploads import FIELD, Upload, UploadRejectedError, receive_upload

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

#: content types accepted for uploads (browsers report these for the containers PyAV reads): videos, and still
#: images, which become a video of that picture with sound
VIDEO_TYPES = (
    "video/mp4", "video/webm", "video/quicktime", "video/x-msvideo", "video/avi", "video/x-matroska",
    "video/mpeg", "video/ogg", "video/3gpp", "video/x-flv", "image/gif", "application/octet-stream",
    "image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff",
)  # fmt: skip
#: the ``duration`` query parameter of the upload endpoints: seconds of sound for a still image
STILL_DURATION = Query(
    None, gt=0, le=3600, description="seconds of sound for a still image (default: the server's, one 10 s window); "
    "refused for a video, whose sound lasts as long as it does",
)  # fmt: skip


_MAX_UPLOAD = 256 * 1024 * 1024
_KEY_DISK = 5 * 1024**3
#: on every response: no MIME sniffing, no framing, no referrer leaks
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: the page and the API load nothing from elsewhere (the page plays results it fetched as blobs)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; media-src 'self' blob:; img-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
#: the API docs: Swagger UI from the package (no CDN), started by an inline script
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class GatewaySettings:
    """Settings with their environment variables (flags of `s2s gateway` override them)."""

    triton_url: str = flag(
        name="--triton-url", help="Triton gRPC address", shown="$S2S_TRITON_URL or localhost:8001",
        default_factory=lambda: os.environ.get("S2S_TRITON_URL", "localhost:8001"),
    )  # fmt: skip
    data_dir: Path = flag(
        name="--data-dir", help="jobs and results", shown="$S2S_GATEWAY_DATA or ./gateway-data", type=Path,
        default_factory=lambda: Path(os.environ.get("S2S_GATEWAY_DATA", "gateway-data")),
    )  # fmt: skip
    max_upload_bytes: int = flag(
        _MAX_UPLOAD, "--max-upload", "largest upload", type=parse_size, shown=format_size(_MAX_UPLOAD)
    )
    sync_max_bytes: int = 32 * 1024 * 1024
    allowed_types: tuple[str, ...] = VIDEO_TYPES
    store: str = flag(
        name="--store", shown="$S2S_GATEWAY_STORE or the data dir",
        help="where job records and the queue live: empty for job.json files in --data-dir (one gateway), or a "
        "postgresql:// URL (any number of gateways sharing --data-dir on one volume)",
        default_factory=lambda: os.environ.get("S2S_GATEWAY_STORE", ""),
    )  # fmt: skip
    workers: int = flag(2, "--workers", "jobs this gateway works on at once")
    max_queued: int = flag(8, "--max-queued", "jobs waiting in the queue; more get 429")
    windows_per_request: int = flag(1, "--windows-per-request", "windows per Triton request")
    windows_per_job: int = flag(2, "--windows-per-job", "window requests of one job in flight at once")
    windows_in_flight: int = flag(4, "--windows-in-flight", "window requests of this gateway in flight at once")
    retry_budget_s: float = flag(
        120.0, "--retry-budget", "seconds a window is sent again (with backoff) while Triton is unavailable"
    )
    cancel_in_flight: bool = flag(
        False, "--cancel-in-flight", "cancel the gRPC calls of a deleted job or a departed client (Triton >= 24.12, "
        "as in the production image; older servers, the embedded one included, can crash on a cancelled call)",
    )  # fmt: skip
    lease_s: float = flag(30.0, "--lease", "seconds without a sign of life before another gateway takes a job over")
    drain_s: float = flag(20.0, "--drain", "seconds a stopping gateway lets windows in flight finish before it "
                          "hands their jobs back")  # fmt: skip
    max_sync: int = flag(2, "--max-sync", "synchronous /v1/generate requests at once; more get 429")
    api_keys: Path | None = flag(
        name="--api-keys", type=Path, shown="$S2S_GATEWAY_API_KEYS",
        help="file of API keys, stored hashed, one per line (make them with `s2s gateway-key`); reread when it "
        "changes, so keys rotate without a restart",
        default_factory=lambda: Path(os.environ["S2S_GATEWAY_API_KEYS"]) if os.environ.get("S2S_GATEWAY_API_KEYS")
        else None,
    )  # fmt: skip
    no_auth: bool = flag(False, "--no-auth", "serve without authentication or per-key quotas (local use only)")
    metrics_key_file: Path | None = flag(
        None, "--metrics-key-file", "file holding the one key that may read /metrics (default: any API key)",
        type=Path,
    )  # fmt: skip
    key_jobs: int = flag(2, "--key-jobs", "unfinished jobs per key at once, synchronous requests included")
    key_rate: float = flag(10.0, "--key-rate", "new jobs per minute per key")
    key_disk: int = flag(
        _KEY_DISK, "--key-disk", "uploads and results stored per key", type=parse_size, shown=format_size(_KEY_DISK)
    )
    audit_log: Path | None = flag(None, "--audit-log", "append the audit log (JSON lines) here (default: stderr)",
                                  type=Path)  # fmt: skip
    result_ttl_h: float = flag(24.0, "--result-ttl", "hours results are kept")
    expiry_interval_s: float = 300.0
    triton_timeout_s: float = 900.0
    retry_after_s: int = 10
    max_event_streams: int = 64  #: progress streams (SSE) open at once; more get 429
    event_stream_s: float = 900.0  #: a progress stream ends after this (the browser's EventSource reconnects)

    @property
    def result_ttl_s(self) -> float:
        return self.result_ttl_h * 3600.0

    @property
    def key_quota(self) -> Quota:
        """The bounds of a key whose line in the keys file sets none of its own."""
        return Quota(self.key_jobs, self.key_rate, self.key_disk)

    def keyring(self) -> KeyRing | None:
        """The API keys (None with ``--no-auth``); :class:`OptionError` when neither is given."""
        if self.no_auth:
            if self.api_keys is not None:
                raise OptionError("--no-auth and --api-keys contradict each other: choose one")
            return None
        if self.api_keys is None:
            raise OptionError(
                "the gateway needs API keys: --api-keys FILE (or $S2S_GATEWAY_API_KEYS; make keys with "
                "`s2s gateway-key ID --keys-file FILE`), or --no-auth for local use"
            )
        return KeyRing(self.api_keys, self.key_quota)


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable reason, e.g. too_large, invalid_video, triton_unavailable")
    message: str = Field(description="what was wrong, in words")
    retryable: bool = False


class ErrorResponse(BaseModel):
    error: ErrorBody


class JobView(BaseModel):
    id: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    progress: float = Field(description="windows done / windows total, 0..1")
    windows_done: int
    windows_total: int | None = Field(description="10 s windows of the video (known after the first one)")
    created_at: float
    updated_at: float
    finished_at: float | None
    filename: str = Field(description="the uploaded file's name, for display")
    size_bytes: int
    duration_s: float | None = Field(description="seconds of sound produced (= the video's duration)")
    still_duration_s: float | None = Field(None, description="seconds of sound asked for a still image")
    processing_s: float | None
    video_copied: bool | None = Field(description="video stream copied as is (false: re-encoded)")
    retries: int = Field(description="window requests sent again while the inference server was unavailable")
    takeovers: int = Field(description="times the job went on after its gateway stopped or died")
    error: ErrorBody | None
    links: dict[str, str]


def _error(status: int, code: str, message: str, retryable: bool = False, retry_after: int | None = None):
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    body = {"error": {"code": code, "message": message, "retryable": retryable}}
    return JSONResponse(status_code=status, content=body, headers=headers)


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str, retryable: bool = False, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retryable, self.retry_after = (
            status, code, message, retryable, retry_after,
        )  # fmt: skip


def view(job: Job) -> dict:
    data = job.public()
    error = data.pop("error")
    data["error"] = {k: error[k] for k in ("code", "message", "retryable")} if error else None
    base = f"/v1/jobs/{job.id}"
    data["links"] = {"self": base, "events": f"{base}/events"}
    if job.status == "done":
        data["links"].update(video=f"{base}/video", audio=f"{base}/audio", spectrogram=f"{base}/spectrogram")
    return {k: data[k] for k in JobView.model_fields}


def upload_body(description: str) -> dict:
    """OpenAPI for a multipart request body with one file field (the handlers stream it themselves)."""
    schema = {"type": "object", "required": [FIELD],
              "properties": {FIELD: {"type": "string", "format": "binary", "description": description}}}  # fmt: skip
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


class HeadersAndMetrics:
    """Security headers on every response, and the request counter by route and status.

    Plain ASGI: Starlette's BaseHTTPMiddleware would hide a client's disconnect from the handlers (seen:
    ``request.is_disconnected()`` never turned true under it), and cancelling the work of a client that
    left depends on seeing it.
    """

    def __init__(self, app, metrics: GatewayMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        policy = DOCS_CONTENT_SECURITY_POLICY if scope["path"] == "/docs" else CONTENT_SECURITY_POLICY

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = MutableHeaders(scope=message)
                for header, value in SECURITY_HEADERS.items():
                    headers.setdefault(header, value)
                headers.setdefault("Content-Security-Policy", policy)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()


class ClientGoneError(Exception):
    """The client of a synchronous request went away; no further window of it is sent."""


async def until_disconnected(request: Request, work, poll_s: float = 0.5):
    """Await ``work`` (a coroutine), cancelling it as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait([task], timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise ClientGoneError
    finally:
        if not task.done():
            task.cancel()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    keyring = settings.keyring()
    metrics_key = read_secret(settings.metrics_key_file) if settings.metrics_key_file else None
    configure_audit(settings.audit_log)
    store = open_store(settings.store, settings.data_dir)
    admission = Admission(store, settings.max_sync, settings.retry_after_s)
    metrics = GatewayMetrics()
    runner_settings = RunnerSettings(
        triton_url=settings.triton_url, workers=settings.workers, max_queued=settings.max_queued,
        windows_per_request=settings.windows_per_request, windows_per_job=settings.windows_per_job,
        windows_in_flight=settings.windows_in_flight, timeout_s=settings.triton_timeout_s,
        retry_budget_s=settings.retry_budget_s, lease_s=settings.lease_s, cancel_in_flight=settings.cancel_in_flight,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if store.resumed:
            log.warning("%d job(s) a previous gateway left running go on from their finished windows",
                        len(store.resumed))  # fmt: skip
        store.expire(settings.result_ttl_s)
        triton = TritonGateway(runner_settings)
        runner = JobRunner(store, triton, metrics, runner_settings)
        runner.start()
        app.state.triton, app.state.runner = triton, runner

        async def expire_forever() -> None:
            while True:
                await asyncio.sleep(settings.expiry_interval_s)
                store.expire(settings.result_ttl_s)

        expiry = asyncio.create_task(expire_forever())
        try:
            yield
        finally:
            expiry.cancel()
            await runner.stop(settings.drain_s)
            await triton.close()
            store.close()

    app = FastAPI(
        title="s2s gateway",
        version=__version__,
        description="Turn a silent video into a video with sound that follows the picture. The models (TSN "
        "BN-Inception RGB and flow encoders, the RegNet spectrogram generator, a MelGAN/HiFi-GAN vocoder) run "
        "in NVIDIA Triton Inference Server as the `s2s` ensemble; this gateway only uploads, tracks and muxes.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own Swagger UI copy: no CDN, works offline
        redoc_url=None,
    )
    app.state.settings, app.state.store, app.state.metrics = settings, store, metrics
    app.state.event_streams = 0
    responses = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503)}

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError):
        response = _error(exc.status, exc.code, exc.message, exc.retryable, exc.retry_after)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(QuotaError)
    async def quota_error(_request: Request, exc: QuotaError):
        return _error(exc.status, exc.code, exc.message, exc.status == 429, exc.retry_after or None)

    @app.exception_handler(StoreUnavailableError)
    async def store_unavailable(_request: Request, exc: StoreUnavailableError):
        log.warning("job store unavailable: %s", exc)
        return _error(503, "store_unavailable", "the job store is not answering; try again shortly", True,
                      settings.retry_after_s)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404/405
    async def http_error(_request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(400, "bad_request", f"invalid request: {fields}")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        log.error("unhandled error", exc_info=exc)
        return _error(500, "internal", f"internal error: {type(exc).__name__}")

    app.add_middleware(HeadersAndMetrics, metrics=metrics)

    bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")

    async def presented_key(
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),
        header: str | None = Security(api_key_header),
    ) -> str | None:
        """The key a request carries (either header), if any."""
        return credentials.credentials if credentials else header

    async def authenticate(request: Request, key: str | None = Depends(presented_key)) -> Caller:
        """The caller of a request: its key's id and quota (the anonymous caller with ``--no-auth``)."""
        if keyring is None:
            return ANONYMOUS
        caller = keyring.lookup(key)
        if caller is None:
            reason = "no key" if not key else "unknown key"
            audit("auth.refused", "", reason=reason, path=request.url.path,
                  client=request.client.host if request.client else None)  # fmt: skip
            raise GatewayError(401, "unauthorized", "send a valid API key (Authorization: Bearer <key>)")
        return caller

    async def metrics_reader(request: Request, key: str | None = Depends(presented_key)) -> None:
        """/metrics: the metrics key if one is set (Prometheus holds it), else any API key."""
        if keyring is None:
            return
        if metrics_key is None:
            await authenticate(request, key)
        elif not same_secret(key, metrics_key):
            raise GatewayError(401, "unauthorized", "send the metrics key (Authorization: Bearer <key>)")

    def load(job_id: str, caller: Caller) -> Job:
        """The caller's job; another key's job is as unknown as a job that never was."""
        try:
            job = store.load(job_id)
        except KeyError:
            job = None
        if job is None or job.owner != caller.id:
            raise GatewayError(404, "not_found", f"no job {job_id!r} (unknown, deleted or expired)")
        return job

    def admit(request: Request, caller: Caller, limit: int, *, sync: bool = False):
        """Room for the request in its key's bounds (and the synchronous bound); refusals are audited."""
        declared = request.headers.get("content-length", "")
        nbytes = min(int(declared), limit) if declared.isdigit() else limit
        try:
            return admission.admit(caller, nbytes, sync=sync)
        except QuotaError as exc:
            audit("quota.refused", caller.id, code=exc.code, path=request.url.path)
            raise

    async def ensure_triton_ready() -> None:
        if app.state.runner.draining or not await app.state.triton.ready():
            raise GatewayError(
                503, "triton_unavailable", "the inference server is not ready; try again shortly",
                retryable=True, retry_after=settings.retry_after_s,
            )  # fmt: skip

    async def read_upload(request: Request, limit: int) -> Upload:
        """The request's video, streamed to a file under the data dir (never whole in memory)."""
        destination = store.uploads_dir / f"{store.new_id()}.partial"
        try:
            upload = await receive_upload(request, destination, limit=limit, allowed_types=settings.allowed_types)
        except UploadRejectedError as exc:
            raise GatewayError(exc.status, exc.code, exc.message) from None
        metrics.bytes_in.inc(upload.size)
        return upload

    @app.get("/healthz", tags=["health"], summary="Liveness: the gateway process answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the job store answers, Triton and the s2s ensemble are "
             "ready", responses={503: {"model": ErrorResponse}})  # fmt: skip
    async def readyz(triton: bool = True) -> dict:
        """``?triton=false``: the gateway's own readiness only (a Kubernetes readiness probe: results stay
        downloadable while Triton restarts)."""
        if app.state.runner.draining:
            raise GatewayError(503, "stopping", "this gateway is stopping", retryable=True,
                               retry_after=settings.retry_after_s)  # fmt: skip
        if not await asyncio.to_thread(store.ping):
            raise GatewayError(503, "store_unavailable", "the job store is not answering; try again shortly",
                               retryable=True, retry_after=settings.retry_after_s)  # fmt: skip
        if triton:
            await ensure_triton_ready()
        return {"status": "ready"}

    @app.post("/v1/jobs", status_code=202, response_model=JobView, tags=["jobs"], responses=responses,
              summary="Upload a video or a still image; returns a job to follow",
              openapi_extra=upload_body("a video (mp4, webm, mov, avi, mkv) or image (png, jpeg, webp)"))  # fmt: skip
    async def create_job(
        request: Request, caller: Caller = Depends(authenticate), duration: float | None = STILL_DURATION
    ):
        await ensure_triton_ready()
        if not app.state.runner.has_room():
            raise GatewayError(429, "busy", "too many jobs waiting; try again later", True, settings.retry_after_s)
        ticket = admit(request, caller, settings.max_upload_bytes)
        try:
            upload = await read_upload(request, settings.max_upload_bytes)
            job = Job(id=store.new_id(), owner=caller.id, filename=upload.filename,
                      content_type=upload.content_type, size_bytes=upload.size, still_duration_s=duration)  # fmt: skip
            store.create(job, upload.path)
            try:
                app.state.runner.submit(job)
            except QueueFullError as exc:
                store.delete(job.id)
                raise GatewayError(429, "busy", str(exc), True, settings.retry_after_s) from None
        finally:
            ticket.release()  # from here the job in the store counts against the key
        audit("job.created", caller.id, job=job.id, bytes=job.size_bytes)
        return view(job)

    @app.post("/v1/jobs/{job_id}/retry", status_code=202, response_model=JobView, tags=["jobs"], responses=responses,
              summary="Run a failed job again (a retryable failure); it goes on from its finished windows")  # fmt: skip
    async def retry_job(job_id: str, request: Request, caller: Caller = Depends(authenticate)):
        job = load(job_id, caller)
        if job.status != "failed" or job.error is None or not job.error.retryable or not store.has_input(job_id):
            why = "" if job.status != "failed" else ", and its failure is not one a retry can fix"
            raise GatewayError(409, "not_retryable", f"job {job_id} is {job.status}{why}")
        await ensure_triton_ready()
        if not app.state.runner.has_room():
            raise GatewayError(429, "busy", "too many jobs waiting; try again later", True, settings.retry_after_s)
        admit(request, caller, 0).release()  # the key's bounds (unfinished jobs, rate) apply as for a new job
        app.state.runner.retry(job)
        audit("job.retried", caller.id, job=job_id, windows_done=job.windows_done)
        return view(job)

    @app.get("/v1/me", tags=["jobs"], responses=responses,
             summary="The calling key: its id, its bounds and what it uses now")  # fmt: skip
    async def me(caller: Caller = Depends(authenticate)) -> dict:
        return {"key": caller.id or None, "auth": keyring is not None, "quota": caller.quota.describe(),
                "usage": admission.usage(caller)}  # fmt: skip

    @app.get("/v1/jobs/{job_id}", response_model=JobView, tags=["jobs"], responses=responses,
             summary="A job's status and progress")  # fmt: skip
    async def get_job(job_id: str, caller: Caller = Depends(authenticate)):
        return view(load(job_id, caller))

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], summary="Server-sent events: the job's status until it ends")
    async def job_events(job_id: str, request: Request, caller: Caller = Depends(authenticate)):
        load(job_id, caller)
        if app.state.event_streams >= settings.max_event_streams:
            raise GatewayError(429, "busy", "too many progress streams open; poll the job instead",
                               True, settings.retry_after_s)  # fmt: skip
        ends = time.monotonic() + settings.event_stream_s

        async def stream():  # counted while it runs: a stream that never starts holds no slot
            app.state.event_streams += 1
            try:
                async for event in job_states():
                    yield event
            finally:
                app.state.event_streams -= 1

        async def job_states():
            last = None
            while not await request.is_disconnected() and time.monotonic() < ends:
                try:
                    job = store.load(job_id)
                except KeyError:
                    yield "event: gone\ndata: {}\n\n"
                    return
                payload = json.dumps(view(job))
                if payload != last:
                    yield f"data: {payload}\n\n"
                    last = payload
                if job.finished:
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def result(job_id: str, caller: Caller, name: str, media_type: str, download: str) -> FileResponse:
        job = load(job_id, caller)
        if job.status != "done":
            raise GatewayError(409, "not_ready", f"job {job_id} is {job.status}, it has no result")
        path = store.path(job_id, name)
        if not path.exists():  # a job finished by an older gateway has no spectrogram
            raise GatewayError(404, "not_found", f"job {job_id} has no {name}")
        metrics.bytes_out.inc(path.stat().st_size)
        return FileResponse(path, media_type=media_type, filename=download)

    @app.get("/v1/jobs/{job_id}/video", tags=["results"], responses=responses,
             summary="The video with its new sound (mp4)")  # fmt: skip
    async def job_video(job_id: str, caller: Caller = Depends(authenticate)):
        return result(job_id, caller, "video.mp4", "video/mp4", f"s2s-{job_id}.mp4")

    @app.get("/v1/jobs/{job_id}/audio", tags=["results"], responses=responses,
             summary="The sound alone (16-bit WAV, 22050 Hz)")  # fmt: skip
    async def job_audio(job_id: str, caller: Caller = Depends(authenticate)):
        return result(job_id, caller, "audio.wav", "audio/wav", f"s2s-{job_id}.wav")

    @app.get("/v1/jobs/{job_id}/spectrogram", tags=["results"], responses=responses,
             summary="The generated mel spectrogram as a picture (PNG, low frequencies at the bottom)")  # fmt: skip
    async def job_spectrogram(job_id: str, caller: Caller = Depends(authenticate)):
        return result(job_id, caller, "spectrogram.png", "image/png", f"s2s-{job_id}-spectrogram.png")

    @app.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"], responses=responses,
                summary="Delete a job and its results (cancels it if it is still running)")  # fmt: skip
    async def delete_job(job_id: str, caller: Caller = Depends(authenticate)):
        job = load(job_id, caller)
        audit("job.deleted", caller.id, job=job_id, status=job.status)
        store.delete(job_id)  # a gateway running it elsewhere loses its lease and stops at its next renewal
        app.state.runner.cancel(job_id)  # running here: no further window is sent
        return Response(status_code=204)

    @app.post("/v1/generate", tags=["jobs"], responses={**responses, 200: {"content": {"video/mp4": {}}}},
              response_class=Response, summary="One call for small files: upload, wait, get the mp4 back",
              openapi_extra=upload_body("a small video file or still image"))  # fmt: skip
    async def generate(
        request: Request, caller: Caller = Depends(authenticate), duration: float | None = STILL_DURATION
    ):
        await ensure_triton_ready()
        ticket = admit(request, caller, settings.sync_max_bytes, sync=True)
        outcome = "failed"
        began = time.monotonic()
        try:
            body, duration_s = await synchronous(request, duration)
            outcome = "done"
        finally:
            ticket.release()
            audit("generate", caller.id, outcome=outcome, seconds=round(time.monotonic() - began, 3))
        return Response(body, media_type="video/mp4", headers={"X-S2S-Duration": f"{duration_s:.3f}"})

    async def synchronous(request: Request, still_duration_s: float | None) -> tuple[bytes, float]:
        """Upload, the windows in parallel (cancelled if the client goes away), mux: the mp4's bytes and the
        sound's duration."""
        upload = await read_upload(request, settings.sync_max_bytes)
        try:
            data = upload.path.read_bytes()  # at most sync_max_bytes: the requests to Triton hold it anyway
        finally:
            upload.path.unlink(missing_ok=True)
        from s2s.client.mux import MuxError, mux_audio

        began = time.monotonic()
        try:
            out = await until_disconnected(request, app.state.runner.generate(data, still_duration_s))
        except ClientGoneError:
            log.info("synchronous request: the client went away; no further window is sent")
            raise GatewayError(400, "client_gone", "the client closed the connection") from None
        except TritonRejectedError as exc:
            metrics.triton_errors.labels("invalid_input").inc()
            raise GatewayError(422, "invalid_video", str(exc)) from None
        except TritonUnavailableError as exc:
            metrics.triton_errors.labels("unavailable").inc()
            log.warning("synchronous request: Triton unavailable: %s", exc)
            raise GatewayError(503, "triton_unavailable", UNAVAILABLE, True, settings.retry_after_s) from None
        target = settings.data_dir / f"sync-{store.new_id()}.mp4"
        try:
            await asyncio.to_thread(mux_audio, data, out.waveform, target)
            body = target.read_bytes()
        except MuxError as exc:
            raise GatewayError(422, "invalid_video", str(exc)) from None
        finally:
            target.unlink(missing_ok=True)
        metrics.bytes_out.inc(len(body))
        metrics.job_seconds.observe(time.monotonic() - began)
        return body, out.duration_s

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", dependencies=[Depends(metrics_reader)])
    async def prometheus_metrics():
        metrics.queue_depth.set(store.queued())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - API docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
