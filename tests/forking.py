"""Run a function in a 'fork' child and return its result (for fork-safety tests)."""
from __future__ import annotations

import multiprocessing as mp


def _call_and_put(fn, args, q) -> None:
    q.put(fn(*args))


def run_in_fork(fn, *args, timeout: float = 120):
    """fn(*args) computed in a forked child; a hang fails the caller after `timeout` seconds."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_call_and_put, args=(fn, args, q))
    child.start()
    try:
        result = q.get(timeout=timeout)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    return result
