"""``workbench build``: build a model at several precisions on one backend (thin over ``build_variants``).

Exit codes: 0 when every requested precision was built, taken from the cache, or skipped with a
reason (an unsupported backend/precision combination is not an error); 2 when any variant failed
because of its input (recipe or build error, bad shapes, missing calibration data) or the arguments
are wrong; 1 when a variant failed with an internal error (a bug).
"""
from __future__ import annotations

import sys

from ._common import (add_backend, add_batch_axis, add_json, add_min_calib_samples, add_model, add_precisions,
                      add_shapes, calibration, emit_json, number_in_range, parse_precisions, positive_int)

NAME = "build"
HELP = "build engines/sessions for a model at several precisions"
DESCRIPTION = __doc__


_opt_level = number_in_range(int, 0, 5)


def add_arguments(p) -> None:
    add_model(p)
    add_backend(p)
    add_precisions(p)
    add_shapes(p)
    p.add_argument("--calib", default=None, metavar="FILE.npz", help="calibration inputs for int8/fp8 (.npz, one key per input)")
    add_min_calib_samples(p)
    add_batch_axis(p)
    p.add_argument("--workspace-mb", type=positive_int, default=None, metavar="N", help="TensorRT workspace limit in MiB")
    p.add_argument("--opt-level", type=_opt_level, default=None, metavar="N", help="TensorRT builder optimization level 0-5")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="engine cache folder (TensorRT backends)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: <variant>.onnx, <variant>.engine, build.json")
    p.add_argument("--freeze", default=None, metavar="NAME=VALUE,...",
                   help="TensorRT backends: replace inputs by constants before the build (e.g. sr=16000) so If "
                        "conditions on them fold; the engine answers for that value only")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json(p)


def parse_freeze(text: str | None) -> dict:
    """``sr=16000,flag=1`` → {"sr": 16000, "flag": 1} (numbers; a list as 1x2x3 is not accepted)."""
    from ..errors import UsageError

    out: dict = {}
    for part in filter(None, (x.strip() for x in (text or "").split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"bad --freeze entry {part!r}: expected NAME=VALUE like sr=16000")
        try:
            num = float(value)
        except ValueError:
            raise UsageError(f"bad --freeze value {value!r} for {name.strip()!r}: expected a number") from None
        out[name.strip()] = int(num) if num.is_integer() and "." not in value else num
    return out


def run(args) -> int:
    from ..backends.base import BuildOptions
    from ..builds import build_variants

    precisions = parse_precisions(args.precision)
    options = BuildOptions(workspace_mb=args.workspace_mb, opt_level=args.opt_level, progress=not args.no_progress)
    freeze = parse_freeze(getattr(args, "freeze", None))
    if freeze:
        if args.backend not in ("tensorrt", "tensorrt-rtx"):
            from ..errors import UsageError
            raise UsageError(f"--freeze applies to TensorRT backends (tensorrt, tensorrt-rtx), not {args.backend!r}: "
                             "ONNX Runtime runs If nodes itself")
        options.extra["freeze"] = freeze
    from ..model import load

    model = load(args.model)
    bs = build_variants(model, precisions, args.backend, shapes=args.shapes,
                        calib=calibration(args, model, args.calib), out_dir=args.out,
                        options=options, cache=args.cache_dir, progress=not args.no_progress)
    if args.json:
        emit_json(bs.to_json())
    else:
        for r in bs.results:
            size = f"{r.record.engine_bytes / 2**20:.1f} MiB" if r.ok and r.record.engine_bytes else ""
            t = f"{r.record.build_time_s:.2f} s" if r.ok else ""
            line = f"{r.name:<40} {r.status:<8} {t:>9} {size:>10}"
            if r.reason:
                line += f"  {r.reason}"
            print(line.rstrip())
        print(f"wrote {args.out}/build.json")
    internal = [r for r in bs.results if r.internal]
    if internal:
        sys.stderr.write("workbench build: internal error (a bug; rerun with --debug and report it): "
                         + "; ".join(f"{r.precision}: {r.reason}" for r in internal).replace("\n", " ")[:800] + "\n")
        return 1
    failed = [r for r in bs.results if r.status == "failed"]
    if failed:
        sys.stderr.write(f"workbench build: {len(failed)} variant(s) failed: "
                         + "; ".join(f"{r.precision}: {r.reason}" for r in failed).replace("\n", " ") + "\n")
        return 2
    return 0
