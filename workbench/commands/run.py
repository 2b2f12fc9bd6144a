"""``workbench run MODEL [--data FILE.npz] [--shapes ...] [--batch N] [--seed N] [--json]``."""
from __future__ import annotations

from ._common import add_batch_axis, add_json, add_model, add_shapes, dataset, emit_json, positive_int

NAME = "run"
HELP = "run a model once on ONNX Runtime CPU and print output shapes, dtypes and stats"


def add_arguments(p) -> None:
    add_model(p)
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="inputs: the first batch of this .npz (keys = input names); default: synthetic inputs")
    add_shapes(p)
    p.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="batch size (on each input's batch axis / samples taken from --data)")
    add_batch_axis(p)
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the synthetic inputs (default 0)")
    add_json(p)


def run(args) -> int:
    from ..run import run_model

    from ..model import load

    data = dataset(args, load(args.model), args.data) if args.data else None
    result = run_model(args.model, data=data, shapes=args.shapes, batch=args.batch, seed=args.seed)
    if args.json:
        emit_json(result.to_json())
    else:
        print(result.text())
    return 0
