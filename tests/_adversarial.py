"""The adversarial case generator and worker behind tests/test_adversarial.py (docs/security.md).

Every case builds its own folder ``<root>/c<i>/`` (``src/`` with the inputs, ``out/`` for outputs) and
runs one CLI command in-process through ``workbench.cli.main`` (stdout/stderr captured) or one public
API call. The contract checked after each case:

- exit code 0 or 2 (API: returns, or raises a ``WorkbenchError``); never a traceback;
- at most one non-empty stderr line (exactly one on exit 2) — without ``--debug``;
- every file that existed before the case has the same bytes after it (the source model, its
  external data, the input data — also when an output path names one of them);
- new files appear only inside the case's output location; nothing appears beside the case folder;
- the case's peak RSS (VmHWM, reset before each case) stays under ``RSS_LIMIT``; its time under ``TIME_LIMIT``.

Cases are generated deterministically from a seed: fixed classes (output collisions, special files,
numbers out of range, broken models, hostile .npz files, API misuse) plus seeded fuzzing (byte-level
mutations of real model files and structured mutations of the ONNX proto).

Run as a worker: ``python tests/_adversarial.py ROOT SEED START STOP`` prints one JSON line per case.
The test spawns workers so that a native crash (a segfault in a runtime) is caught and reported as a
failure of that case instead of killing pytest.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
RSS_LIMIT_MB = 1200  # per case peak RSS (the worker itself holds ~350 MB of libraries)
TIME_LIMIT_S = 90.0
AS_LIMIT = 6 << 30  # the worker's address-space cap
FAST = ["--no-progress"]
PROF = ["--iterations", "2", "--warmup", "1", "--layer-iterations", "1"]


@dataclass
class Case:
    id: str
    run: Callable[[Path], dict]  # given the case folder: sets up files, returns {"argv" | "api", "out"}


# ---------------------------------------------------------------------------------------------- assets
def _tiny_model(*, batch="N", name="tiny", ext_dir: Path | None = None, ext_location="w.bin"):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 64)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal((64,)).astype(np.float32), "B")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "B"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 64])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def make_assets(d: Path) -> Path:
    """The inputs every case copies from: real sample models and data, small synthetic models."""
    import numpy as np
    import onnx

    d.mkdir(parents=True, exist_ok=True)
    for f in ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz"):
        shutil.copy(SAMPLES / f, d / f)
    onnx.save(_tiny_model(), str(d / "tiny.onnx"))
    onnx.save(_tiny_model(batch=8), str(d / "fixed8.onnx"))
    rng = np.random.default_rng(1)
    np.savez(d / "tiny.npz", x=rng.standard_normal((8, 16)).astype(np.float32),
             label=rng.integers(0, 64, 8))
    np.savez(d / "tiny3.npz", x=rng.standard_normal((3, 16)).astype(np.float32))
    ext = d / "ext"
    ext.mkdir(exist_ok=True)
    onnx.save_model(_tiny_model(name="big"), str(ext / "big.onnx"), save_as_external_data=True,
                    location="big-fp16.onnx", size_threshold=0)  # data file named like a variant
    return d


def _copy(assets: Path, src: Path, *names: str) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for n in names:
        p = assets / n
        if p.is_dir():
            shutil.copytree(p, src / n)
        else:
            shutil.copy(p, src / Path(n).name)


def _save(proto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


# ---------------------------------------------------------------------------------------------- .npz attacks
def _npy_bytes(shape, dtype="<f4", body: bytes = b"") -> bytes:
    import numpy as np

    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return hdr.getvalue() + body


def zip_bomb(path: Path, rows: int = 17_000_000, cols: int = 16) -> Path:
    """A valid npz of ``rows`` x ``cols`` float32 zeros: ~1 MB on disk, ~1.1 GB decompressed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(_npy_bytes((rows, cols)))
            chunk = bytes(1 << 22)
            left = rows * cols * 4
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return path


def npz_with(path: Path, members: dict[str, bytes], compress=True) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for k, v in members.items():
            z.writestr(k, v)
    return path


