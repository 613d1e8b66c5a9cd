"""Runs jobs against Triton with windows as the unit of work.

A gateway's workers take jobs from the store's queue under a lease (renewed while they work). A job's
windows are independent requests to the ``s2s`` ensemble (they join exactly, and each window's noise is
seeded by the video's bytes), so they are sent in parallel: at most ``windows_per_job`` of one job and
``windows_in_flight`` of all jobs at once. Each window's result is kept on the data volume as it
arrives, so a job that stops (gateway restart, crash, a lease taken over by another gateway, a retry
through the API) goes on from its last finished window. A window request that fails because the
inference server is unavailable (UNAVAILABLE, DEADLINE_EXCEEDED, a lost connection, a server stopping)
is sent again with exponential backoff for up to ``retry_budget_s``; a rejected input never is.

The gRPC channel balances over every address of its target (``round_robin``): a comma-separated
``ipv4:`` list, or ``dns:///name:port`` for a headless Service, re-resolved every ``reresolve_s`` so
new Triton pods receive requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from dataclasses import dataclass

import numpy as np

from s2s import pictures
from s2s.client.mux import MuxError, mux_audio, write_wav
from s2s.client.triton import Generated, generated, rejected_input, request_tensors, server_message
from s2s.constants import REGNET
from s2s.gateway.audit import audit
from s2s.gateway.jobs import Job, JobError, JobStore, Piece
from s2s.gateway.metrics import GatewayMetrics
from s2s.repository import ENSEMBLE

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """No room for another job: the client should retry later (HTTP 429)."""


class TritonRejectedError(RuntimeError):
    """Triton refused the input (INVALID_ARG): the user's video is the problem (HTTP 422)."""


class TritonUnavailableError(RuntimeError):
    """Triton cannot be reached or is not ready (HTTP 503, retry later)."""


class DrainingError(Exception):
    """The gateway is stopping: no further window of this job is sent here."""


@dataclass
class RunnerSettings:
    triton_url: str
    model: str = ENSEMBLE
    workers: int = 2  #: jobs worked on at once by this gateway
    max_queued: int = 8  #: jobs waiting in the store's queue; more are refused
    windows_per_request: int = 1
    windows_per_job: int = 2  #: window requests of one job in flight at once
    windows_in_flight: int = 4  #: window requests of this gateway in flight at once
    timeout_s: float = 900.0
    retry_budget_s: float = 120.0  #: how long a window is retried while the inference server is unavailable
    lease_s: float = 30.0  #: a job whose gateway stops renewing for this long is taken over by another
    poll_s: float = 1.0  #: how often an idle worker looks at a shared queue
    reresolve_s: float = 30.0  #: new channel (fresh DNS answer) this often, for dns: targets
    #: cancel a window's gRPC call when its job is deleted or its client leaves (else the call ends on its
    #: own and its result is dropped): Triton before 24.12 can crash on a cancelled gRPC call (server PR 7840)
    cancel_in_flight: bool = False


#: what users are told when Triton cannot be reached (its address and gRPC status stay in the log)
UNAVAILABLE = "the inference server is unavailable; try again shortly"
#: statuses and words of a request that may succeed if sent again (to this server later, or another).
#: NOT_FOUND: a server that is stopping unloads its models while it still answers ("unknown model")
_RETRYABLE_STATUS = ("UNAVAILABLE", "DEADLINE", "CANCELLED", "ABORTED", "RESOURCE_EXHAUSTED", "NOT_FOUND")
_RETRYABLE_TEXT = ("failed to connect", "socket closed", "connection reset", "server is stopping", "not ready")


def classify(exc: Exception) -> Exception:
    """tritonclient's exception -> ours (rejected input vs unavailable server vs anything else).

    A rejected input keeps preprocess's own words (meant for the user), without the gRPC status name.
    """
    message = server_message(exc)
    status = str(getattr(exc, "status", lambda: "")() or "")
    if (rejected := rejected_input(exc)) is not None:
        return TritonRejectedError(rejected)
    if any(s in status for s in _RETRYABLE_STATUS) or any(t in message.lower() for t in _RETRYABLE_TEXT):
        return TritonUnavailableError(message)
    return RuntimeError(message)


def channel_args() -> list[tuple[str, int | str]]:
    """tritonclient's own channel options, plus balancing over every address the target resolves to and a
    short reconnect backoff."""
    from tritonclient.grpc import KeepAliveOptions
    from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.lb_policy_name", "round_robin"),
        # a server that comes back (a pod restarted) is connected again within seconds, not gRPC's 2 minutes
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]


