"""Native log lines (ONNX Runtime, cuDNN, CUDA) captured, counted once, and explained.

ONNX Runtime's CUDA provider and the cuDNN frontend write straight to the process's stdout/stderr file
descriptors from C++, bypassing Python: a notebook or a suite log fills with the same line hundreds of
times ("[cudnn_frontend] Error: No execution plans support the graph"), and nobody can tell whether it
means a fallback. :func:`capture_native_output` redirects file descriptors 1 and 2 into a temporary
file while a block runs; :func:`summarize` groups the lines by message (numbers and names masked),
counts them, and attaches what each known message means for the numbers being measured.

    with capture_native_output() as log:
        engine = backend.build(variant)
    for item in log.summary():
        print(item["count"], item["message"], item["meaning"])
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

#: (regex, meaning, fallback?) for messages seen from ONNX Runtime's CUDA provider and cuDNN
KNOWN: list[tuple[str, str, bool]] = [
    (r"No execution plans support the graph",
     "cuDNN's frontend has no engine for the convolution graph ONNX Runtime asked for (conv fused with bias/"
     "activation, or strict fp32 with tensor cores deselected). ORT's Conv (CreateCudnnFeExecutionPlan) "
     "then retries unfused (bias added by a separate cudnnAddTensor kernel) and with TF32 allowed: a "
     "fallback, so that Conv runs as more, slower kernels and an 'fp32' Conv may use TF32 math. The CUPTI "
     "per-layer table lists the kernels that actually ran for each node.", True),
    (r"running in Fallback mode",
     "cudnn_conv_algo_search is set to its FALLBACK heuristic: cuDNN picks a generic, possibly very slow "
     "algorithm for this Conv.", True),
    (r"Some nodes were not assigned to the preferred execution providers",
     "ONNX Runtime placed some nodes on its CPU provider (usually shape arithmetic, which is intended); "
     "compute nodes on CPU mean a fallback with host-device copies (the per-layer table shows provider CPU).",
     True),
    (r"No registered plugin EP device found for 'CUDAExecutionProvider'",
     "ONNX Runtime 1.31+ looked for a plugin-EP device for the CUDA provider and found none; the built-in CUDA "
     "provider is used as before. Harmless: no fallback.", False),
    (r"UserWarning: the float32 number .* will be truncated to",
     "onnxconverter-common's float16 conversion clamped a constant outside fp16's range (or flushed a tiny one "
     "to fp16's smallest subnormal): an accuracy cause for the fp16 variant; seen for bf16 variants too, which "
     "means the constant went through fp16 on its way to bf16.", False),
    (r"Removing initializer .* It is not used by any node",
     "ONNX Runtime dropped an unused initializer while optimizing the graph. Harmless.", False),
    (r"Memcpy nodes are added to the graph",
     "ONNX Runtime inserted host<->device copies between nodes on different providers; they appear as "
     "Memcpy nodes or copy rows in the per-layer table.", False),
    (r"(CUDA|CUDNN|CUBLAS) failure|CUDA error|cudaError",
     "a CUDA/cuDNN/cuBLAS call failed: the run's results are not trustworthy.", False),
    (r"Could not load library|cannot open shared object file|Failed to load library",
     "a native library (cuDNN, cuBLAS, CUDA runtime) did not load: the CUDA provider may be unusable.", False),
]
_MASKS = [(re.compile(r"0x[0-9a-fA-F]+"), "0x…"), (re.compile(r"\d+(\.\d+)?(?!x…)"), "N"),
          (re.compile(r"'[^']*'"), "'…'"), (re.compile(r'"[^"]*"'), '"…"')]
_PY_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # ORT colours its console log lines
_STAMP = re.compile(r"^\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[A-Z]\w*:[^\]]*\]\s*")  # ORT's log prefix


def _clean(line: str) -> str:
    return _STAMP.sub("", _ANSI.sub("", line)).strip()


def _key(line: str) -> str:
    line = _clean(line)
    for rx, rep in _MASKS:
        line = rx.sub(rep, line)
    return line[:300]


def summarize(text: str) -> list[dict]:
    """Lines grouped by masked message, most frequent first: ``{message, count, example, meaning,
    fallback}`` (``meaning`` empty and ``fallback`` None for messages this module does not know)."""
    groups: dict[str, dict] = {}
    prev = ""
    for raw in text.splitlines():
        # Python's warnings print "file:line: Category: message" then the source line, indented: skip the echo
        echo = raw.startswith("  ") and _PY_WARNING.match(prev)
        prev = raw
        if not raw.strip() or echo:
            continue
        k = _key(raw)
        g = groups.setdefault(k, {"message": k, "count": 0, "example": _clean(raw)[:500],
                                  "meaning": "", "fallback": None})
        g["count"] += 1
    for g in groups.values():
        for rx, meaning, fallback in KNOWN:
            if re.search(rx, g["example"]):
                g["meaning"], g["fallback"] = meaning, fallback
                break
    return sorted(groups.values(), key=lambda g: (-g["count"], g["message"]))


def summary_text(items: list[dict], limit: int = 10) -> str:
    """One line per message: ``N× message — meaning``."""
    out = []
    for g in items[:limit]:
        line = f"{g['count']}× {g['example'][:200]}"
        if g["meaning"]:
            line += f" — {'FALLBACK: ' if g['fallback'] else ''}{g['meaning']}"
        out.append(line)
    if len(items) > limit:
        out.append(f"… {len(items) - limit} more distinct messages")
    return "\n".join(out)


@dataclass
class NativeLog:
    text: str = ""
    items: list = field(default_factory=list)

    def summary(self) -> list[dict]:
        return self.items


@contextlib.contextmanager
def capture_native_output(fds: tuple[int, ...] = (1, 2)):
    """Redirect the process's stdout/stderr file descriptors into a temp file for the block; yields a
    :class:`NativeLog` filled on exit (``text``, ``summary()``). Python's own ``sys.stdout``/``sys.stderr``
    are flushed around the switch; output written inside goes to the log, not the terminal."""
    log = NativeLog()
    saved = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        try:
            for fd in fds:
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(tmp.fileno(), fd)
                except OSError:
                    continue
            yield log
        finally:
            for s in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    s.flush()
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            tmp.seek(0)
            log.text = tmp.read(8 << 20).decode("utf-8", "replace")  # bounded: 8 MiB of log at most
            log.items = summarize(log.text)
