"""Timing helpers for bench modules: medians over repetitions, peak memory of a child process."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def timeit(fn, *, repeat: int = 5, warmup: int = 1) -> dict:
    """Wall time (median/min/max/all, s) and CPU time of this process (``cpu``: median of
    ``time.process_time`` deltas, all threads) over ``repeat`` calls after ``warmup``.

    Wall time grows with the machine's load; CPU seconds much less so: compare those when the
    machine is shared (``cpu`` is what a before/after comparison of the code should use)."""
    for _ in range(warmup):
        fn()
    ts, cpu = [], []
    for _ in range(repeat):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "all": ts,
            "cpu": statistics.median(cpu)}


# A tiny launcher: the measured command is forked from this small process, not from the (possibly
# large) bench process. Linux carries the pre-exec high-water RSS into the child's ru_maxrss, so a child
# forked/vforked from a 1 GB bench process would report >= 1 GB whatever it does. The launcher's own
# ~10 MB is the floor for every command alike.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
sys.stderr.write("\\n__WB_MAXRSS_KB__ %d\\n__WB_CPU_S__ %.6f\\n" % (ru.ru_maxrss, ru.ru_utime + ru.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_cmd(cmd: list[str], *, repeat: int = 3, warmup: int = 1, env=None, after=None) -> dict:
    """Wall time (median, s), CPU time (``cpu``: median of user+system seconds) and peak RSS (max over
    runs, bytes) of a command run as a subprocess.

    Peak RSS and CPU come from the child's rusage reported by a small launcher process (see _LAUNCHER);
    CPU includes the child's own waited-for children.

    Children run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed), as after a normal install:
    an environment that sets it makes every run recompile every module of a source checkout, while a
    site-packages peer ships compiled bytecode (measured: ~50 ms of a 350 ms ``workbench inspect``). The
    warm-up run writes the caches; ours and the peer get the same treatment.

    ``after``: called with no arguments after each timed (not warm-up) run, e.g. to read what it wrote."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def once():
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, *cmd], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env)
        dt_ = time.perf_counter() - t
        err = p.stderr.decode(errors="replace")
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {err[-500:]}")
        kb = [int(line.split()[1]) for line in err.splitlines() if line.startswith("__WB_MAXRSS_KB__")]
        cpu = [float(line.split()[1]) for line in err.splitlines() if line.startswith("__WB_CPU_S__")]
        return dt_, (kb[-1] if kb else 0) * 1024, (cpu[-1] if cpu else float("nan"))

    for _ in range(warmup):
        once()
    ts, mems, cpus = [], [], []
    for _ in range(repeat):
        a, b, c = once()
        if after is not None:
            after()
        ts.append(a)
        mems.append(b)
        cpus.append(c)
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "peak_rss": max(mems),
            "cpu": statistics.median(cpus)}


def spread(d: dict, unit_scale: float = 1.0, fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(d['min'] * unit_scale)}–{fmt.format(d['max'] * unit_scale)}"


PY = sys.executable