class TritonGateway:
    """The async gRPC channel to the ensemble, balanced over the target's addresses.

    For ``dns:`` targets a new channel replaces the current one every ``reresolve_s`` (gRPC resolves a
    name again only when a connection breaks, so pods a scale-up adds would get nothing); a replaced
    channel closes when its last request has finished.
    """

    def __init__(self, settings: RunnerSettings) -> None:
        import tritonclient.grpc.aio as aio

        self.settings = settings
        self._aio = aio
        self._refresh = settings.triton_url.startswith("dns:") and settings.reresolve_s > 0
        self.client = self._connect()
        self._made = time.monotonic()
        self._uses: dict[object, int] = {self.client: 0}
        self._retired: list[object] = []

    def _connect(self):
        return self._aio.InferenceServerClient(self.settings.triton_url, channel_args=channel_args())

    def _take(self):
        if self._refresh and time.monotonic() - self._made > self.settings.reresolve_s:
            self._retired.append(self.client)
            self.client, self._made = self._connect(), time.monotonic()
            self._uses[self.client] = 0
        self._uses[self.client] += 1
        return self.client

    def _give(self, client) -> None:
        self._uses[client] -= 1
        for old in [c for c in self._retired if not self._uses[c]]:
            self._retired.remove(old)
            del self._uses[old]
            asyncio.get_running_loop().create_task(old.close())

    async def ready(self) -> bool:
        client = self._take()
        try:
            return bool(await client.is_server_ready() and await client.is_model_ready(self.settings.model))
        except Exception:  # any failure to answer is "not ready"
            return False
        finally:
            self._give(client)

    async def infer(self, video: bytes, start: int, count: int, duration_s: float | None = None) -> Generated:
        inputs, outputs = request_tensors(self._aio, video, start, count, duration_s)
        began = time.monotonic()
        client = self._take()
        call = asyncio.ensure_future(
            client.infer(self.settings.model, inputs, outputs=outputs, client_timeout=self.settings.timeout_s)
        )
        call.add_done_callback(lambda done: (self._give(client), done.cancelled() or done.exception()))
        try:
            result = await (call if self.settings.cancel_in_flight else asyncio.shield(call))
        except asyncio.CancelledError:
            raise  # without cancel_in_flight the call itself runs to its end; its result is dropped
        except Exception as exc:
            raise classify(exc) from None
        return generated(result, time.monotonic() - began)

    async def close(self) -> None:
        for client in [self.client, *self._retired]:
            await client.close()


def plan_requests(total: int, covered: dict[int, int], chunk: int) -> list[tuple[int, int]]:
    """The (start, count) requests for the windows of ``0..total`` not ``covered`` ({start: count}),
    consecutive windows grouped ``chunk`` at a time."""
    done = np.zeros(total, dtype=bool)
    for start, count in covered.items():
        done[start : start + count] = True
    requests, k = [], 0
    while k < total:
        if done[k]:
            k += 1
            continue
        end = k
        while end < total and not done[end] and end - k < chunk:
            end += 1
        requests.append((k, end - k))
        k = end
    return requests


def join_pieces(pieces: list[Piece]) -> tuple[np.ndarray, np.ndarray]:
    """Window results covering a whole video, in any order -> (waveform, mel), as one request returns."""
    from s2s.windowing import join_ranges

    pieces = sorted(pieces, key=lambda p: p.start)
    at = 0
    for piece in pieces:
        if piece.start != at:
            raise RuntimeError(f"window results do not cover the video: expected window {at}, got {piece.start}")
        at += piece.count
    if not pieces or at != pieces[0].total:
        raise RuntimeError(f"window results cover {at} of {pieces[0].total if pieces else '?'} windows")
    return join_ranges([(p.waveform, p.mel, p.offset) for p in pieces])


async def first_failure(tasks: list[asyncio.Task]) -> None:
    """Wait for all ``tasks``; at the first that fails, cancel the others and raise its exception."""
    if not tasks:
        return
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.cancelled():  # a window that found its job no longer this gateway's
            raise asyncio.CancelledError
        if task.exception() is not None:
            raise task.exception()


