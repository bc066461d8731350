"""Math-Verify under a time limit that holds in any thread, its failures counted and logged.

Math-Verify bounds sympy with SIGALRM, which only the main thread may set. In the main thread
r1kit uses that timeout; in any other (the server's handler threads, a helper thread of a trainer)
the comparison goes to one worker process, started on first use ("spawn": forking a threaded
process is unsafe) and waited on for at most TIMEOUT_SECONDS. A worker that does not answer in
time is killed and replaced, and the comparison counts as not equal. A timeout or an error inside
Math-Verify is never silently scored as wrong: it is counted (`failures()`) and logged.
"""

from __future__ import annotations

import importlib
import logging
import math
import multiprocessing
import threading

TIMEOUT_SECONDS = 2.0  # per comparison; the screen in answers.py keeps sympy's work far below it
STARTUP_SECONDS = 60.0  # a fresh worker imports Math-Verify and sympy (~1-2 s) before its first answer

log = logging.getLogger(__name__)
_failures = {"timeout": 0, "error": 0}
_lock = threading.Lock()  # one request in flight to the worker at a time
_worker: tuple | None = None  # (process, connection)


def failures() -> dict[str, int]:
    """How many comparisons Math-Verify did not finish (timeouts) or failed (errors) so far."""
    return dict(_failures)


def _record(kind: str, predicted: str, gold: str, detail: str = "") -> None:
    _failures[kind] += 1
    log.warning("Math-Verify %s comparing %r with %r%s; scored as not equal", kind, predicted, gold,
                f": {detail}" if detail else "")


def _compare(predicted: str, gold: str) -> bool:
    """Math-Verify's verdict with its own SIGALRM timeout (whole seconds: a float one fails inside
    Math-Verify and reads as 'not equal'); the main thread of a process only."""
    from math_verify import parse, verify

    seconds = max(1, math.ceil(TIMEOUT_SECONDS))
    gold_parsed = parse(f"${gold}$", parsing_timeout=seconds)
    predicted_parsed = parse(f"${predicted}$", parsing_timeout=seconds)
    return bool(gold_parsed and predicted_parsed and verify(gold_parsed, predicted_parsed, timeout_seconds=seconds))


def math_verify_equal(predicted: str, gold: str) -> bool:
    """Math-Verify's verdict on two answers that passed answers.py's screen, within the time limit."""
    if threading.current_thread() is threading.main_thread():
        from math_verify.errors import TimeoutException

        try:
            return _compare(predicted, gold)
        except TimeoutException:
            _record("timeout", predicted, gold)
        except Exception as e:  # noqa: BLE001 - any failure inside Math-Verify is counted, not raised
            _record("error", predicted, gold, f"{type(e).__name__}: {e}")
        return False
    return _in_worker(predicted, gold)


def _serve(connection) -> None:
    """The worker's loop: answer each (predicted, gold) with ("ok", verdict) or ("error", why)."""
    importlib.import_module("math_verify")  # with sympy, before "ready": the first answer is timed like the rest

    connection.send(("ready", None))
    while True:
        try:
            predicted, gold = connection.recv()
        except EOFError:
            return
        try:
            connection.send(("ok", _compare(predicted, gold)))  # the worker's main thread: SIGALRM works here too
        except Exception as e:  # noqa: BLE001
            connection.send(("error", f"{type(e).__name__}: {e}"))


def _in_worker(predicted: str, gold: str) -> bool:
    global _worker
    with _lock:
        if _worker is None:
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child,), daemon=True, name="r1kit-math-verify")
            process.start()
            if not parent.poll(STARTUP_SECONDS):
                process.kill()
                _record("timeout", predicted, gold, "the worker did not start")
                return False
            parent.recv()  # "ready"
            _worker = (process, parent)
        process, connection = _worker
        connection.send((predicted, gold))
        if not connection.poll(TIMEOUT_SECONDS):
            process.kill()  # sympy may be stuck: the worker goes, the next comparison starts another
            process.join()
            _worker = None
            _record("timeout", predicted, gold)
            return False
        status, value = connection.recv()
    if status == "error":
        _record("error", predicted, gold, value)
        return False
    return value
