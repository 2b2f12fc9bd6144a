"""Run a command; print wall seconds, CPU seconds and peak RSS of the child (ru_maxrss)."""
import json
import resource
import subprocess
import sys
import time

t = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rec = {"name": sys.argv[1], "rc": rc, "wall_s": round(wall, 1), "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
       "peak_rss_mb": round(ru.ru_maxrss / 1024)}
print("TIMEIT " + json.dumps(rec), flush=True)
