"""``workbench inspect MODEL [--shapes ...] [--batch-axis ...] [--json] [--detail]``: counts, params, IO, FLOPs,
and the shape doctor's findings (``workbench.shapes.check``; JSON key ``shape_doctor``); ``--fp16-safety`` adds
the fp16 trap table (``workbench.precision.fp16safety.fp16_safety``; JSON key ``fp16_safety``)."""
from __future__ import annotations

from ._common import add_batch_axis, add_json, add_model, add_shapes, emit_json

NAME = "inspect"
HELP = "summarize a model: ops, params, inputs/outputs, opsets, shapes, FLOPs"


def add_arguments(p) -> None:
    add_model(p)
    add_shapes(p)
    add_batch_axis(p)
    add_json(p)
    p.add_argument("--detail", action="store_true",
                   help="with --json: add per-node rows (node_list) and the tensor table (tensors)")
    p.add_argument("--no-hash", action="store_true",
                   help="skip the content hash (which reads external data files)")
    p.add_argument("--fp16-safety", action="store_true",
                   help="also list fp16 traps (LayerNorm, mask constants, Pow/Exp/ReduceSum) and what the fp16 recipe "
                        "does about each (JSON key fp16_safety)")


def run(args) -> int:
    from ..inspect import inspect

    from ..model import load
    from ..shapes import diagnose

    model = load(args.model)
    info = inspect(model, shapes=args.shapes, hash=not args.no_hash)
    doctor = diagnose(model, args.shapes, batch_axis=args.batch_axis)
    safety = None
    if getattr(args, "fp16_safety", False):
        from ..precision.fp16safety import fp16_safety
        safety = fp16_safety(model)
    if args.json:
        extra = {"fp16_safety": safety.to_dict(orient="records")} if safety is not None else {}
        emit_json({**info.to_json(detail=args.detail), "shape_doctor": doctor.to_json(), **extra})
    else:
        print(info.text())
        print("shape doctor (workbench.shapes.check)")
        print(doctor.text() or "no findings")
        if safety is not None:
            print("fp16 safety (workbench.precision.fp16safety.fp16_safety)")
            print(safety.drop(columns=["value"]).to_string(index=False) if len(safety) else "no findings")
    return 0