# ---------------------------------------------------------------------------------------------- models
def bad_model(kind: str, d: Path, assets: Path) -> Path:
    """A hostile or broken model file of class ``kind`` in ``d``."""
    import onnx
    from onnx import TensorProto, helper

    p = d / f"{kind}.onnx"
    m = _tiny_model()
    if kind == "cyclic":
        m.graph.node[0].input[0] = "y"  # mm reads relu's output: a cycle
    elif kind == "cyclic2":
        m.graph.node.append(helper.make_node("Relu", ["c2"], ["c1"], name="r1"))
        m.graph.node.append(helper.make_node("Relu", ["c1"], ["c2"], name="r2"))
        m.graph.node[2].input[0] = "a"
    elif kind == "dim2_31":
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2**31
    elif kind == "dim2_63":
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2**63 - 1
    elif kind == "dim_negative":
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -5
    elif kind == "dim_zero":
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    elif kind == "no_input":
        m.graph.ClearField("input")
        m.graph.node[0].input[0] = "W"
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 16
    elif kind == "no_output":
        m.graph.ClearField("output")
    elif kind == "no_nodes":
        m.graph.ClearField("node")
    elif kind == "name_traversal":
        m.graph.name = "../../escaped"
    elif kind == "name_absolute":
        m.graph.name = str(d.parent.parent / "abs_escaped")
    elif kind == "name_weird":
        m.graph.name = "..\\..\\x\n\x00" + "é" * 300
    elif kind == "unknown_op":
        m.graph.node[2].op_type = "NoSuchOp"
    elif kind == "unknown_domain":
        m.graph.node[2].domain = "com.evil"
    elif kind == "opset_huge":
        m.opset_import[0].version = 10**6
    elif kind == "opset_zero":
        m.opset_import[0].version = 0
    elif kind == "ir_huge":
        m.ir_version = 10**9
    elif kind == "elem_type_bad":
        m.graph.input[0].type.tensor_type.elem_type = 99
    elif kind == "elem_type_string":
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.STRING
    elif kind == "dangling_input":
        m.graph.node[1].input[0] = "nowhere"
    elif kind == "dup_output":
        m.graph.node[1].output[0] = "h"
    elif kind == "init_wrong_size":
        m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:10]
    elif kind == "init_dims_huge":
        del m.graph.initializer[0].dims[:]
        m.graph.initializer[0].dims.extend([2**40, 2**40])
    elif kind == "deep_subgraph":
        leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "leaf", [],
                                 [helper.make_tensor_value_info("o", 1, None)])
        body = leaf
        for i in range(25):  # protobuf refuses nesting deeper than 100 messages (3 per level)
            body = helper.make_graph([helper.make_node("If", ["cond"], ["o"], then_branch=body, else_branch=leaf)],
                                     f"b{i}", [], [helper.make_tensor_value_info("o", 1, None)])
        m.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
        m.graph.node.append(helper.make_node("If", ["cond"], ["deep"], then_branch=body, else_branch=leaf))
        m.graph.output.append(helper.make_tensor_value_info("deep", 1, None))
    elif kind == "huge_attr":
        m.graph.node[2].attribute.append(helper.make_attribute("junk", "x" * (8 << 20)))
    elif kind.startswith("ext_"):
        src = assets / "ext"
        for f in src.iterdir():
            shutil.copy(f, d / f.name)
        p = d / "big.onnx"
        m = onnx.load(str(p), load_external_data=False)
        t = m.graph.initializer[0]
        info = {e.key: e for e in t.external_data}
        if kind == "ext_offset_abc":
            if "offset" not in info:
                e = t.external_data.add()
                e.key, e.value = "offset", "abc"
            else:
                info["offset"].value = "abc"
        elif kind == "ext_length_neg":
            e = t.external_data.add()
            e.key, e.value = "length", "-7"
        elif kind == "ext_length_huge":
            e = t.external_data.add()
            e.key, e.value = "length", str(10**15)
        elif kind == "ext_traversal":
            info["location"].value = "../../etc/passwd"
        elif kind == "ext_absolute":
            info["location"].value = "/etc/passwd"
        elif kind == "ext_device":
            os.symlink("/dev/zero", d / "zero.bin")
            info["location"].value = "zero.bin"
        elif kind == "ext_fifo":
            os.mkfifo(d / "fifo.bin")
            info["location"].value = "fifo.bin"
        elif kind == "ext_symlink_out":
            os.symlink("/etc/hostname", d / "out.bin")
            info["location"].value = "out.bin"
        elif kind == "ext_missing":
            info["location"].value = "missing.bin"
        elif kind == "ext_folder":
            (d / "folder.bin").mkdir()
            info["location"].value = "folder.bin"
        elif kind == "ext_self":
            info["location"].value = "big.onnx"
        p.write_bytes(m.SerializeToString())
        return p
    else:  # pragma: no cover
        raise ValueError(kind)
    return _save(m, p)


