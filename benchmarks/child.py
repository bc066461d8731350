"""Measurements in a fresh process (so each one's peak memory is its own) that never hang: the
parent waits for the result, but not past a timeout, and not at all once the child has died."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import time


def run_child(target, args: tuple, timeout_s: float) -> dict:
    """target(*args, queue) in a spawned process; the dict it puts on the queue. A child that dies
    without a result raises RuntimeError at once; one still running after timeout_s is killed and
    raises TimeoutError."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, results))
    proc.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return results.get(timeout=0.5)
            except queue_module.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"the measuring process died (exit code {proc.exitcode}) without a result") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no result within {timeout_s:.0f} s; the measuring process was killed") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
