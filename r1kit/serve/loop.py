"""One engine, stepped by its own thread, serving requests from asyncio handlers.

Handlers call `submit` (from the event loop): the request joins the engine's queue and the handler
gets an asyncio.Queue on which the engine thread puts each step's tokens for it, then the finished
RequestOutput. `abort` (a client that went away) stops the request and frees its KV blocks at
once. `--max-queue` bounds the requests waiting to be admitted: past it `submit` raises QueueFull
(a 429), so memory never grows without bound. `stop` lets running requests finish, within a
grace period, and refuses new ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from r1kit.inference.engine import Engine, RequestOutput, SamplingParams, TokenEvent

log = logging.getLogger("r1kit.serve")


class QueueFull(RuntimeError):
    pass


class ShuttingDown(RuntimeError):
    pass


@dataclass
class Finished:
    """The last item on a request's queue: its whole output (or the error that ended it)."""

    output: RequestOutput | None
    error: str | None = None


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    samples_left: int
    submitted: float = field(default_factory=time.perf_counter)


def _put_all(items: list) -> None:
    for queue, item in items:
        queue.put_nowait(item)


class EngineLoop:
    def __init__(self, engine: Engine, max_queue: int = 256):
        self.engine, self.max_queue = engine, max_queue
        self._subscribers: dict[int, _Subscriber] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="r1kit-engine", daemon=True)
        self.on_step = None  # called with (events, elapsed seconds) after each step (metrics)

    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> tuple[int, asyncio.Queue]:
        """Queue a request (call from the event loop); raises QueueFull, ShuttingDown, or ValueError
        for a request the engine refuses."""
        if self._stopping:
            raise ShuttingDown("the server is shutting down")
        if self.engine.num_waiting >= self.max_queue:
            raise QueueFull(f"{self.engine.num_waiting} requests are waiting (the limit is {self.max_queue}); retry later")
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            request_id = self.engine.add_request(prompt_ids, params)
            self._subscribers[request_id] = _Subscriber(asyncio.get_running_loop(), queue, params.n)
        self._wake.set()
        return request_id, queue

    def abort(self, request_id: int) -> None:
        """Stop a request whose client went away; its KV blocks are freed at once."""
        with self._lock:
            if self._subscribers.pop(request_id, None) is not None:
                self.engine.abort(request_id)
                self.engine.pop_output(request_id)

    def stop(self, grace_s: float = 10.0) -> None:
        """Refuse new requests, let the running ones finish within `grace_s`, then abort the rest
        (their clients get an error) and end the thread."""
        self._stopping = True
        deadline = time.monotonic() + grace_s
        while self._subscribers and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            for request_id, sub in list(self._subscribers.items()):
                self.engine.abort(request_id)
                self.engine.pop_output(request_id)
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, Finished(None, "the server shut down"))
            self._subscribers.clear()
        self._wake.set()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        while True:
            if self._stopping and not self._subscribers:
                return
            if not self.engine.has_unfinished():
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            started = time.perf_counter()
            try:
                with self._lock:
                    events = self.engine.step()
                    self._deliver(events)
            except Exception as e:  # a bug must not leave clients waiting forever: fail them, keep serving
                log.exception("engine step failed")
                self._fail_all(f"internal error in the engine: {type(e).__name__}: {e}")
                continue
            if self.on_step is not None:
                self.on_step(events, time.perf_counter() - started)

    def _deliver(self, events: list[TokenEvent]) -> None:
        """Hand each request its step's tokens (and its output when it is done), with one wake-up of
        each event loop per step: a wake-up is a write to the loop's self-pipe, and 64 streams made
        one per token each."""
        by_request: dict[int, list[TokenEvent]] = {}
        for event in events:
            by_request.setdefault(event.request_id, []).append(event)
        per_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request_id, request_events in by_request.items():
            sub = self._subscribers.get(request_id)
            if sub is None:  # aborted between the step and now
                continue
            sub.samples_left -= sum(e.finish_reason is not None for e in request_events)
            items = per_loop.setdefault(sub.loop, [])
            items.append((sub.queue, request_events))
            if sub.samples_left == 0:
                del self._subscribers[request_id]
                items.append((sub.queue, Finished(self.engine.pop_output(request_id))))
        for loop, items in per_loop.items():
            loop.call_soon_threadsafe(_put_all, items)

    def _fail_all(self, message: str) -> None:
        with self._lock:
            for request_id, sub in list(self._subscribers.items()):
                self.engine.abort(request_id)
                self.engine.pop_output(request_id)
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, Finished(None, message))
            self._subscribers.clear()
