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


def add_batch_axis(p) -> None:
    p.add_argument("--batch-axis", default=None, metavar="NAME:AXIS,...",
                   help="batch axis of inputs whose batch is not axis 0, e.g. state:1 (or sr:none for inputs "
                        "passed unchanged to every batch); default: the shape doctor's choice (workbench inspect)")


def add_min_calib_samples(p) -> None:
    p.add_argument("--min-calib-samples", type=positive_int, default=None, metavar="N",
                   help="refuse int8/fp8 calibration with fewer than N samples (default: fewer than 16 only warns)")


def dataset(args, model, path, *, labels: str | None = None):
    """``--data``/``--calib`` FILE.npz as an NpzDataset batched along each input's batch axis
    (``--batch-axis`` overrides); None stays None. Bad axes/arrays raise one-line errors (exit 2)."""
    if path is None or getattr(args, "batch_axis", None) is None:
        return path  # the library reads the file with the doctor's batch axes
    from ..data import NpzDataset

    return NpzDataset(path, model, allow_extra=True, label_keys=[labels] if labels else (),
                      batch_axis=getattr(args, "batch_axis", None))


def calibration(args, model, calib_path, data_path=None):
    """The ``calib=`` argument for the library: the ``--calib`` file (else ``--data`` when
    ``--min-calib-samples`` is given) with ``--batch-axis`` and ``--min-calib-samples`` attached."""
    min_n = getattr(args, "min_calib_samples", None)
    axis = getattr(args, "batch_axis", None)
    path = calib_path if calib_path is not None else (data_path if min_n is not None else None)
    if path is None:
        return None
    if min_n is None and axis is None:
        return path
    from ..precision.calibration import CalibrationData

    return CalibrationData(path, min_samples=min_n, batch_axis=axis)


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
