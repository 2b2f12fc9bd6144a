"""``workbench surgery MODEL [edits...] --out NEW.onnx``: validated GraphSurgeon edits from the shell.

Edits run in a fixed order, whatever the order of the flags: --set-shape, --remove, --extract,
--fold-constants, --simplify, --cleanup, --toposort. Each is validated (checker, strict shape
inference, an ONNX Runtime session); the first rejected edit stops the command (exit 2) and nothing is
written. The source model is never modified.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ._common import add_json, add_model, emit_json

NAME = "surgery"
HELP = "edit a model with GraphSurgeon (fold constants, cleanup, set shapes, extract, remove nodes)"
DESCRIPTION = __doc__

def add_arguments(p) -> None:
    add_model(p)
    p.add_argument("--set-shape", action="append", default=[], metavar="NAME:DIMS",
                   help="set an input's shape, e.g. x:1x3x224x224 or x:Nx3x224x224 (a name makes a dim dynamic, "
                        "? leaves it unknown; separate dims with ',' when a dim name contains an x); repeatable")
    p.add_argument("--remove", action="append", default=[], metavar="NODE",
                   help="remove a node by bypassing it (one data input and output); repeatable")
    p.add_argument("--extract", default=None, metavar="IN1,IN2:OUT1",
                   help="keep only the subgraph between these tensors")
    p.add_argument("--fold-constants", action="store_true", help="fold constant subgraphs (with ONNX Runtime)")
    p.add_argument("--simplify", action="store_true", help="simplify with onnxslim")
    p.add_argument("--cleanup", action="store_true", help="remove unused nodes, tensors and unused graph inputs")
    p.add_argument("--toposort", action="store_true", help="sort nodes topologically")
    p.add_argument("--no-validate", action="store_true",
                   help="skip validation of each edit (checker, shape inference, ONNX Runtime session)")
    p.add_argument("--script", default=None, metavar="OUT.py", help="also write a Python script that replays the edits")
    p.add_argument("--out", required=True, metavar="NEW.onnx", help="where to write the edited model (never MODEL)")
    add_json(p)


def parse_set_shape(text: str) -> tuple[str, list]:
    """``NAME:DIMS`` → (name, dims); dims are ints, dim names (dynamic) or None (``?``)."""
    from ..edit.ops import parse_dims

    name, sep, dims = text.rpartition(":")
    if not sep or not name or not dims:
        raise UsageError(f"--set-shape {text!r}: expected NAME:DIMS, e.g. x:1x3x224x224")
    try:
        return name, parse_dims(dims)
    except UsageError as e:
        raise UsageError(f"--set-shape {text!r}: {e}") from None


def parse_extract(text: str) -> tuple[list[str], list[str]]:
    """``IN1,IN2:OUT1`` → ([IN1, IN2], [OUT1])."""
    if text.count(":") != 1:
        raise UsageError(f"--extract {text!r}: expected INPUTS:OUTPUTS, e.g. a,b:c")
    ins, outs = ([s.strip() for s in part.split(",") if s.strip()] for part in text.split(":"))
    if not ins or not outs:
        raise UsageError(f"--extract {text!r}: give at least one input and one output tensor")
    return ins, outs


def _plan(args) -> list[tuple[str, dict]]:
    plan: list[tuple[str, dict]] = []
    for spec in args.set_shape:
        name, dims = parse_set_shape(spec)
        plan.append(("set_input", {"name": name, "shape": dims}))
    plan += [("remove_node", {"node": n}) for n in args.remove]
    if args.extract:
        ins, outs = parse_extract(args.extract)
        plan.append(("extract", {"inputs": ins, "outputs": outs}))
    if args.fold_constants:
        plan.append(("fold_constants", {}))
    if args.simplify:
        plan.append(("simplify", {}))
    if args.cleanup:
        plan.append(("cleanup", {"remove_unused_graph_inputs": True}))
    if args.toposort:
        plan.append(("toposort", {}))
    return plan


def run(args) -> int:
    src, out = Path(args.model), Path(args.out)
    same = out.absolute() == src.absolute() or (out.exists() and src.exists() and out.resolve() == src.resolve())
    if same:
        raise UsageError(f"--out {args.out} is the source model; write the edited model to a new file")
    if args.script and Path(args.script).absolute() in (src.absolute(), out.absolute()):
        raise UsageError("--script must not be the model or --out path")
    plan = _plan(args)
    if not plan:
        raise UsageError("no edit given: use --fold-constants, --cleanup, --toposort, --set-shape, --extract, "
                         "--remove or --simplify")

    from onnx_graphsurgeon.logger import G_LOGGER

    from ..edit import History, summarize
    from ..fsutil import atomic_write_text

    if not getattr(args, "debug", False):
        import onnxruntime

        G_LOGGER.severity = G_LOGGER.ERROR  # GraphSurgeon logs to stdout; keep it clean for --json
        onnxruntime.set_default_logger_severity(3)  # folding's ORT sessions warn about skipped fusions
    h = History(src, validate=not args.no_validate)
    if args.script:
        h.source.check_output_path(args.script, what="the replay script")  # e.g. the model's external data
    for op, params in plan:
        h.apply(op, **params)
    h.save(out)
    if args.script:
        atomic_write_text(args.script, h.to_script(source=src.resolve()))
    before, after = len(h.source.graph.node), len(h.model.graph.node)
    if args.json:
        emit_json({"model": str(src), "out": str(out), "nodes_before": before, "nodes_after": after,
                   "edits": [{"op": h[i].op, "params": h[i].params} for i in range(1, len(h))],
                   "diff": summarize(h.diff(0, len(h) - 1)), "hash": h.model.hash,
                   "script": args.script})
    else:
        ops_text = ", ".join(h[i].op for i in range(1, len(h)))
        print(f"surgery: {src.name} {before} -> {after} nodes ({ops_text}) -> {out}")
    return 0
