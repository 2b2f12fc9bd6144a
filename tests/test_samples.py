"""The committed sample models in sample_models/: real, small, dynamic, and (digits) accurate.

Uses only the committed files (no torch); `make samples` regenerates them.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

import workbench
from workbench.backends import get_backend
from workbench.data import NpzDataset, input_specs, output_specs
from workbench.variant import Variant

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
MODELS = ("digits_cnn.onnx", "digits_cnn_wide.onnx", "transformer_block.onnx", "resize_concat.onnx")
FILES = MODELS + ("digits_test.npz", "digits_calib.npz")
MAX_BYTES = 2 * 1024 * 1024


def engine_for(path):
    model = workbench.load(path)
    return model, get_backend("onnxruntime").build(Variant.of(model))


def op_counts(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("name", FILES)
def test_file_is_committed_and_small(name):
    p = SAMPLES / name
    assert p.is_file(), f"{p} missing: run `make samples`"
    assert p.stat().st_size < MAX_BYTES


@pytest.mark.parametrize("name", MODELS)
def test_model_is_valid_self_contained_and_shape_inferred(sample, name):
    model = workbench.load(sample(name))
    assert not model.has_external_data
    onnx.checker.check_model(model.proto, full_check=True)
    g = model.graph
    typed = {v.name for v in g.value_info if v.type.tensor_type.HasField("shape")}
    outputs = {o.name for o in g.output}
    untyped = [o for n in g.node for o in n.output if o not in typed and o not in outputs]
    assert not untyped, f"intermediate tensors without value_info: {untyped[:5]}"
    assert not any(n.op_type in ("Dropout", "BatchNormalization") for n in g.node), "training-only ops left"


@pytest.mark.parametrize("name, inp, out, shape", [
    ("digits_cnn.onnx", "image", "logits", (str, 1, 8, 8)),
    ("digits_cnn_wide.onnx", "image", "logits", (str, 1, 8, 8)),
    ("transformer_block.onnx", "x", "y", (str, str, 64)),
    ("resize_concat.onnx", "x", "y", (str, 3, 32, 32)),
])
def test_io_names_and_dynamic_dims(sample, name, inp, out, shape):
    model = workbench.load(sample(name))
    (spec,) = input_specs(model)
    assert (spec.name, spec.np_dtype) == (inp, np.dtype(np.float32))
    assert len(spec.shape) == len(shape)
    for got, want in zip(spec.shape, shape):
        assert isinstance(got, want) if isinstance(want, type) else got == want
    assert [s.name for s in output_specs(model)] == [out]


@pytest.mark.parametrize("name, widths", [("digits_cnn.onnx", [16, 32, 64]), ("digits_cnn_wide.onnx", [64, 128, 128])])
def test_digits_accuracy_on_heldout_split(sample, name, widths):
    """Both trained digits CNNs (the wide one is what `make demo` times) classify >= 95 % of the held-out split,
    and the accuracy recorded in the file's metadata (and quoted in sample_models/README.md) is what they get."""
    path = sample(name)
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    assert [inits[n.input[1]].dims[0] for n in proto.graph.node if n.op_type == "Conv"] == widths
    meta = {p.key: p.value for p in proto.metadata_props}
    model, engine = engine_for(path)
    ds = NpzDataset(SAMPLES / "digits_test.npz", model, label_keys=["label"])
    assert len(ds) >= 300
    correct = 0
    for feeds, labels in zip(ds.batches(64), ds.label_batches("label", 64)):
        logits = engine.run(feeds)["logits"]
        assert logits.shape == (len(labels), 10)
        correct += int((logits.argmax(axis=1) == labels).sum())
    assert correct / len(ds) >= 0.95
    assert int(meta["heldout_samples"]) == len(ds) and abs(correct / len(ds) - float(meta["heldout_accuracy"])) < 1e-4


