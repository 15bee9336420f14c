"""`GET /metrics`: the server's metrics in the Prometheus text format (version 0.0.4).

The registry is the app's own (aura.engine.metrics.EngineMetrics holds the engine's metrics in
it); the streams' figures are counted by the feeds as plain integers and read at scrape time
(`StreamMetrics`), so a fan-out to many clients pays an integer add per write, not a metric
call. The route is behind the token like every API route (http/security.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aura.engine.engine import Engine
from aura.engine.metrics import EngineMetrics
from aura.http.fanout import FanOut
from aura.http.sse_jobs import JobListFeed

__all__ = ["CONTENT_TYPE", "METRICS", "Metrics", "StreamMetrics", "routes"]

#: the Prometheus text format's media type
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

routes = web.RouteTableDef()


class StreamMetrics(Collector):
    """SSE streams open and messages delivered, by stream kind: `job` (a job's events) and
    `list` (the job list's changes), read from the feeds when scraped."""

    def __init__(self, fanout: FanOut, list_feed: JobListFeed) -> None:
        self._fanout = fanout
        self._list_feed = list_feed

    def collect(self) -> Iterator[Metric]:
        open_streams = GaugeMetricFamily(
            "aura_sse_streams_open", "SSE streams open, by kind.", labels=["stream"]
        )
        open_streams.add_metric(["job"], self._fanout.listener_count)
        open_streams.add_metric(["list"], self._list_feed.listener_count)
        yield open_streams
        delivered = CounterMetricFamily(
            "aura_sse_events_delivered",
            "SSE messages written to clients (pings not counted), by kind.",
            labels=["stream"],
        )
        delivered.add_metric(["job"], self._fanout.delivered)
        delivered.add_metric(["list"], self._list_feed.delivered)
        yield delivered

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("aura_sse_streams_open", "")
        yield CounterMetricFamily("aura_sse_events_delivered", "")


class Metrics:
    """The app's registry: the engine's metrics and the streams'. `close` stops observing."""

    def __init__(self, engine: Engine, fanout: FanOut, list_feed: JobListFeed) -> None:
        self.registry = CollectorRegistry()
        self.engine = EngineMetrics(self.registry)
        projector = engine.projector
        self.engine.attach(engine.log, engine.runner, projector.table, lambda: projector.rebuilding)
        self.registry.register(StreamMetrics(fanout, list_feed))
        self._observed = engine

    def close(self) -> None:
        self.engine.detach(self._observed.log, self._observed.runner)

    async def exposition(self) -> bytes:
        """Every metric, as of now, in the text format."""
        await self.engine.refresh()
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