MODEL_KINDS = ["cyclic", "cyclic2", "dim2_31", "dim2_63", "dim_negative", "dim_zero", "no_input", "no_output",
               "no_nodes", "name_traversal", "name_absolute", "name_weird", "unknown_op", "unknown_domain",
               "opset_huge", "opset_zero", "ir_huge", "elem_type_bad", "elem_type_string", "dangling_input",
               "dup_output", "init_wrong_size", "init_dims_huge", "deep_subgraph", "huge_attr",
               "ext_offset_abc", "ext_length_neg", "ext_length_huge", "ext_traversal", "ext_absolute",
               "ext_device", "ext_fifo", "ext_symlink_out", "ext_missing", "ext_folder", "ext_self"]


def command_argv(cmd: str, model: str, out: str, *, data: str | None = None, calib: str | None = None,
                 precision: str = "fp16") -> list[str]:
    """One invocation of every subcommand on ``model`` with its output under ``out``."""
    if cmd == "inspect":
        return ["inspect", model, "--json"]
    if cmd == "run":
        return ["run", model] + (["--data", data] if data else [])
    if cmd == "view":
        return ["view", model, "--html", f"{out}/view.html"]
    if cmd == "surgery":
        return ["surgery", model, "--cleanup", "--toposort", "--out", f"{out}/edited.onnx", "--script", f"{out}/e.py"]
    if cmd == "build":
        return ["build", model, "--precision", precision, "--out", out] + FAST + (["--calib", calib] if calib else [])
    if cmd == "profile":
        return ["profile", model, "--out", out] + PROF + FAST + (["--data", data] if data else [])
    if cmd == "compare":
        return ["compare", model, "--precision", precision, "--json"] + (["--data", data] if data else [])
    if cmd == "report":
        return (["report", model, "--precision", f"fp32,{precision}", "--out", f"{out}/r.html"] + PROF + FAST
                + (["--data", data] if data else []) + (["--calib", calib] if calib else []))
    raise ValueError(cmd)


COMMANDS = ["inspect", "run", "view", "surgery", "build", "profile", "compare", "report"]
CHEAP = ["inspect", "run", "view", "surgery", "build"]


# ---------------------------------------------------------------------------------------------- fuzzing
def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.choice(["flip", "truncate", "insert", "splice", "varint", "zero", "repeat"])
    if op == "flip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == "truncate":
        b = b[: rng.randrange(len(b))]
    elif op == "insert":
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif op == "splice":
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        k = rng.randrange(len(b))
        b[k:k] = b[i:j][:4096]
    elif op == "varint":
        i = rng.randrange(len(b))
        b[i:i + 5] = b"\xff\xff\xff\xff\x0f"
    elif op == "zero":
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 256)] = bytes(min(256, len(b) - i))
    else:
        i = rng.randrange(len(b))
        b[i:i] = b[i:i + rng.randint(1, 32)] * rng.randint(2, 50)
    return bytes(b)


EVIL_NAMES = ["../../x", "/abs/x", "..", ".", "", "a/b", "a\\b", "\x00", "CON", "x" * 400, " ", "-rf", "~"]
EVIL_DIMS = [0, -1, 1, 2**31, 2**31 - 1, 2**63 - 1, 10**12, 3]


def mutate_proto(m, rng: random.Random):
    """A structured mutation of a ModelProto (names, dims, types, ops, attributes, opsets, edges)."""
    g = m.graph
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["name", "dim", "dimparam", "elem", "optype", "edge", "attr", "opset", "drop_node",
                         "drop_init", "init_dims", "output_name", "ir"])
        if op == "name":
            g.name = rng.choice(EVIL_NAMES)
        elif op == "dim" and g.input:
            dims = g.input[0].type.tensor_type.shape.dim
            if dims:
                rng.choice(dims).dim_value = rng.choice(EVIL_DIMS)
        elif op == "dimparam" and g.input:
            dims = g.input[0].type.tensor_type.shape.dim
            if dims:
                rng.choice(dims).dim_param = rng.choice(EVIL_NAMES)
        elif op == "elem" and g.input:
            g.input[0].type.tensor_type.elem_type = rng.randrange(0, 30)
        elif op == "optype" and g.node:
            rng.choice(g.node).op_type = rng.choice(["Relu", "Conv", "Loop", "If", "Gemm", "Reshape", "Evil", ""])
        elif op == "edge" and len(g.node) > 1:
            a, b = rng.sample(list(g.node), 2)
            if a.input and b.output:
                a.input[rng.randrange(len(a.input))] = rng.choice(list(b.output) + EVIL_NAMES[:3])
        elif op == "attr" and g.node:
            from onnx import helper

            n = rng.choice(g.node)
            v = rng.choice([10**18, -1, 0, 1.5, "x", [2**31] * 3, [0] * 4])
            n.attribute.append(helper.make_attribute(rng.choice(["axis", "perm", "shape", "to", "kernel_shape",
                                                                 "pads", "strides", "group"]), v))
        elif op == "opset":
            m.opset_import[0].version = rng.choice([0, 1, 7, 13, 21, 99, 10**6])
        elif op == "drop_node" and g.node:
            del g.node[rng.randrange(len(g.node))]
        elif op == "drop_init" and g.initializer:
            del g.initializer[rng.randrange(len(g.initializer))]
        elif op == "init_dims" and g.initializer:
            t = rng.choice(g.initializer)
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = rng.choice(EVIL_DIMS)
        elif op == "output_name" and g.output:
            g.output[0].name = rng.choice(["x", "nowhere", "W"])
        elif op == "ir":
            m.ir_version = rng.choice([0, 1, 3, 10, 99])
    return m


