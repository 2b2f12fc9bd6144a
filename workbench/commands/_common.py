"""Arguments and output helpers shared by the subcommands."""
from __future__ import annotations

import sys
from typing import Any

from ..backends import backend_names


def __getattr__(name: str):
    # ``BACKENDS``: the registered backends (kept for older imports; the registry is the one list).
    if name == "BACKENDS":
        return backend_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_model(p) -> None:
    p.add_argument("model", metavar="MODEL", help="path to an .onnx file")


def add_shapes(p) -> None:
    p.add_argument("--shapes", default=None, metavar="NAME:DIMS[/DIMS/DIMS],...",
                   help="input shapes, e.g. input:1x3x224x224 or input:1x3x224x224/8x3x224x224/32x3x224x224 "
                        "(min/opt/max for TensorRT profiles)")


def add_backend(p, default: str = "onnxruntime") -> None:
    p.add_argument("--backend", default=default, choices=backend_names(), help=f"backend (default: {default})")


def add_precisions(p, default: str = "fp32") -> None:
    from ..precision import precision_names

    p.add_argument("--precision", default=default, metavar="LIST",
                   help=f"comma-separated precisions from {','.join(precision_names())} (default: {default})")


def add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def parse_precisions(text: str) -> list[str]:
    """``--precision`` parsed by the one parser (:func:`workbench.precision.parse_precisions`)."""
    from ..precision import parse_precisions as parse

    return parse(text)


def number_in_range(kind: type = int, lo: float | None = None, hi: float | None = None):
    """An argparse ``type=`` that parses ``kind`` (int or float) and checks lo <= value <= hi."""
    import argparse

    what = "an integer" if kind is int else "a number"
    bounds = (f"{lo}-{hi}" if lo is not None and hi is not None else f">= {lo}" if lo is not None else f"<= {hi}")

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ((lo is None or v >= lo) and (hi is None or v <= hi)):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return v

    parse.__name__ = f"{kind.__name__} {bounds}"  # argparse shows it in "invalid <name> value" messages
    return parse


def positive_int(text: str) -> int:
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def emit_json(obj: Any) -> None:
    from ..fsutil import dumps_json

    sys.stdout.write(dumps_json(obj) + "\n")
