"""The engine's Prometheus metrics: jobs by status, step durations, appends, the runner's queue.

Each server owns its registry (never prometheus_client's global one), so several servers in one
process keep theirs apart. What is cheap to read is read at scrape time (`refresh`, the queue
depth); what happens on a hot path is observed once per group commit (in plain integers,
`CommitHistograms`) or once per step, never per event.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from aura.engine.run.runner import Runner
from aura.projections.job import JobStatus
from aura.store.interface import EventStore, JobList

__all__ = [
    "APPEND_LATENCY_BUCKETS",
    "BATCH_SIZE_BUCKETS",
    "STEP_DURATION_BUCKETS",
    "CommitHistograms",
    "EngineMetrics",
]

#: seconds: a step runs from a few milliseconds (preflight) to many minutes (a long mux)
STEP_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
#: seconds: a commit on the loop takes tens of microseconds; a FULL fsync, milliseconds
APPEND_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: appends per group commit, up to store.group_commit.MAX_BATCH_APPENDS
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _histogram(
    name: str, documentation: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> HistogramMetricFamily:
    """A histogram family from per-bucket counts (the last: above every bound)."""
    cumulative = list(itertools.accumulate(counts))
    labels = (*map(floatToGoString, bounds), "+Inf")  # as prometheus_client writes `le`
    buckets = [(le, float(n)) for le, n in zip(labels, cumulative, strict=True)]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class CommitHistograms(Collector):
    """`aura_append_latency_seconds` and `aura_group_commit_appends`, observed together once
    per group commit (store.group_commit.CommitObserver) and kept in plain integers.

    Each append of a batch counts in the latency histogram with the batch's latency (its oldest
    append's: an upper bound for the others), so its quantiles are per append, as a client sees
    them, at the cost of one call per batch. prometheus_client's Histogram takes one value per
    call, under a lock, for microseconds: about a one-event commit's own work on this path.
    Only the event loop's thread observes and collects, so no lock is needed.
    """

    LATENCY = "aura_append_latency_seconds"
    BATCH = "aura_group_commit_appends"

    def __init__(self) -> None:
        self._latency_counts = [0] * (len(APPEND_LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._batch_counts = [0] * (len(BATCH_SIZE_BUCKETS) + 1)
        self._batch_sum = 0

    def observe(self, appends: int, seconds: float) -> None:
        # bisect_left: the first bound >= the value, as a bucket's `le` means
        self._latency_counts[bisect_left(APPEND_LATENCY_BUCKETS, seconds)] += appends
        self._latency_sum += seconds * appends
        self._batch_counts[bisect_left(BATCH_SIZE_BUCKETS, appends)] += 1
        self._batch_sum += appends

    def collect(self) -> Iterator[Metric]:
        yield _histogram(
            self.LATENCY,
            "Seconds from an append's queueing to its commit settled (its group commit's oldest).",
            APPEND_LATENCY_BUCKETS,
            self._latency_counts,
            self._latency_sum,
        )
        yield _histogram(
            self.BATCH,
            "Appends committed together in one group commit (one transaction).",
            BATCH_SIZE_BUCKETS,
            self._batch_counts,
            self._batch_sum,
        )

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.LATENCY, "")
        yield HistogramMetricFamily(self.BATCH, "")


class EngineMetrics:
    """The engine's metrics in `registry`, fed by the log's group commits and the runner's
    step watch (`attach`), and by the job list at scrape time (`refresh`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs = Gauge(
            "aura_jobs", "Jobs in the job list, by status.", ["status"], registry=registry
        )
        self.queue_depth = Gauge(
            "aura_queue_depth",
            "Jobs Queued in the job list: waiting for a slot (max_concurrent_jobs) of this "
            "server, or of any worker on PostgreSQL.",
            registry=registry,
        )
        self.step_duration = Histogram(
            "aura_step_duration_seconds",
            "Duration of each step that succeeded in a run of this server.",
            ["step"],
            buckets=STEP_DURATION_BUCKETS,
            registry=registry,
        )
        self.list_rebuilding = Gauge(
            "aura_job_list_rebuilding",
            "1 while the job list is rebuilt from the log (aura_jobs then counts part of it).",
            registry=registry,
        )
        self.commits = CommitHistograms()
        registry.register(self.commits)
        self._table: JobList | None = None

    def attach(
        self, log: EventStore, runner: Runner, table: JobList, rebuilding: Callable[[], bool]
    ) -> None:
        """Observe the log's group commits and the runner's steps; read `table` to count jobs,
        and `rebuilding()` to say whether it is whole."""
        log.commit_observer = self.commits.observe
        runner.observe_steps(self.observe_step)
        self.list_rebuilding.set_function(lambda: float(rebuilding()))
        self._table = table

    @staticmethod
    def detach(log: EventStore, runner: Runner) -> None:
        log.commit_observer = None
        runner.observe_steps(None)

    def observe_step(self, step: str, seconds: float) -> None:
        """engine.run.runner.StepObserver: once per step that succeeds."""
        self.step_duration.labels(step).observe(seconds)

    async def refresh(self) -> None:
        """Count the jobs of each status in the job list (its status index: no replay)."""
        if self._table is None:
            return
        for status in JobStatus:
            count = await self._table.count(status)
            self.jobs.labels(status.value).set(count)
            if status is JobStatus.QUEUED:  # the shared queue: right on an API-only node too
                self.queue_depth.set(count)
