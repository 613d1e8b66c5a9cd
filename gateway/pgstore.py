"""Job records and the queue in PostgreSQL, so any number of gateways share them.

One table, ``s2s_jobs``: the job's record as JSON (the one source of what a job is) and, beside it, the
columns the queue needs (status, owner, creation time, lease holder and lease end). Gateways take the
oldest queued job, or a running one whose lease ran out (its gateway died), with ``SELECT ... FOR UPDATE
SKIP LOCKED``, so two gateways never take the same job and none waits for another. Lease times come
from the database's clock, so the gateways' clocks do not matter. Files (uploads, window results,
results) stay on the data directory, which the gateways share as one volume.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from s2s.gateway.jobs import Job, JobStore, StoreUnavailableError

SCHEMA = """
CREATE TABLE IF NOT EXISTS s2s_jobs (
    id          text PRIMARY KEY,
    owner       text NOT NULL,
    status      text NOT NULL,
    created_at  double precision NOT NULL,
    lease_owner text NOT NULL DEFAULT '',
    lease_until double precision NOT NULL DEFAULT 0,
    record      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS s2s_jobs_queue ON s2s_jobs (status, created_at);
CREATE INDEX IF NOT EXISTS s2s_jobs_owner ON s2s_jobs (owner);
"""
#: the database's clock, in seconds (leases are compared with it, never with a gateway's clock)
_NOW = "extract(epoch from clock_timestamp())"


class PostgresJobStore(JobStore):
    shared = True

    def __init__(self, url: str, root: Path, pool_size: int = 4, connect_timeout_s: float = 10.0) -> None:
        from psycopg_pool import ConnectionPool

        super().__init__(root)
        self.clean_uploads(older_than_s=3600.0)  # other gateways may be receiving the recent ones
        self.pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, timeout=connect_timeout_s,
            kwargs={"autocommit": True, "connect_timeout": int(connect_timeout_s)}, name="s2s-jobs",
            check=ConnectionPool.check_connection,  # a connection the database dropped is replaced, not used
        )  # fmt: skip
        from psycopg_pool import PoolTimeout

        try:
            self.pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            self.pool.close()
            raise StoreUnavailableError(
                f"cannot reach the job store at {describe(url)} within {connect_timeout_s:g} s"
            ) from None
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('s2s_jobs schema'))")  # gateways starting at once
            conn.execute(SCHEMA)

    @contextlib.contextmanager
    def _connection(self, timeout_s: float | None = None):
        """A pooled connection; the database being away is :class:`StoreUnavailableError` (HTTP 503)."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=timeout_s) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailableError(f"PostgreSQL: {exc}") from exc

    def ping(self) -> bool:
        try:
            with self._connection(timeout_s=2.0) as conn:
                conn.execute("SELECT 1")
            return True
        except StoreUnavailableError:
            return False

    def close(self) -> None:
        self.pool.close()

    def load(self, job_id: str) -> Job:
        self.folder(job_id)  # the id's shape is checked before it reaches the database
        with self._connection() as conn:
            row = conn.execute("SELECT record FROM s2s_jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return Job.from_dict(row[0])

    def save(self, job: Job) -> None:
        with self._connection() as conn:
            cursor = conn.execute(
                "UPDATE s2s_jobs SET status = %s, lease_owner = %s, record = %s WHERE id = %s",
                (job.status, job.lease_owner, job.to_json(), job.id),
            )
        if cursor.rowcount != 1:
            raise KeyError(job.id)

    def all(self, owner: str | None = None) -> list[Job]:
        with self._connection() as conn:
            if owner is None:
                rows = conn.execute("SELECT record FROM s2s_jobs").fetchall()
            else:
                rows = conn.execute("SELECT record FROM s2s_jobs WHERE owner = %s", (owner,)).fetchall()
        return [Job.from_dict(row[0]) for row in rows]

    def submit(self, job: Job) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO s2s_jobs (id, owner, status, created_at, record) VALUES (%s, %s, %s, %s, %s)",
                (job.id, job.owner, job.status, job.created_at, job.to_json()),
            )

    def claim(self, worker: str, lease_s: float) -> Job | None:
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                f"""
                WITH next AS (
                    SELECT id, status AS was FROM s2s_jobs
                    WHERE status = 'queued' OR (status = 'running' AND lease_until < {_NOW})
                    ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1
                )
                UPDATE s2s_jobs AS j SET status = 'running', lease_owner = %s, lease_until = {_NOW} + %s
                FROM next WHERE j.id = next.id
                RETURNING j.record, next.was, j.lease_until
                """,
                (worker, lease_s),
            ).fetchone()
            if row is None:
                return None
            job = Job.from_dict(row[0])
            job.status, job.lease_owner, job.lease_until = "running", worker, float(row[2])
            if row[1] == "running":  # its gateway stopped renewing: taken over
                job.takeovers += 1
            conn.execute("UPDATE s2s_jobs SET record = %s WHERE id = %s", (job.to_json(), job.id))
        return job

    def renew(self, job: Job, worker: str, lease_s: float) -> bool:
        with self._connection() as conn:
            cursor = conn.execute(
                f"""
                UPDATE s2s_jobs SET status = %s, record = %s, lease_until = {_NOW} + %s
                WHERE id = %s AND lease_owner = %s AND status = 'running'
                """,
                (job.status, job.to_json(), lease_s, job.id, worker),
            )
        return cursor.rowcount == 1

    def release(self, job: Job, worker: str) -> None:
        job.status, job.lease_owner, job.lease_until = "queued", "", 0.0
        with self._connection() as conn:
            conn.execute(
                """
                UPDATE s2s_jobs SET status = 'queued', lease_owner = '', lease_until = 0, record = %s
                WHERE id = %s AND lease_owner = %s AND status = 'running'
                """,
                (job.to_json(), job.id, worker),
            )

    def queued(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT count(*) FROM s2s_jobs WHERE status = 'queued'").fetchone()[0])

    def _enqueue(self, job_id: str) -> None:
        pass  # a record with status 'queued' is in the queue

    def _forget(self, job_id: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM s2s_jobs WHERE id = %s", (job_id,))


def describe(url: str) -> str:
    """The URL without its password, for logs."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "postgresql://(unparsable URL)"
    user, host, port, name = (info.get(k, "") for k in ("user", "host", "port", "dbname"))
    return f"postgresql://{user}@{host}:{port or 5432}/{name}"
