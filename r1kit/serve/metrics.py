"""The server's Prometheus metrics (prometheus-client), named after vLLM's with an `r1kit:` prefix:
requests running and waiting, prompt and generation tokens, time to first token and per output
token, KV pool usage, prefix-cache hit rate, preemptions, and requests by graph (the fast path's
share: r1kit:requests_by_graph{graph="fast"} over the sum). One registry per app, so that several
servers (tests) in one process keep their own counts."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    def __init__(self, engine):
        self.engine = engine
        self.registry = r = CollectorRegistry()
        self.running = Gauge("r1kit:num_requests_running", "sequences in the running batch", registry=r)
        self.waiting = Gauge("r1kit:num_requests_waiting", "requests (or preempted samples) waiting", registry=r)
        self.prompt_tokens = Counter("r1kit:prompt_tokens", "prompt tokens of requests accepted", registry=r)
        self.generation_tokens = Counter("r1kit:generation_tokens", "tokens generated", registry=r)
        self.requests = Counter("r1kit:requests", "requests ended, by outcome", ["outcome"], registry=r)
        self.ttft = Histogram("r1kit:time_to_first_token_seconds", "from a request's arrival to its first token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("r1kit:time_per_output_token_seconds", "engine step time per token of a decode step",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.kv_usage = Gauge("r1kit:kv_cache_usage_perc", "share of KV pool blocks held by sequences", registry=r)
        self.kv_blocks = Gauge("r1kit:kv_cache_blocks", "KV pool blocks by state", ["state"], registry=r)
        self.hit_rate = Gauge("r1kit:prefix_cache_hit_rate", "prefix blocks found in the cache / looked up", registry=r)
        self.preemptions = Gauge("r1kit:num_preemptions", "sequences preempted so far", registry=r)
        self.by_graph = Counter("r1kit:requests_by_graph", "requests finished, by the graph they ran on (full, or the fast path)",
                                ["graph"], registry=r)

    def request_started(self, prompt_tokens: int) -> None:
        self.prompt_tokens.inc(prompt_tokens)

    def first_token(self, arrived: float) -> None:
        self.ttft.observe(time.perf_counter() - arrived)

    def request_ended(self, output) -> None:
        self.requests.labels("finished" if output is not None else "aborted").inc()
        if output is not None:
            self.by_graph.labels(output.graph).inc()

    def on_step(self, events, seconds: float) -> None:
        """Called by the engine thread after each step."""
        if events:
            self.generation_tokens.inc(len(events))
            self.tpot.observe(seconds)

    def render(self) -> bytes:
        stats = self.engine.stats()
        self.running.set(stats.running)
        self.waiting.set(stats.waiting)
        self.kv_usage.set(stats.blocks_used / stats.blocks_total if stats.blocks_total else 0.0)
        for state in ("used", "free", "evictable"):
            self.kv_blocks.labels(state).set(getattr(stats, f"blocks_{state}"))
        self.hit_rate.set(stats.hit_rate)
        self.preemptions.set(stats.preemptions)
        return generate_latest(self.registry)
