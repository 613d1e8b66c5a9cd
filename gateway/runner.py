"""Runs jobs against Triton: a bounded queue, a fixed number of workers, window-by-window requests.

Each job is sent to the ``s2s`` ensemble over async gRPC, ``windows_per_request`` windows at a time, so
its status shows real progress (windows done / total) and jobs of several users interleave at window
granularity. The result is muxed into a copy of the upload in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from s2s.client.mux import MuxError, mux_audio, write_wav
from s2s.client.triton import Generated, WindowPlan, generated, request_tensors, server_message
from s2s.gateway.audit import audit
from s2s.gateway.jobs import Job, JobError, JobStore
from s2s.gateway.metrics import GatewayMetrics
from s2s.repository import ENSEMBLE

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """No room for another job: the client should retry later (HTTP 429)."""


class TritonRejectedError(RuntimeError):
    """Triton refused the input (INVALID_ARG): the user's video is the problem (HTTP 422)."""


class TritonUnavailableError(RuntimeError):
    """Triton cannot be reached or is not ready (HTTP 503, retry later)."""


@dataclass
class RunnerSettings:
    triton_url: str
    model: str = ENSEMBLE
    workers: int = 2
    max_queued: int = 8
    windows_per_request: int = 1
    timeout_s: float = 900.0


#: what users are told when Triton cannot be reached (its address and gRPC status stay in the log)
UNAVAILABLE = "the inference server is unavailable; try again shortly"


def classify(exc: Exception) -> Exception:
    """tritonclient's exception -> ours (rejected input vs unavailable server vs anything else).

    A rejected input keeps preprocess's own words (meant for the user), without the gRPC status name.
    """
    message = server_message(exc)
    status = str(getattr(exc, "status", lambda: "")() or "")
    if "INVALID_ARG" in status or "INVALID_ARGUMENT" in status or "INVALID_ARG" in message:
        text = getattr(exc, "message", None)
        return TritonRejectedError(text() if callable(text) else message)
    if "UNAVAILABLE" in status or "DEADLINE" in status or "failed to connect" in message.lower():
        return TritonUnavailableError(message)
    return RuntimeError(message)


class TritonGateway:
    """The async gRPC connection to the ensemble."""

    def __init__(self, settings: RunnerSettings) -> None:
        import tritonclient.grpc.aio as aio

        self.settings = settings
        self._aio = aio
        self.client = aio.InferenceServerClient(settings.triton_url)

    async def ready(self) -> bool:
        try:
            return bool(await self.client.is_server_ready() and await self.client.is_model_ready(self.settings.model))
        except Exception:  # any failure to answer is "not ready"
            return False

    async def infer(self, video: bytes, start: int, count: int) -> Generated:
        inputs, outputs = request_tensors(self._aio, video, start, count)
        began = time.monotonic()
        try:
            result = await self.client.infer(
                self.settings.model, inputs, outputs=outputs, client_timeout=self.settings.timeout_s
            )
        except Exception as exc:
            raise classify(exc) from None
        return generated(result, time.monotonic() - began)

    async def close(self) -> None:
        await self.client.close()


class JobRunner:
    def __init__(self, store: JobStore, triton: TritonGateway, metrics: GatewayMetrics, settings: RunnerSettings):
        self.store, self.triton, self.metrics, self.settings = store, triton, metrics, settings
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.cancelled: set[str] = set()
        self.tasks: list[asyncio.Task] = []
        self.running: set[str] = set()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._worker(i)) for i in range(self.settings.workers)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def has_room(self) -> bool:
        return self.queue.qsize() < self.settings.max_queued

    def submit(self, job: Job) -> None:
        if not self.has_room():
            raise QueueFullError(f"{self.queue.qsize()} jobs are waiting (limit {self.settings.max_queued})")
        self.queue.put_nowait(job.id)
        self.metrics.queue_depth.set(self.queue.qsize())

    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)

    async def _worker(self, index: int) -> None:
        while True:
            job_id = await self.queue.get()
            self.metrics.queue_depth.set(self.queue.qsize())
            try:
                await self._process(job_id)
            except Exception:  # never let one job kill a worker
                log.exception("job %s: unexpected failure", job_id)
            finally:
                self.queue.task_done()

    async def _process(self, job_id: str) -> None:
        try:
            job = self.store.load(job_id)
        except KeyError:
            return  # deleted while queued
        if job_id in self.cancelled or job.finished:
            return
        job.status = "running"
        self.store.save(job)
        self.running.add(job_id)
        self.metrics.running.set(len(self.running))
        began = time.monotonic()
        try:
            video = self.store.path(job_id, "input").read_bytes()
            plan = WindowPlan(self.settings.windows_per_request)
            while (request := plan.next()) is not None:
                if job_id in self.cancelled:
                    raise asyncio.CancelledError
                plan.add(await self.triton.infer(video, *request))
                job.windows_total, job.windows_done = plan.total, plan.done
                self.store.save(job)
            result = plan.joined(time.monotonic() - began)
            muxed = await asyncio.to_thread(mux_audio, video, result.waveform, self.store.path(job_id, "video.mp4"))
            await asyncio.to_thread(write_wav, self.store.path(job_id, "audio.wav"), result.waveform)
            job.status, job.duration_s, job.video_copied = "done", result.duration_s, muxed.video_copied
            outcome = "done"
        except asyncio.CancelledError:
            if job_id not in self.cancelled:
                raise  # the gateway is shutting down: its next start reports the job as interrupted, retryable
            job.status, job.error, outcome = "cancelled", JobError("cancelled", "deleted by the user"), "cancelled"
        except TritonRejectedError as exc:
            job.status, outcome = "failed", "invalid_video"
            job.error = JobError("invalid_video", str(exc), retryable=False)
            self.metrics.triton_errors.labels("invalid_input").inc()
        except MuxError as exc:  # the sound is there, but this video cannot carry it: retrying will not help
            job.status, outcome = "failed", "invalid_video"
            job.error = JobError("invalid_video", str(exc), retryable=False)
        except TritonUnavailableError as exc:
            job.status, outcome = "failed", "triton_unavailable"
            log.warning("job %s: Triton unavailable: %s", job_id, exc)
            job.error = JobError("triton_unavailable", UNAVAILABLE, retryable=True)
            self.metrics.triton_errors.labels("unavailable").inc()
        except Exception as exc:  # muxing or anything else: tell the user what happened, keep going
            log.exception("job %s failed", job_id)
            job.status, outcome = "failed", "internal"
            job.error = JobError("internal", f"internal error ({type(exc).__name__}); it is in the gateway's log "
                                 f"under job {job_id}", retryable=True)  # fmt: skip
            self.metrics.triton_errors.labels("other").inc()
        finally:
            self.running.discard(job_id)
            self.metrics.running.set(len(self.running))
        job.finished_at = time.time()
        job.processing_s = time.monotonic() - began
        if job.status == "failed" and job.error is not None and not job.error.retryable:
            self.store.drop_input(job_id)  # nothing can use it again
        if job_id in self.cancelled:
            self.cancelled.discard(job_id)
            self.store.delete(job_id)
        else:
            self.store.save(job)
        self.metrics.jobs.labels(outcome).inc()
        audit("job.finished", job.owner, job=job_id, outcome=outcome, windows=job.windows_done,
              seconds=round(job.processing_s, 3))  # fmt: skip
        self.metrics.job_seconds.observe(job.finished_at - job.created_at)
