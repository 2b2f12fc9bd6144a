"""``workbench run MODEL [--data FILE.npz] [--shapes ...] [--batch N] [--seed N] [--json]``."""
from __future__ import annotations

from ._common import add_json, add_model, add_shapes, emit_json, positive_int

NAME = "run"
HELP = "run a model once on ONNX Runtime CPU and print output shapes, dtypes and stats"


def add_arguments(p) -> None:
    add_model(p)
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="inputs: the first batch of this .npz (keys = input names); default: synthetic inputs")
    add_shapes(p)
    p.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="batch size (first dim of dynamic inputs / samples taken from --data)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the synthetic inputs (default 0)")
    add_json(p)


def run(args) -> int:
    from ..run import run_model

    result = run_model(args.model, data=args.data, shapes=args.shapes, batch=args.batch, seed=args.seed)
    if args.json:
        emit_json(result.to_json())
    else:
        print(result.text())
    return 0
