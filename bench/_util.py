"""Timing helpers for bench modules: medians over repetitions, peak memory of a child process."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time


def timeit(fn, *, repeat: int = 5, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "all": ts}


def run_cmd(cmd: list[str], *, repeat: int = 3, warmup: int = 1, env=None) -> dict:
    """Wall time (median) and peak RSS (max over runs, bytes) of a command, via /usr/bin/time-free
    resource accounting of the child (os.wait4)."""
    import os

    def once():
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        dt_ = time.perf_counter() - t
        err = p.stderr.read().decode(errors="replace") if p.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {code}: {err[-500:]}")
        return dt_, ru.ru_maxrss * 1024

    for _ in range(warmup):
        once()
    ts, mems = [], []
    for _ in range(repeat):
        a, b = once()
        ts.append(a)
        mems.append(b)
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "peak_rss": max(mems)}


def spread(d: dict, unit_scale: float = 1.0, fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(d['min'] * unit_scale)}–{fmt.format(d['max'] * unit_scale)}"


PY = sys.executable
