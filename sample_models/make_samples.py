"""Regenerate the bundled sample models in ``sample_models/`` (needs torch; tests and ``make demo`` do not).

    python sample_models/make_samples.py [--out sample_models]

Writes, deterministically (fixed seeds, single-threaded torch, deterministic algorithms):

* ``digits_cnn.onnx``        small CNN trained on scikit-learn's ``load_digits()`` (8x8, scaled to [0, 1]);
  input ``image`` [batch,1,8,8] float32, output ``logits`` [batch,10].
* ``digits_cnn_wide.onnx``   the same CNN with 4x/4x/2x the channels (64, 128, 128), trained the same way:
  the model ``make demo`` times (int8 pays off on CPU only when the convolutions dominate).
* ``digits_test.npz``        the held-out split: ``image`` float32 [N,1,8,8], ``label`` int64 [N].
* ``digits_calib.npz``       256 samples of the *train* split, key ``image`` (INT8 calibration).
* ``transformer_block.onnx`` pre-LayerNorm transformer encoder (2 layers, d_model 64, 4 heads, MatMul +
  Softmax attention, GELU MLP); input ``x`` [batch,seq,64], output ``y``. Seeded random weights:
  its accuracy means nothing, its structure and timings are real.
* ``resize_concat.onnx``     conv -> strided conv -> conv -> Resize(x2) -> Concat(skip) -> conv;
  input ``x`` [batch,3,32,32], output ``y`` [batch,4,32,32]. Seeded random weights.

Nothing is downloaded (the digits ship inside scikit-learn). Every exported file is checked with
``onnx.checker`` (full_check), shape-inferred (value_info kept), run with ONNX Runtime at two batch
sizes and compared with torch.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np

SEED = 0
OPSET = 17
CALIB_SAMPLES = 256
MIN_DIGITS_ACCURACY = 0.95
MAX_FILE_BYTES = 2 * 1024 * 1024
#: Channel widths of ``digits_cnn_wide.onnx``, the model ``make demo`` times. At the default (16, 32, 64) a
#: batch-256 run is ~1 ms on 2 CPU cores and ONNX Runtime's int8 kernels do not beat fp32 there (per-op
#: overhead; int8 gained nothing from the second thread). At these widths the convolutions dominate and int8
#: (ORT's uint8/int8 QDQ form) is measurably faster: see docs/precision.md, "The demo model".
WIDE_WIDTHS = (64, 128, 128)

try:
    from workbench.fsutil import atomic_write_bytes
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from workbench.fsutil import atomic_write_bytes


def seed_everything(seed: int = SEED) -> None:
    """Fixed seeds and single-threaded deterministic torch, so reruns give the same files."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------------------- models
def build_digits_cnn(widths: tuple[int, int, int] = (16, 32, 64)):
    """Conv+BN+ReLU x3 with a MaxPool and a GlobalAveragePool, then a two-layer Gemm head (~28k params at the
    default widths; :data:`WIDE_WIDTHS` gives the demo's wider variant)."""
    from torch import nn

    c1, c2, c3 = widths

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential()
            self.features.add_module("conv1", nn.Conv2d(1, c1, 3, padding=1, bias=False))
            self.features.add_module("bn1", nn.BatchNorm2d(c1))
            self.features.add_module("relu1", nn.ReLU())
            self.features.add_module("conv2", nn.Conv2d(c1, c2, 3, padding=1, bias=False))
            self.features.add_module("bn2", nn.BatchNorm2d(c2))
            self.features.add_module("relu2", nn.ReLU())
            self.features.add_module("pool", nn.MaxPool2d(2))  # 8x8 -> 4x4
            self.features.add_module("conv3", nn.Conv2d(c2, c3, 3, padding=1, bias=False))
            self.features.add_module("bn3", nn.BatchNorm2d(c3))
            self.features.add_module("relu3", nn.ReLU())
            self.features.add_module("gap", nn.AdaptiveAvgPool2d(1))  # -> GlobalAveragePool
            self.classifier = nn.Sequential()
            self.classifier.add_module("flatten", nn.Flatten())
            self.classifier.add_module("fc1", nn.Linear(c3, 64))
            self.classifier.add_module("relu", nn.ReLU())
            self.classifier.add_module("dropout", nn.Dropout(0.1))  # identity in eval: not exported
            self.classifier.add_module("fc2", nn.Linear(64, 10))

        def forward(self, image):
            return self.classifier(self.features(image))

    return DigitsCNN()


