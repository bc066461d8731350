"""Benchmark scripts measure in a child process: one that dies is reported at once, one that hangs
is killed at the timeout (benchmarks/child.py), instead of the parent waiting for ever."""

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from child import run_child  # noqa: E402


def answers(value, queue):
    queue.put({"value": value})


def dies(queue):
    os._exit(3)


def hangs(queue):
    time.sleep(600)


def test_a_result_comes_back():
    assert run_child(answers, (7,), timeout_s=60) == {"value": 7}


def test_a_dead_child_is_reported_at_once():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="died \\(exit code 3\\) without a result"):
        run_child(dies, (), timeout_s=600)
    assert time.monotonic() - t0 < 60


def test_a_hanging_child_is_killed_at_the_timeout():
    with pytest.raises(TimeoutError, match="no result within 3 s"):
        run_child(hangs, (), timeout_s=3)
