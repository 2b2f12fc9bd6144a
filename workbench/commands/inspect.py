"""``workbench inspect MODEL [--shapes ...] [--json] [--detail]``: counts, params, IO, FLOPs."""
from __future__ import annotations

from ._common import add_json, add_model, add_shapes, emit_json

NAME = "inspect"
HELP = "summarize a model: ops, params, inputs/outputs, opsets, shapes, FLOPs"


def add_arguments(p) -> None:
    add_model(p)
    add_shapes(p)
    add_json(p)
    p.add_argument("--detail", action="store_true",
                   help="with --json: add per-node rows (node_list) and the tensor table (tensors)")
    p.add_argument("--no-hash", action="store_true",
                   help="skip the content hash (which reads external data files)")


def run(args) -> int:
    from ..inspect import inspect

    info = inspect(args.model, shapes=args.shapes, hash=not args.no_hash)
    if args.json:
        emit_json(info.to_json(detail=args.detail))
    else:
        print(info.text())
    return 0