def build_transformer(d_model: int = 64, heads: int = 4, layers: int = 2, mlp_ratio: int = 4):
    """Pre-LN encoder: x + Attn(LN(x)); x + MLP(LN(x)). Attention is explicit MatMul/Softmax/MatMul."""
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads
            self.head_dim = d_model // heads
            self.scale = self.head_dim ** -0.5
            self.q_proj = nn.Linear(d_model, d_model)
            self.k_proj = nn.Linear(d_model, d_model)
            self.v_proj = nn.Linear(d_model, d_model)
            self.out_proj = nn.Linear(d_model, d_model)

        def split(self, t):  # [b, s, d] -> [b, h, s, dh]
            return t.view(t.shape[0], t.shape[1], self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x):
            q = self.split(self.q_proj(x)) * self.scale
            k = self.split(self.k_proj(x))
            v = self.split(self.v_proj(x))
            attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)
            ctx = torch.matmul(attn, v).transpose(1, 2)  # [b, s, h, dh]
            ctx = ctx.reshape(ctx.shape[0], ctx.shape[1], d_model)
            return self.out_proj(ctx)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(d_model, d_model * mlp_ratio)
            self.act = nn.GELU()  # exact GELU: Erf at opset 17
            self.fc2 = nn.Linear(d_model * mlp_ratio, d_model)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class EncoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d_model)
            self.attn = SelfAttention()
            self.ln2 = nn.LayerNorm(d_model)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList([EncoderLayer() for _ in range(layers)])

        def forward(self, x):
            for block in self.layer:
                x = block(x)
            return x

    class TransformerBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.final_ln = nn.LayerNorm(d_model)

        def forward(self, x):
            return self.final_ln(self.encoder(x))

    model = TransformerBlock()
    # LayerNorm affine parameters away from 1/0: realistic, and the exporter would otherwise
    # de-duplicate the identical tensors into Identity nodes.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return model


def build_resize_concat():
    """A small U-Net-like path: a full-resolution skip is concatenated with an upsampled (Resize) branch."""
    from collections import OrderedDict

    import torch
    from torch import nn

    def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                                         bn=nn.BatchNorm2d(cout), relu=nn.ReLU()))

    class ResizeConcat(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn_relu(3, 16)            # 32x32 skip
            self.down = conv_bn_relu(16, 32, stride=2)  # 16x16
            self.mid = conv_bn_relu(32, 32)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)  # Resize
            self.fuse = conv_bn_relu(48, 16)
            self.head = nn.Conv2d(16, 4, 1)

        def forward(self, x):
            skip = self.stem(x)
            y = self.up(self.mid(self.down(skip)))
            return self.head(self.fuse(torch.cat([skip, y], dim=1)))

    model = ResizeConcat()
    # Non-trivial BatchNorm statistics so the folded Conv weights are not just the initial ones.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return model