def test_digits_data_files():
    with np.load(SAMPLES / "digits_test.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["image", "label"]
        image, label = z["image"], z["label"]
    assert image.dtype == np.float32 and image.shape == (len(label), 1, 8, 8)
    assert label.dtype == np.int64 and set(label.tolist()) == set(range(10))
    assert 0.0 <= image.min() and image.max() <= 1.0
    with np.load(SAMPLES / "digits_calib.npz", allow_pickle=False) as z:
        assert z.files == ["image"]
        calib = z["image"]
    assert calib.dtype == np.float32 and calib.shape == (256, 1, 8, 8)
    test_rows = {row.tobytes() for row in image}
    assert not any(row.tobytes() in test_rows for row in calib), "calibration samples must come from the train split"


@pytest.mark.parametrize("name, shapes", [
    ("digits_cnn.onnx", [(1, 1, 8, 8), (7, 1, 8, 8)]),
    ("digits_cnn_wide.onnx", [(1, 1, 8, 8), (7, 1, 8, 8)]),
    ("resize_concat.onnx", [(1, 3, 32, 32), (7, 3, 32, 32)]),
    ("transformer_block.onnx", [(1, 16, 64), (7, 16, 64), (7, 5, 64), (2, 33, 64)]),
])
def test_dynamic_dims_really_run(sample, name, shapes):
    model, engine = engine_for(sample(name))
    inp, out = model.input_names[0], model.output_names[0]
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.random(shape, dtype=np.float32)
        y = engine.run({inp: x})[out]
        assert y.shape[0] == shape[0] and np.isfinite(y).all()
        if name == "transformer_block.onnx":
            assert y.shape == shape
        # Samples are independent: the first sample alone gives the same result as inside the batch.
        y0 = engine.run({inp: x[:1]})[out]
        np.testing.assert_allclose(y0, y[:1], rtol=1e-4, atol=1e-5)


def test_transformer_structure(sample):
    ops = op_counts(sample("transformer_block.onnx"))
    assert ops["LayerNormalization"] >= 2 or ops["ReduceMean"] >= 4
    assert ops["MatMul"] >= 6 and ops["Softmax"] >= 1
    assert ops["Erf"] >= 1 or ops["Gelu"] >= 1
    names = [n.name for n in onnx.load(str(SAMPLES / "transformer_block.onnx")).graph.node]
    assert any(n.startswith("/encoder/layer.0/attn/") for n in names)


def test_transformer_attends_over_the_sequence(sample):
    """No positional encoding: permuting the tokens permutes the outputs, and a token's output depends on the others."""
    model, engine = engine_for(sample("transformer_block.onnx"))
    x = np.random.default_rng(1).standard_normal((2, 9, 64), dtype=np.float32)
    perm = np.random.default_rng(2).permutation(9)
    y = engine.run({"x": x})["y"]
    np.testing.assert_allclose(engine.run({"x": x[:, perm]})["y"], y[:, perm], rtol=1e-4, atol=1e-4)
    x2 = x.copy()
    x2[:, 1:] = np.random.default_rng(3).standard_normal((2, 8, 64), dtype=np.float32)
    assert not np.allclose(engine.run({"x": x2})["y"][:, 0], y[:, 0], atol=1e-3)


def test_cnn_structures(sample):
    digits = op_counts(sample("digits_cnn.onnx"))
    assert digits["Conv"] >= 3 and digits["Gemm"] >= 1 and digits["Relu"] >= 3
    assert digits["MaxPool"] + digits["GlobalAveragePool"] >= 1
    names = [n.name for n in onnx.load(str(SAMPLES / "digits_cnn.onnx")).graph.node]
    assert "/features/conv1/Conv" in names
    rc = op_counts(sample("resize_concat.onnx"))
    assert rc["Resize"] >= 1 and rc["Concat"] >= 1 and rc["Conv"] >= 3


@pytest.mark.rtx
@pytest.mark.parametrize("name", MODELS)
def test_tensorrt_rtx_parses_samples(sample, name):
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed (pip install 'trt-workbench[trt-rtx]')")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(sample(name).read_bytes())
    assert ok, [str(parser.get_error(i)) for i in range(parser.num_errors)]
    assert network.num_inputs == 1 and network.get_input(0).shape[0] == -1  # dynamic batch survives
