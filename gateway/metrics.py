"""Prometheus metrics of the gateway (one registry per app, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "s2s_gateway_requests_total", "HTTP requests by route and status code", ["method", "route", "status"],
            registry=r,
        )  # fmt: skip
        self.jobs = Counter("s2s_gateway_jobs_total", "Finished jobs by outcome", ["outcome"], registry=r)
        self.job_seconds = Histogram(
            "s2s_gateway_job_duration_seconds", "Time from upload to result (finished jobs)",
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800), registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "s2s_gateway_queue_depth", "Jobs waiting in the queue (all gateways of a shared store)", registry=r
        )
        self.running = Gauge("s2s_gateway_jobs_running", "Jobs being processed by this gateway", registry=r)
        self.windows = Counter(
            "s2s_gateway_windows_total", "Window requests to Triton by outcome (done, unavailable)", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.windows_in_flight = Gauge("s2s_gateway_windows_in_flight", "Window requests waiting on Triton", registry=r)
        self.window_retries = Counter(
            "s2s_gateway_window_retries_total", "Window requests sent again after Triton was unavailable", registry=r
        )
        self.takeovers = Counter(
            "s2s_gateway_job_takeovers_total", "Jobs taken up again after their gateway stopped or died", registry=r
        )
        self.bytes_in = Counter("s2s_gateway_bytes_received_total", "Bytes of uploaded videos", registry=r)
        self.bytes_out = Counter("s2s_gateway_bytes_sent_total", "Bytes of results sent", registry=r)
        self.triton_errors = Counter(
            "s2s_gateway_triton_errors_total", "Errors from Triton by kind", ["kind"], registry=r
        )
