"""One engine, stepped by its own thread, serving requests from asyncio handlers.

Handlers call `submit` (from the event loop): the request is checked at once (a 400 for a bad one)
and put in an inbox the engine thread empties before each step, so the event loop never waits for
a step; the handler gets an asyncio.Queue on which the engine thread puts each step's tokens for
it, then the finished RequestOutput. `abort` (a client that went away) stops the request; its KV
blocks are freed before the next step. `--max-queue` bounds the requests waiting to be admitted: past it `submit` raises QueueFull
(a 429), so memory never grows without bound. `stop` lets running requests finish, within a
grace period, and refuses new ones.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
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
    for target, item in items:
        target.put_nowait(item)


class EngineLoop:
    def __init__(self, engine: Engine, max_queue: int = 256):
        self.engine, self.max_queue = engine, max_queue
        # the event loop never waits for a step: requests and aborts go through this inbox, which the
        # engine thread empties before each step (the engine's own lock is held for a whole step)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._subscribers: dict[int, _Subscriber] = {}  # by the loop's own key
        self._subs_lock = threading.Lock()  # held for dictionary updates only, never across a step
        self._keys = itertools.count()
        self._engine_id: dict[int, int] = {}  # key -> engine request id (engine thread only)
        self._key_of: dict[int, int] = {}  # engine request id -> key (engine thread only)
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
        """Queue a request (call from the event loop); returns its key and the queue its tokens come
        on. Raises QueueFull, ShuttingDown, or ValueError for a request the engine refuses."""
        if self._stopping:
            raise ShuttingDown("the server is shutting down")
        # requests that will have to wait: those not admitted yet, less the rows free for them now
        free_rows = max(0, self.engine.max_batch_size - self.engine.num_running)
        waiting = self.engine.num_waiting + self._inbox.qsize() - free_rows
        if waiting >= self.max_queue:
            raise QueueFull(f"{waiting} requests are waiting (the limit is {self.max_queue}); retry later")
        self.engine.check_request(prompt_ids, params)  # a bad request is a 400 now, not an error later
        key, q = next(self._keys), asyncio.Queue()
        with self._subs_lock:
            self._subscribers[key] = _Subscriber(asyncio.get_running_loop(), q, params.n)
        self._inbox.put(("add", key, prompt_ids, params))
        self._wake.set()
        return key, q

    def abort(self, key: int) -> None:
        """Stop a request whose client went away; the engine thread frees its KV blocks before its next step."""
        with self._subs_lock:
            if self._subscribers.pop(key, None) is None:
                return
        self._inbox.put(("abort", key))
        self._wake.set()

    def stop(self, grace_s: float = 10.0) -> None:
        """Refuse new requests, let the running ones finish within `grace_s`, then end the rest
        (their clients get an error) and the thread."""
        self._stopping = True
        deadline = time.monotonic() + grace_s
        while self._subscribers and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._subs_lock:
            left, self._subscribers = self._subscribers, {}
        for key, sub in left.items():
            self._inbox.put(("abort", key))
            sub.loop.call_soon_threadsafe(sub.queue.put_nowait, Finished(None, "the server shut down"))
        self._wake.set()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        while True:
            self._drain_inbox()
            if self._stopping and not self._subscribers and self._inbox.empty():
                return
            if not self.engine.has_unfinished():
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            started = time.perf_counter()
            try:
                events = self.engine.step()
            except Exception as e:  # a bug must not leave clients waiting forever: fail them, keep serving
                log.exception("engine step failed")
                self._fail_all(f"internal error in the engine: {type(e).__name__}: {e}")
                continue
            self._deliver(events)
            if self.on_step is not None:
                self.on_step(events, time.perf_counter() - started)

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item[0] == "add":
                _, key, prompt_ids, params = item
                try:
                    request_id = self.engine.add_request(prompt_ids, params)
                except ValueError as e:  # checked at submit; only a changed engine gets here
                    self._finish(key, Finished(None, str(e)))
                    continue
                self._engine_id[key], self._key_of[request_id] = request_id, key
                if key not in self._subscribers:  # aborted before it was added
                    self._inbox.put(("abort", key))
            else:
                request_id = self._engine_id.pop(item[1], None)
                if request_id is not None:
                    del self._key_of[request_id]
                    self.engine.abort(request_id)
                    self.engine.pop_output(request_id)

    def _finish(self, key: int, item: Finished) -> None:
        with self._subs_lock:
            sub = self._subscribers.pop(key, None)
        if sub is not None:
            sub.loop.call_soon_threadsafe(sub.queue.put_nowait, item)

    def _deliver(self, events: list[TokenEvent]) -> None:
        """Hand each request its step's tokens (and its output when it is done), with one wake-up of
        each event loop per step: a wake-up is a write to the loop's self-pipe, and 64 streams made
        one per token each."""
        by_request: dict[int, list[TokenEvent]] = {}
        for event in events:
            by_request.setdefault(event.request_id, []).append(event)
        per_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request_id, request_events in by_request.items():
            key = self._key_of.get(request_id)
            sub = self._subscribers.get(key)
            if sub is None:  # aborted between the step and now
                continue
            sub.samples_left -= sum(e.finish_reason is not None for e in request_events)
            items = per_loop.setdefault(sub.loop, [])
            items.append((sub.queue, request_events))
            if sub.samples_left == 0:
                with self._subs_lock:
                    self._subscribers.pop(key, None)
                del self._engine_id[key], self._key_of[request_id]
                items.append((sub.queue, Finished(self.engine.pop_output(request_id))))
        for loop, items in per_loop.items():
            loop.call_soon_threadsafe(_put_all, items)

    def _fail_all(self, message: str) -> None:
        with self._subs_lock:
            left, self._subscribers = self._subscribers, {}
        for key, sub in left.items():
            request_id = self._engine_id.pop(key, None)
            if request_id is not None:
                self._key_of.pop(request_id, None)
                self.engine.abort(request_id)
                self.engine.pop_output(request_id)
            sub.loop.call_soon_threadsafe(sub.queue.put_nowait, Finished(None, message))