class JobRunner:
    def __init__(self, store: JobStore, triton: TritonGateway, metrics: GatewayMetrics, settings: RunnerSettings):
        self.store, self.triton, self.metrics, self.settings = store, triton, metrics, settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.slots = asyncio.Semaphore(settings.windows_in_flight)
        self.active: dict[str, tuple[Job, asyncio.Task]] = {}
        self.cancelled: set[str] = set()  #: deleted by a user while running here
        self.lost: set[str] = set()  #: lease lost (deleted elsewhere, or taken over)
        self.tasks: list[asyncio.Task] = []
        self.draining = False
        self.in_flight = 0
        self._wake = asyncio.Event()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(self.settings.workers)]
        self.tasks.append(asyncio.create_task(self._renew_forever()))

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop taking jobs; let the windows in flight finish (and be kept) for up to ``drain_s``, then
        give every unfinished job back to the queue, where it goes on from its kept windows."""
        self.draining = True
        self._wake.set()
        tasks = [task for _, task in self.active.values()]
        if tasks and drain_s > 0:
            await asyncio.wait(tasks, timeout=drain_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def has_room(self) -> bool:
        return self.store.queued() < self.settings.max_queued

    def submit(self, job: Job) -> None:
        if not self.has_room():
            raise QueueFullError(f"{self.store.queued()} jobs are waiting (limit {self.settings.max_queued})")
        self.store.submit(job)
        self.metrics.queue_depth.set(self.store.queued())
        self._wake.set()

    def retry(self, job: Job) -> None:
        self.store.retry(job)
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Stop a job running here (it was deleted): no further window is sent; the calls in flight are
        cancelled with ``cancel_in_flight``, else they end on their own and their results are dropped."""
        if job_id in self.active:
            self.cancelled.add(job_id)
            self.active[job_id][1].cancel()

    async def generate(self, video: bytes, duration_s: float | None = None) -> Generated:
        """A whole video (or a still image, ``duration_s`` seconds of sound), its windows in parallel and retried
        like a job's, nothing kept (synchronous requests). Cancelling it (the client went away) sends no further
        window (see :meth:`cancel` for those in flight)."""
        began = time.monotonic()
        pieces = await self._windows(video, None, duration_s)
        waveform, mel = join_pieces(pieces)
        return Generated(waveform, mel, time.monotonic() - began, pieces[0].total)

    # -- workers ------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self.draining:
            try:
                job = await asyncio.to_thread(self.store.claim, self.worker_id, self.settings.lease_s)
            except Exception as exc:  # the store is unreachable: wait and try again
                log.warning("cannot take a job from the store: %s", exc)
                job = None
            with contextlib.suppress(Exception):
                self.metrics.queue_depth.set(await asyncio.to_thread(self.store.queued))
            if job is None:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
                continue
            task = asyncio.create_task(self._process(job))
            self.active[job.id] = (job, task)
            self.metrics.running.set(len(self.active))
            try:
                await asyncio.wait([task])  # being cancelled here does not cancel the job: stop() decides
            finally:
                self.active.pop(job.id, None)
                self.cancelled.discard(job.id)
                self.lost.discard(job.id)
                self.metrics.running.set(len(self.active))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            for job_id, (job, task) in list(self.active.items()):
                try:
                    mine = await asyncio.to_thread(self.store.renew, job, self.worker_id, self.settings.lease_s)
                except Exception:
                    log.exception("job %s: cannot renew its lease", job_id)
                    continue
                if not mine and job_id in self.active:
                    log.warning("job %s: no longer this gateway's (deleted, or taken over); stopping it", job_id)
                    self.lost.add(job_id)
                    task.cancel()

    async def _save(self, job: Job) -> None:
        """The job's state, under this gateway's lease; a job that is no longer ours stops here."""
        if not await asyncio.to_thread(self.store.renew, job, self.worker_id, self.settings.lease_s):
            self.lost.add(job.id)
            raise asyncio.CancelledError

    async def _process(self, job: Job) -> None:
        began = time.monotonic()
        if job.takeovers:
            self.metrics.takeovers.inc()
        try:
            video = await asyncio.to_thread(self.store.path(job.id, "input").read_bytes)
            pieces = await self._windows(video, job, job.still_duration_s)
            waveform, mel = join_pieces(pieces)
            muxed = await asyncio.to_thread(mux_audio, video, waveform, self.store.path(job.id, "video.mp4"))
            await asyncio.to_thread(write_wav, self.store.path(job.id, "audio.wav"), waveform)
            picture = await asyncio.to_thread(lambda: pictures.png(pictures.mel_image(mel)))
            await asyncio.to_thread(self.store.path(job.id, "spectrogram.png").write_bytes, picture)
            job.status, job.video_copied = "done", muxed.video_copied
            job.duration_s = waveform.size / REGNET.sample_rate
            outcome = "done"
        except asyncio.CancelledError:
            if job.id in self.cancelled:
                self._finished(job, "cancelled", began)
                return
            if job.id in self.lost:
                return  # another gateway has it, or it was deleted elsewhere
            await asyncio.to_thread(self.store.release, job, self.worker_id)  # stopping: the next taker goes on
            log.info("job %s handed back at window %d/%s", job.id, job.windows_done, job.windows_total)
            raise
        except DrainingError:
            await asyncio.to_thread(self.store.release, job, self.worker_id)
            log.info("job %s handed back at window %d/%s", job.id, job.windows_done, job.windows_total)
            return
        except (TritonRejectedError, MuxError) as exc:  # the video is the problem: retrying will not help
            job.status, outcome = "failed", "invalid_video"
            job.error = JobError("invalid_video", str(exc), retryable=False)
            if isinstance(exc, TritonRejectedError):
                self.metrics.triton_errors.labels("invalid_input").inc()
        except TritonUnavailableError as exc:
            job.status, outcome = "failed", "triton_unavailable"
            log.warning("job %s: Triton unavailable for %.0f s: %s", job.id, self.settings.retry_budget_s, exc)
            job.error = JobError("triton_unavailable", UNAVAILABLE + " (POST its /retry to go on)", retryable=True)
            self.metrics.triton_errors.labels("unavailable").inc()
        except Exception as exc:  # anything else: tell the user what happened, keep going
            if not self.store.folder(job.id).is_dir():  # deleted under it (by another gateway's user request)
                self._finished(job, "cancelled", began)
                return
            log.exception("job %s failed", job.id)
            job.status, outcome = "failed", "internal"
            job.error = JobError("internal", f"internal error ({type(exc).__name__}); it is in the gateway's log "
                                 f"under job {job.id}", retryable=True)  # fmt: skip
            self.metrics.triton_errors.labels("other").inc()
        job.finished_at = time.time()
        job.processing_s = (job.processing_s or 0.0) + time.monotonic() - began
        if job.status == "failed" and job.error is not None and not job.error.retryable:
            self.store.drop_input(job.id)  # nothing can use it again
        try:
            await self._save(job)
        except asyncio.CancelledError:
            return  # no longer ours: whoever has it now writes the outcome
        self._finished(job, outcome, began)

    def _finished(self, job: Job, outcome: str, began: float) -> None:
        self.metrics.jobs.labels(outcome).inc()
        audit("job.finished", job.owner, job=job.id, outcome=outcome, windows=job.windows_done,
              retries=job.retries, takeovers=job.takeovers, seconds=round(time.monotonic() - began, 3))  # fmt: skip
        if outcome == "done":
            self.metrics.job_seconds.observe(job.finished_at - job.created_at)

    # -- windows ------------------------------------------------------------------------------------

    async def _windows(self, video: bytes, job: Job | None, duration_s: float | None = None) -> list[Piece]:
        """Every window of ``video``: those a job already has, the rest requested in parallel (and kept
        as they arrive when there is a job)."""
        chunk = self.settings.windows_per_request
        covered = await asyncio.to_thread(self.store.pieces, job.id) if job else {}
        fresh: dict[int, Piece] = {}
        total = job.windows_total if job else None

        async def record(piece: Piece) -> None:
            fresh[piece.start] = piece
            covered[piece.start] = piece.count
            if job is not None:
                await asyncio.to_thread(self.store.save_piece, job.id, piece)
                job.windows_total, job.windows_done = piece.total, sum(covered.values())
                await self._save(job)

        if total is None and covered:
            start = min(covered)
            total = (await asyncio.to_thread(self.store.load_piece, job.id, start, covered[start])).total
        if total is None:  # the first answer tells how many windows the video has
            async with self.slots:
                first = await self._window(video, 0, chunk, job, duration_s)
            await record(first)
            total = first.total
        job_slots = asyncio.Semaphore(self.settings.windows_per_job)

        skipped = []

        async def one(start: int, count: int) -> None:
            async with job_slots:
                if self.draining and job is not None:  # stopping: windows in flight finish, no new one starts
                    skipped.append(start)
                    return
                async with self.slots:
                    piece = await self._window(video, start, count, job, duration_s)
            await record(piece)

        await first_failure([asyncio.create_task(one(*r)) for r in plan_requests(total, covered, chunk)])
        if skipped:
            raise DrainingError
        return [
            fresh[s] if s in fresh else await asyncio.to_thread(self.store.load_piece, job.id, s, n)
            for s, n in sorted(covered.items())
        ]

    async def _window(
        self, video: bytes, start: int, count: int, job: Job | None, duration_s: float | None = None
    ) -> Piece:
        """One window request, sent again with backoff while the inference server is unavailable."""
        deadline, delay = time.monotonic() + self.settings.retry_budget_s, 0.5
        while True:
            self.in_flight += 1
            self.metrics.windows_in_flight.set(self.in_flight)
            try:
                out = await self.triton.infer(video, start, count, duration_s)
                self.metrics.windows.labels("done").inc()
                return Piece(start, min(count, out.windows - start), out.windows, out.waveform, out.mel, out.offset)
            except TritonUnavailableError as exc:
                self.metrics.windows.labels("unavailable").inc()
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("window %d of job %s: %s; sending it again in %.1f s", start,
                            job.id if job else "(synchronous)", exc, delay)  # fmt: skip
                self.metrics.window_retries.inc()
                if job is not None:
                    job.retries += 1
            finally:
                self.in_flight -= 1
                self.metrics.windows_in_flight.set(self.in_flight)
            await asyncio.sleep(delay * random.uniform(1.0, 1.25))
            delay = min(delay * 2, 10.0)