# ---------------------------------------------------------------------------------------- data / training
def digits_splits(seed: int = SEED):
    """(x_train, y_train, x_test, y_test): 75/25 stratified split of load_digits, images scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def shift_augment(xb, gen):
    """Random +-1 pixel translation (zero fill): the digits are small, this is the useful augmentation."""
    import torch

    out = torch.zeros_like(xb)
    shifts = torch.randint(-1, 2, (xb.shape[0], 2), generator=gen)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        src = xb[i, :, max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
        out[i, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def train_digits(model, x_tr, y_tr, *, epochs: int = 60, batch: int = 64, lr: float = 3e-3):
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(xt) + batch - 1) // batch))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch):
            idx = perm[start:start + batch]
            xb = shift_augment(xt[idx], gen)
            opt.zero_grad()
            loss = loss_fn(model(xb), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


# ---------------------------------------------------------------------------------------- export / checks
def _constant_values(graph) -> dict:
    """Output name -> numpy value of every Constant node (value attribute) and initializer."""
    from onnx import numpy_helper

    vals = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return vals


def static_reshapes(proto) -> int:
    """Replace ``Reshape(t, Concat(dim(t,0), dim(t,1), c, ...))`` shape plumbing with a constant shape.

    The TorchScript exporter spells ``t.view(t.shape[0], t.shape[1], h, d)`` as Shape -> Gather ->
    Unsqueeze -> Concat per Reshape. ONNX Reshape copies a dim from the input where the shape holds 0,
    so ``[0, 0, h, d]`` says the same with one initializer (the usual form in optimized exports).
    Returns the number of Reshapes rewritten; unused nodes are then removed.
    """
    from onnx import numpy_helper

    g = proto.graph
    const = _constant_values(g)
    producer = {o: n for n in g.node for o in n.output}

    def copied_dim(name: str, data: str):
        """Index j when ``name`` is Unsqueeze(Gather(Shape(data), j), axes=[0]), else None."""
        u = producer.get(name)
        if u is None or u.op_type != "Unsqueeze" or const.get(u.input[1], np.array([-1])).tolist() != [0]:
            return None
        gth = producer.get(u.input[0])
        if gth is None or gth.op_type != "Gather" or gth.input[1] not in const:
            return None
        shp = producer.get(gth.input[0])
        if shp is None or shp.op_type != "Shape" or shp.input[0] != data or shp.attribute:
            return None
        return int(const[gth.input[1]])

    rewritten = 0
    for n in g.node:
        if n.op_type != "Reshape" or any(a.name == "allowzero" and a.i for a in n.attribute):
            continue
        cat = producer.get(n.input[1])
        if cat is None or cat.op_type != "Concat":
            continue
        dims = []
        for j, part in enumerate(cat.input):
            if copied_dim(part, n.input[0]) == j:
                dims.append(0)
            elif part in const and const[part].size == 1:
                dims.append(int(const[part].reshape(-1)[0]))
            else:
                break
        else:
            name = f"{n.name}/shape"
            g.initializer.append(numpy_helper.from_array(np.array(dims, dtype=np.int64), name))
            n.input[1] = name
            rewritten += 1
    # Drop nodes whose outputs nobody reads (the now-unused Shape/Gather/Unsqueeze/Concat chains).
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(g.node):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return rewritten


_WEIGHT_ROLES = {("Conv", 1): "weight", ("Conv", 2): "bias", ("MatMul", 1): "weight_t"}


def name_initializers(proto) -> None:
    """Give exporter-made weights (``onnx::Conv_39``: BatchNorm folded into Conv, transposed Linear
    weights) the name of the module that uses them: ``features.conv1.weight``, ``...q_proj.weight_t``."""
    g = proto.graph
    users: dict[str, list] = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            users.setdefault(name, []).append((n, i))
    taken = {t.name for t in g.initializer} | {v for n in g.node for v in n.output}
    for t in g.initializer:
        use = users.get(t.name, [])
        if not t.name.startswith("onnx::") or len(use) != 1:
            continue
        node, idx = use[0]
        role = _WEIGHT_ROLES.get((node.op_type, idx))
        scope = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        new = f"{scope}.{role}"
        if role is None or not scope or new in taken:
            continue
        taken.add(new)
        node.input[idx] = new
        t.name = new


def export_onnx(model, example, input_name: str, output_name: str, dynamic: dict[int, str]):
    """TorchScript exporter (dynamo=False), opset 17, dynamic axes; returns a checked, shape-inferred proto."""
    import onnx
    import torch

    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, (example,), buf, dynamo=False, opset_version=OPSET,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: dynamic, output_name: {0: dynamic[0]}},
            do_constant_folding=True, export_params=True, keep_initializers_as_inputs=False,
            training=torch.onnx.TrainingMode.EVAL)
    proto = onnx.load_model_from_string(buf.getvalue())
    static_reshapes(proto)
    name_initializers(proto)
    for node in proto.graph.node:  # no stack-trace / source doc strings in committed files
        node.doc_string = ""
    proto.producer_name = "trt-workbench sample_models/make_samples.py"
    proto.producer_version = f"torch {torch.__version__}"
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def set_meta(proto, **meta: str) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v


def ort_session(data: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def check_against_torch(model, data: bytes, input_name: str, inputs: list[np.ndarray], tol: float) -> float:
    """Run ORT on several input shapes (the dynamic axes) and return the max |ORT - torch|."""
    import torch

    sess = ort_session(data)
    worst = 0.0
    for x in inputs:
        (got,) = sess.run(None, {input_name: x})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        if got.shape != want.shape:
            raise SystemExit(f"shape mismatch for input {x.shape}: ORT {got.shape} vs torch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > tol:
        raise SystemExit(f"ONNX Runtime differs from torch by {worst:.3g} (> {tol})")
    return worst


def write(out: Path, name: str, data: bytes) -> Path:
    if len(data) >= MAX_FILE_BYTES:
        raise SystemExit(f"{name} is {len(data)} bytes; sample files must stay under {MAX_FILE_BYTES}")
    path = atomic_write_bytes(out / name, data)
    path.chmod(0o644)  # the atomic temp file is created 0600
    print(f"  wrote {path} ({len(data) / 1024:.1f} KiB)")
    return path


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- the three samples
def train_digits_model(out: Path, name: str, widths: tuple[int, int, int]) -> float:
    """Train the digits CNN at ``widths`` on the train split, export, check, write ``<name>.onnx``; returns
    the held-out accuracy (ONNX Runtime)."""
    import torch

    seed_everything()
    x_tr, y_tr, x_te, y_te = digits_splits()
    model = train_digits(build_digits_cnn(widths), x_tr, y_tr)
    params = sum(p.numel() for p in model.parameters())
    proto = export_onnx(model, torch.from_numpy(x_te[:2]), "image", "logits", {0: "batch"})
    data = proto.SerializeToString()
    diff = check_against_torch(model, data, "image", [x_te[:1], x_te[:7], x_te], tol=1e-4)
    (logits,) = ort_session(data).run(None, {"image": x_te})
    acc = float((logits.argmax(1) == y_te).mean())
    print(f"{name}: {params} params, held-out accuracy (ONNX Runtime) {acc:.4f} on {len(y_te)} images, "
          f"max |ORT - torch| {diff:.2e}")
    if acc < MIN_DIGITS_ACCURACY:
        raise SystemExit(f"{name} accuracy {acc:.4f} is below {MIN_DIGITS_ACCURACY}")
    set_meta(proto, description=f"CNN (conv widths {widths}) trained on scikit-learn load_digits (8x8 images "
                                "scaled to [0,1])",
             heldout_accuracy=f"{acc:.4f}", heldout_samples=str(len(y_te)), seed=str(SEED))
    write(out, f"{name}.onnx", proto.SerializeToString())
    return acc


def make_digits(out: Path) -> float:
    acc = train_digits_model(out, "digits_cnn", (16, 32, 64))
    x_tr, y_tr, x_te, y_te = digits_splits()
    write(out, "digits_test.npz", npz_bytes(image=x_te, label=y_te))
    pick = np.random.default_rng(SEED).choice(len(x_tr), CALIB_SAMPLES, replace=False)
    write(out, "digits_calib.npz", npz_bytes(image=x_tr[np.sort(pick)]))
    return acc


def make_transformer(out: Path) -> None:
    import torch

    seed_everything()
    model = build_transformer().eval()
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(SEED)
    proto = export_onnx(model, torch.from_numpy(rng.standard_normal((2, 16, 64), dtype=np.float32)),
                        "x", "y", {0: "batch", 1: "seq"})
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "seq"
    data = proto.SerializeToString()
    inputs = [rng.standard_normal(s, dtype=np.float32) for s in [(1, 16, 64), (7, 16, 64), (3, 5, 64), (2, 33, 64)]]
    diff = check_against_torch(model, data, "x", inputs, tol=1e-4)
    print(f"transformer_block: {params} params, max |ORT - torch| {diff:.2e}")
    set_meta(proto, description="pre-LN transformer encoder (seeded random weights: accuracy is meaningless)",
             seed=str(SEED))
    write(out, "transformer_block.onnx", proto.SerializeToString())


def make_resize_concat(out: Path) -> None:
    import torch

    seed_everything()
    model = build_resize_concat().eval()
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(SEED)
    proto = export_onnx(model, torch.from_numpy(rng.random((2, 3, 32, 32), dtype=np.float32)),
                        "x", "y", {0: "batch"})
    data = proto.SerializeToString()
    inputs = [rng.random((b, 3, 32, 32), dtype=np.float32) for b in (1, 7)]
    diff = check_against_torch(model, data, "x", inputs, tol=1e-4)
    print(f"resize_concat: {params} params, max |ORT - torch| {diff:.2e}")
    set_meta(proto, description="conv/Resize/Concat sample (seeded random weights: accuracy is meaningless)",
             seed=str(SEED))
    write(out, "resize_concat.onnx", proto.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: this script's folder, sample_models/)")
    ap.add_argument("--only", default="", metavar="LIST",
                    help="comma-separated subset of digits,digits_wide,transformer,resize_concat (default: all)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    makers = {"digits": make_digits, "digits_wide": lambda out: train_digits_model(out, "digits_cnn_wide", WIDE_WIDTHS),
              "transformer": make_transformer, "resize_concat": make_resize_concat}
    unknown = sorted((only or set()) - set(makers))
    if unknown:
        ap.error(f"--only: unknown {unknown}; choose from {sorted(makers)}")
    for key, make in makers.items():
        if only is None or key in only:
            make(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
