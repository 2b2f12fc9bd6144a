"""``workbench inspect MODEL [--shapes ...] [--batch-axis ...] [--json] [--detail]``: counts, params, IO, FLOPs,
and the shape doctor's findings (``workbench.shapes.check``; JSON key ``shape_doctor``)."""
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


def run(args) -> int:
    from ..inspect import inspect

    from ..model import load
    from ..shapes import diagnose

    model = load(args.model)
    info = inspect(model, shapes=args.shapes, hash=not args.no_hash)
    doctor = diagnose(model, args.shapes, batch_axis=args.batch_axis)
    if args.json:
        emit_json({**info.to_json(detail=args.detail), "shape_doctor": doctor.to_json()})
    else:
        print(info.text())
        print("shape doctor (workbench.shapes.check)")
        print(doctor.text() or "no findings")
    return 0