def discovered_commands() -> list[tuple[str, list[str], list[str]]]:
    """(name, positional dests, required option strings) of every CLI subcommand."""
    import argparse

    from workbench.cli import build_parser

    out = []
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                pos = [a.dest for a in sp._actions if not a.option_strings and a.dest != "help"]
                req = [a.option_strings[-1] for a in sp._actions if a.option_strings and a.required]
                if any("--no-progress" in a.option_strings for a in sp._actions):
                    req.append("--no-progress")
                out.append((name, pos, req))
    return out


# ---------------------------------------------------------------------------------------------- the cases
def build_cases(assets: Path, seed: int = 0, fuzz_bytes: int = 300, fuzz_proto: int = 150) -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    def cli(cid, setup: Callable[[Path], tuple[list[str], str | None]]):
        def run(d: Path) -> dict:
            argv, out = setup(d)
            return {"argv": argv, "out": out}
        add(Case(cid, run))

    # 1. output collisions: every writer pointed at its own inputs
    def collide(cmd, target):
        def setup(d):
            src = d / "src"
            _copy(assets, src, "tiny.onnx", "tiny.npz", "digits_calib.npz")
            os.chdir(src)
            if target == "model_named_out":  # the model file is named like the output
                name = {"view": "view.html", "surgery": "edited.onnx", "build": "build.json",
                        "profile": "profile.json", "report": "r.html"}[cmd]
                shutil.copy("tiny.onnx", name)
                argv = command_argv(cmd, name, ".")
                if cmd == "report":
                    argv[argv.index("--out") + 1] = name
                return argv, "."
            if target == "data_named_out":
                name = {"view": "view.html", "surgery": "edited.onnx", "build": "build.json",
                        "profile": "profile.json", "report": "r.html"}[cmd]
                shutil.copy("tiny.npz", name)
                return command_argv(cmd, "tiny.onnx", ".", data=name if cmd in ("profile", "report") else None,
                                    calib=name if cmd == "build" else None, precision="int8"
                                    if cmd == "build" else "fp16"), "."
            if target == "external_data_variant":  # big.onnx's weights live in big-fp16.onnx
                _copy(assets, src, "ext/big.onnx", "ext/big-fp16.onnx")
                return command_argv(cmd, "big.onnx", "."), "."
            if target == "surgery_script_is_model":
                return ["surgery", "tiny.onnx", "--cleanup", "--out", "new.onnx", "--script", "tiny.onnx"], "."
            if target == "out_is_fifo":
                os.mkfifo("pipe.html")
                argv = command_argv(cmd, "tiny.onnx", "pipe.html")
                for flag in ("--html", "--out"):
                    if flag in argv and cmd in ("view", "surgery", "report"):
                        argv[argv.index(flag) + 1] = "pipe.html"
                return argv, None
            if target == "out_is_devnull":
                null = "/dev/null" if cmd != "report" else "null.html"  # report wants an .html name: a link
                if cmd == "report":
                    os.symlink("/dev/null", null)
                argv = command_argv(cmd, "tiny.onnx", null)
                for flag in ("--html", "--out"):
                    if flag in argv and cmd in ("view", "surgery", "report"):
                        argv[argv.index(flag) + 1] = null
                return argv, None
            if target == "out_long":
                return command_argv(cmd, "tiny.onnx", "o" * 5000), None
            if target == "out_under_file":
                return command_argv(cmd, "tiny.onnx", "tiny.npz/sub"), None
            raise ValueError(target)
        cli(f"collide/{cmd}/{target}", setup)

    writers = ["view", "surgery", "build", "profile", "report"]
    for cmd in writers:
        for target in ("model_named_out", "out_is_fifo", "out_is_devnull", "out_long", "out_under_file",
                       "external_data_variant"):
            collide(cmd, target)
    for cmd in ("build", "profile", "report"):
        collide(cmd, "data_named_out")
    collide("surgery", "surgery_script_is_model")

    # 2. special and hostile input files, for every subcommand
    def special(cmd, kind, role):
        def setup(d):
            src = d / "src"
            _copy(assets, src, "tiny.onnx", "tiny.npz")
            os.chdir(src)
            path = {"devzero": "/dev/zero", "devnull": "/dev/null", "folder": ".", "missing": "nope.onnx",
                    "long": "m" * 5000, "empty": "empty"}.get(kind, kind)
            if kind == "fifo":
                os.mkfifo("fifo")
            if kind == "empty":
                Path("empty").write_bytes(b"")
            if kind == "symlink_dev":
                os.symlink("/dev/zero", "symlink_dev")
            (d / "out").mkdir()
            if role == "model":
                return command_argv(cmd, path, str(d / "out")), str(d / "out")
            data = path if cmd in ("run", "profile", "compare", "report") else None
            calib = path if cmd == "build" else None
            return command_argv(cmd, "tiny.onnx", str(d / "out"), data=data, calib=calib,
                                precision="int8" if cmd == "build" else "fp16"), str(d / "out")
        cli(f"input/{cmd}/{role}/{kind}", setup)

    for cmd in COMMANDS:
        for kind in ("devzero", "fifo", "folder", "missing", "long", "empty", "symlink_dev"):
            special(cmd, kind, "model")
    for cmd in ("run", "profile", "compare", "report", "build"):
        for kind in ("devzero", "fifo", "folder", "missing", "long", "empty", "devnull"):
            special(cmd, kind, "data")

    # 3. broken and hostile models through every subcommand (heavy commands on a subset)
    for kind in MODEL_KINDS:
        cmds = COMMANDS if kind in ("cyclic", "dim2_31", "no_input", "name_traversal", "name_absolute",
                                    "ext_offset_abc", "dim_zero", "unknown_op") else CHEAP

        for cmd in cmds:
            def setup(d, kind=kind, cmd=cmd):
                (d / "src").mkdir()
                (d / "out").mkdir()
                p = bad_model(kind, d / "src", assets)
                os.chdir(d / "src")
                return command_argv(cmd, str(p), str(d / "out"), precision="fp16"), str(d / "out")
            cli(f"model/{kind}/{cmd}", setup)

    # 4. numbers out of range
    for label, extra in [("shapes_1e23", ["--shapes", "x:100000000000000000000000x16"]),
                         ("shapes_2_31", ["--shapes", f"x:{2**31}x16"]),
                         ("shapes_neg", ["--shapes", "x:-3x16"]),
                         ("shapes_zero", ["--shapes", "x:0x16"]),
                         ("shapes_junk", ["--shapes", "x:1x16x\x7f"]),
                         ("shapes_unknown", ["--shapes", "nope:1x16"]),
                         ("shapes_range", ["--shapes", "x:8x16/1x16/4x16"]),
                         ("shapes_big_ok_rank", ["--shapes", "x:1x16x1x1x1x1x1x1"]),
                         ("batch_1e21", ["--batch", "1000000000000000000000"]),
                         ("batch_2_40", ["--batch", str(2**40)])]:
        for cmd in ("inspect", "run", "build", "profile", "compare", "report"):
            if label.startswith("batch") and cmd in ("inspect", "build", "report"):
                continue

            def setup(d, extra=extra, cmd=cmd):
                _copy(assets, d / "src", "tiny.onnx")
                (d / "out").mkdir()
                os.chdir(d / "src")
                return command_argv(cmd, "tiny.onnx", str(d / "out")) + extra, str(d / "out")
            cli(f"numbers/{label}/{cmd}", setup)

    # 5. hostile .npz data through the commands that read data
    def npz_case(kind):
        def make(d: Path) -> Path:
            import numpy as np

            p = d / f"{kind}.npz"
            if kind == "zip_bomb":
                zip_bomb(p)
            elif kind == "header_1e12":
                npz_with(p, {"x.npy": _npy_bytes((10**12, 16), body=bytes(64 * 16))})
            elif kind == "header_negative":
                npz_with(p, {"x.npy": _npy_bytes((8, 16), body=bytes(16))})
            elif kind == "object_array":
                np.savez(p, x=np.array([{"a": 1}] * 8, dtype=object))
            elif kind == "npy_not_npz":
                np.save(p.with_suffix(".npy"), np.zeros((8, 16), np.float32))
                p.with_suffix(".npy").rename(p)
            elif kind == "pickle":
                import pickle

                p.write_bytes(pickle.dumps({"x": 1}))
            elif kind == "text":
                p.write_text("x,y\n1,2\n")
            elif kind == "truncated_zip":
                src = (assets / "tiny.npz").read_bytes()
                p.write_bytes(src[: len(src) // 2])
            elif kind == "many_members":
                npz_with(p, {f"k{i}.npy": _npy_bytes((1,), body=bytes(4)) for i in range(5000)})
            elif kind == "wrong_dtype":
                np.savez(p, x=np.zeros((8, 16), np.complex64))
            elif kind == "wrong_rank":
                np.savez(p, x=np.zeros((8, 16, 2), np.float32))
            elif kind == "nan":
                np.savez(p, x=np.full((8, 16), np.nan, np.float32))
            elif kind == "missing_key":
                np.savez(p, y=np.zeros((8, 16), np.float32))
            elif kind == "fewer_than_batch":
                np.savez(p, x=np.zeros((3, 16), np.float32))
            elif kind == "fortran_big_header":
                npz_with(p, {"x.npy": _npy_bytes((16, 10**11)).replace(b"'fortran_order': False",
                                                                      b"'fortran_order': True ")})
            elif kind == "string_array":
                np.savez(p, x=np.array(["a"] * 8))
            elif kind == "zero_samples":
                np.savez(p, x=np.zeros((0, 16), np.float32))
            elif kind == "scalar":
                np.savez(p, x=np.float32(1))
            elif kind in ("corrupt_deflate_header", "corrupt_deflate_data"):
                # valid zip directory, the member's deflate stream damaged: zlib.error / a CRC error
                np.savez_compressed(p, x=np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32))
                raw = bytearray(p.read_bytes())
                with zipfile.ZipFile(p) as z:
                    info = z.infolist()[0]
                at = info.header_offset + 30 + len(info.filename) + len(info.extra)
                at += 4 if kind == "corrupt_deflate_header" else info.compress_size // 2
                raw[at:at + 32] = bytes(b ^ 0x5A for b in raw[at:at + 32])
                p.write_bytes(bytes(raw))
            return p
        return make

    npz_kinds = ["zip_bomb", "header_1e12", "header_negative", "object_array", "npy_not_npz", "pickle", "text",
                 "truncated_zip", "many_members", "wrong_dtype", "wrong_rank", "nan", "missing_key",
                 "fewer_than_batch", "fortran_big_header", "string_array", "zero_samples", "scalar",
                 "corrupt_deflate_header", "corrupt_deflate_data"]
    for kind in npz_kinds:
        for cmd in ("run", "profile", "compare", "report", "build"):
            if kind == "zip_bomb" and cmd in ("compare", "build"):
                continue  # these use every sample (1.1 GB streamed through the model: minutes, not memory)
            model = "fixed8.onnx" if kind == "fewer_than_batch" else "tiny.onnx"

            def setup(d, kind=kind, cmd=cmd, model=model):
                _copy(assets, d / "src", model)
                (d / "out").mkdir()
                p = npz_case(kind)(d / "src")
                os.chdir(d / "src")
                return command_argv(cmd, model, str(d / "out"), data=str(p) if cmd != "build" else None,
                                    calib=str(p) if cmd == "build" else None,
                                    precision="int8" if cmd in ("build", "report") else "fp16"), str(d / "out")
            cli(f"npz/{kind}/{cmd}", setup)

    # 6. the public API: names from the model, argument errors
    def api(cid, fn, setup=None):
        def run(d, fn=fn, setup=setup):
            if setup:
                setup(d)
            return {"api": fn, "out": str(d / "out")}
        add(Case(cid, run))

    def api_build_named(name):
        def fn(d):

            import workbench as wb

            m = _tiny_model()
            m.graph.name = name
            model = wb.load(m.SerializeToString())
            os.chdir(d)
            wb.build_variants(model, ["fp32", "fp16"], "onnxruntime", out_dir=d / "out", progress=False)
            model.path_for_runtime(d / "out")
            model.save(d / "out" / "saved.onnx")
            return model.name
        return fn

    for i, name in enumerate(EVIL_NAMES + ["../../x/../y", "/etc/passwd", "..\\..\\win"]):
        api(f"api/name/{i}", api_build_named(name))

    def api_call(expr):
        def fn(d):
            import numpy as np  # noqa: F401 - used by the expressions

            import workbench as wb  # noqa: F401
            from workbench.builds import build_variants  # noqa: F401
            from workbench.precision import make_variant  # noqa: F401

            os.chdir(d / "src")
            return repr(eval(expr))  # test expressions written above
        return fn

    def api_setup(d):
        _copy(assets, d / "src", "tiny.onnx", "tiny.npz")

    for expr in ["make_variant('tiny.onnx', 'fp99')", "make_variant('tiny.onnx', None)",
                 "make_variant('tiny.onnx', 5)", "make_variant('tiny.onnx', 'fp16', keep_nodes=5)",
                 "make_variant('tiny.onnx', 'fp16', keep_op_types='Relu,Add')",
                 "make_variant('tiny.onnx', 'int8', calib=5)", "make_variant('tiny.onnx', 'int8', calib='nope.npz')",
                 "make_variant('tiny.onnx', 'int8', calib=[{'x': 1}])",
                 "make_variant('tiny.onnx', 'int8', calib='tiny.npz', num_calib=-1)",
                 "make_variant('tiny.onnx', 'int8', calib='tiny.npz', calibration_method='nope')",
                 "make_variant('tiny.onnx', 'fp16', tool='nope')", "make_variant('tiny.onnx', 'fp16', bogus=1)",
                 "make_variant(None, 'fp16')", "make_variant(b'', 'fp16')", "make_variant(42, 'fp16')",
                 "build_variants('tiny.onnx', None)", "build_variants('tiny.onnx', 5)",
                 "build_variants('tiny.onnx', [])", "build_variants('tiny.onnx', 'fp16', backend='nope')",
                 "build_variants('tiny.onnx', 'fp16', backend=5)", "build_variants('tiny.onnx', 'fp16', shapes=5)",
                 "build_variants('tiny.onnx', 'fp16', shapes='x:1e23x16')",
                 "build_variants('tiny.onnx', 'fp16', out_dir='../escape/' + 'x' * 300, progress=False)",
                 "build_variants('tiny.onnx', 'fp16', out_dir='tiny.onnx')",
                 "build_variants('tiny.onnx', 'fp16', keep_nodes=5)",
                 "build_variants('tiny.onnx', 'fp16', cache=5)",
                 "build_variants('tiny.onnx', 'fp16', options=5)",
                 "wb.load('tiny.onnx').save('tiny.onnx')", "wb.load('tiny.onnx').save('.')",
                 "wb.load('/dev/zero')", "wb.load(12)", "wb.load('tiny.onnx', name='../../n').path_for_runtime('.')",
                 "wb.run_model('tiny.onnx', data='tiny.npz', batch=10**21)",
                 "wb.run_model('tiny.onnx', shapes={'x': [10**23, 16]})",
                 "wb.run_model('tiny.onnx', shapes=5)", "wb.inspect('tiny.onnx', shapes='x:' + '9' * 30 + 'x16')"]:
        api(f"api/call/{expr}", api_call(expr), api_setup)

    # 7. any subcommand the cases above do not know (a feature added later): its positionals given
    #    hostile files, its required options pointed into the output folder
    for name, positionals, required in discovered_commands():
        if name in COMMANDS or name == "demo":
            continue
        for kind in ("devzero", "fifo", "missing", "long", "tiny"):
            def setup(d, name=name, positionals=positionals, required=required, kind=kind):
                _copy(assets, d / "src", "tiny.onnx", "tiny.npz")
                (d / "out").mkdir()
                os.chdir(d / "src")
                if kind == "fifo":
                    os.mkfifo("fifo")
                path = {"devzero": "/dev/zero", "fifo": "fifo", "missing": "nope.onnx", "long": "m" * 5000,
                        "tiny": "tiny.onnx"}[kind]
                argv = [name] + [path] * len(positionals)
                for opt in required:
                    argv += [opt] if opt == "--no-progress" else [opt, str(d / "out" / "o")]
                return argv, str(d / "out")
            cli(f"newcmd/{name}/{kind}", setup)

    # 8. seeded fuzzing: byte mutations of real models, structured proto mutations
    rng = random.Random(seed)
    bases = ["tiny.onnx", "digits_cnn.onnx", "fixed8.onnx"]
    for i in range(fuzz_bytes):
        base = bases[i % len(bases)]
        s = rng.randrange(2**31)
        cmd = "inspect" if i % 4 else rng.choice(["run", "view", "surgery", "build"])

        def setup(d, base=base, s=s, cmd=cmd):
            src = d / "src"
            src.mkdir()
            (d / "out").mkdir()
            data = mutate_bytes((assets / base).read_bytes(), random.Random(s))
            (src / "m.onnx").write_bytes(data)
            os.chdir(src)
            return command_argv(cmd, "m.onnx", str(d / "out")), str(d / "out")
        cli(f"fuzz/bytes/{i}/{base}/{cmd}", setup)
    for i in range(fuzz_proto):
        s = rng.randrange(2**31)
        cmd = ["inspect", "run", "view", "surgery", "build"][i % 5]

        def setup(d, s=s, cmd=cmd):
            import onnx

            r = random.Random(s)
            base = r.choice(["tiny.onnx", "digits_cnn.onnx"])
            m = mutate_proto(onnx.load(str(assets / base)), r)
            src = d / "src"
            (d / "out").mkdir()
            _save(m, src / "m.onnx")
            os.chdir(src)
            return command_argv(cmd, "m.onnx", str(d / "out")), str(d / "out")
        cli(f"fuzz/proto/{i}/{cmd}", setup)
    return cases


# ---------------------------------------------------------------------------------------------- checking
def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                if p.is_symlink() or not p.is_file():
                    out[str(p)] = "special"
                    continue
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[str(p)] = "unreadable"
        for dn in dirnames:
            out[str(Path(dirpath) / dn) + "/"] = "dir"
    return out


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_hwm() -> None:
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def run_case(case: Case, d: Path) -> dict:
    """Run one case in this process; the contract violations found (empty list: it held)."""
    from workbench.cli import main
    from workbench.errors import WorkbenchError

    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    home = os.getcwd()
    problems: list[str] = []
    try:
        spec = case.run(d)
    except Exception as e:  # a broken case setup is a harness bug
        os.chdir(home)
        return {"id": case.id, "problems": [f"setup failed: {type(e).__name__}: {e}"], "rc": None}
    cwd = os.getcwd()
    parent = d.parent
    before = snapshot(d)
    siblings = set(os.listdir(parent))
    out = spec.get("out")
    out_root = Path(cwd, out).resolve() if out else None
    rc, err_lines, detail = None, [], ""
    stdout, stderr = io.StringIO(), io.StringIO()
    _reset_hwm()
    t0 = time.monotonic()
    try:
        if "argv" in spec:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    rc = main(spec["argv"])
                except SystemExit as e:  # argparse usage errors
                    rc = e.code
            err_lines = [ln for ln in stderr.getvalue().splitlines() if ln.strip()]
            if rc not in (0, 2):
                problems.append(f"exit code {rc}")
            if len(err_lines) > 1:
                problems.append(f"{len(err_lines)} stderr lines")
            if rc == 2 and len(err_lines) != 1:
                problems.append("exit 2 without exactly one stderr line")
            if "not enough memory" in stderr.getvalue():
                problems.append("ran into the worker's memory cap")
            if "Traceback" in stderr.getvalue():
                problems.append("traceback on stderr")
            detail = " | ".join(err_lines)[:400]
        else:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    spec["api"](d)
                    rc = 0
                except WorkbenchError as e:
                    rc, detail = 2, str(e)[:400]
                except Exception as e:
                    rc, detail = 1, f"{type(e).__name__}: {e}"[:400] + " @ " + traceback.format_exc(limit=-2)[-300:]
                    problems.append(f"non-WorkbenchError {type(e).__name__}")
    finally:
        secs = time.monotonic() - t0
        rss = _hwm_mb()
        os.chdir(home)
    if secs > TIME_LIMIT_S:
        problems.append(f"took {secs:.0f} s")
    if rss > RSS_LIMIT_MB:
        problems.append(f"peak RSS {rss:.0f} MB")
    after = snapshot(d)
    for path, h in before.items():
        if after.get(path) != h and not path.endswith("/"):
            problems.append(f"input changed: {os.path.relpath(path, d)}")
    for path in after:
        if path in before:
            continue
        p = Path(path.rstrip("/")).resolve()
        if out_root is None or not (p == out_root or out_root in p.parents or p.parent == out_root.parent
                                    and p.name.startswith(out_root.name)):
            problems.append(f"wrote outside the output folder: {os.path.relpath(path, d)}")
    new_siblings = set(os.listdir(parent)) - siblings
    if new_siblings:
        problems.append(f"wrote beside the case folder: {sorted(new_siblings)}")
    for stray in ("/tmp/escaped", "/tmp/abs_escaped", str(parent.parent / "abs_escaped")):
        if Path(stray).exists():
            problems.append(f"escaped to {stray}")
    return {"id": case.id, "rc": rc, "problems": problems, "stderr": detail, "secs": round(secs, 3),
            "rss_mb": round(rss)}


def worker(root: Path, seed: int, start: int, stop: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import resource

    # a hard cap so that a runaway allocation fails here instead of taking the shared machine down
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    os.environ.setdefault("WORKBENCH_MAX_DATA_BYTES", str(512 << 20))
    assets = root / "assets"
    if not assets.exists():
        make_assets(assets)
    cases = build_cases(assets, seed)
    for i in range(start, min(stop, len(cases))):
        print(json.dumps({"start": i}), flush=True)
        res = run_case(cases[i], root / f"cases-{start}" / f"c{i}")  # one parent per worker range
        res["index"] = i
        print(json.dumps(res), flush=True)
        shutil.rmtree(root / f"cases-{start}" / f"c{i}", ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
