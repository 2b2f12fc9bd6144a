"""Realistic inputs for each corpus model, written as ``<cache>/data/<name>.npz`` (keys = input names).

Runs in the isolated venv (numpy, pillow, onnxruntime), never in the project's venv:

    python realmodels/make_data.py --cache DIR --models NAME,...

What each file holds, and how real it is:
- ``ppocr_det_v4``: 16 document-like pages 384x512, lines of English text rendered with a TrueType font
  (DejaVu Sans if the system has it, else Pillow's bundled font), dark ink on paper-white with paper noise;
  preprocessed exactly like rapidocr (BGR, ``(x/255-0.5)/0.5``, NCHW). Synthetic images of real text.
- ``ppocr_rec_v4``: 32 single text-line crops, height 48, width padded to 320 with 0 (rapidocr's
  ``resize_norm_img``), same normalization.
- ``ppocr_cls_v2``: 32 text-line crops 48x192, every second one rotated 180 degrees; ``label`` = 0 (upright)
  or 1 (180), the classifier's two classes: real labels, so compare reports top-1.
- ``silero_vad_op15`` / ``silero_vad_v6``: 16 kHz audio synthesized as voiced speech (glottal pulse train
  at 110-220 Hz through three formant resonators, syllable envelope) between stretches of room noise
  (no speech recording ships in any package we use: documented synthetic). The stream is cut into
  512-sample chunks with 64 samples of context (576, as silero-vad's own wrapper feeds it); the model is
  run over the whole stream chunk by chunk and every sample stores the REAL recurrent state the model had
  before that chunk: ``input`` (N, 576), ``state`` (2, N, 128) (batch on axis 1), ``sr`` () = 16000.
- ``silero_vad_lstm``: the same chunks as one sequence, ``input`` (N, 576), ``h``/``c`` (1, 1, 128) zeros:
  inputs with no batch axis.
- ``magika_v3_3``: the model's real features of real files (the three pinned wheels of rapidocr,
  silero-vad and magika as zip, and the files inside them: Python, JSON, YAML, ONNX, TorchScript, ELF, ...): first 1024 bytes after
  lstrip and last 1024 before rstrip of the first/last 4096 bytes, padding token 256 (magika 1.0.3's
  ``_extract_features_from_seekable``). int32 (N, 2048).
The MiniLM token ids come from ``export_minilm.py`` (the package's own tokenizer).
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

RNG = np.random.default_rng(20261129)

WORDS = ("the quick brown fox jumps over lazy dog engine build layer tensor model quantize profile latency "
         "accuracy compare report graph node input output batch shape precision calibration kernel runtime "
         "invoice total amount date paid customer order number street city Paris Berlin 2026 12.50 EUR "
         "page chapter section figure table open close read write Hello World OCR text line receipt").split()


def _font(size: int):
    from PIL import ImageFont

    for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"):
        if os.path.exists(p):
            return ImageFont.truetype(p, size)
    return ImageFont.load_default(size=size)


def _sentence(n_words: int) -> str:
    return " ".join(RNG.choice(WORDS, n_words))


def _normalize(img_rgb: np.ndarray) -> np.ndarray:
    """rapidocr: BGR order, (x/255 - 0.5) / 0.5, HWC -> CHW float32."""
    bgr = img_rgb[..., ::-1].astype(np.float32)
    return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy()


def _paper(h: int, w: int) -> "Image":  # noqa: F821  (PIL is imported inside, optional)
    from PIL import Image

    base = RNG.integers(225, 250)
    noise = RNG.normal(0, 6, (h, w, 1)).astype(np.float32)
    tint = np.array([base, base - RNG.integers(0, 8), base - RNG.integers(0, 15)], np.float32)
    arr = np.clip(tint + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def det_pages(n: int = 16, h: int = 384, w: int = 512) -> dict:
    from PIL import ImageDraw

    xs = []
    for _ in range(n):
        img = _paper(h, w)
        d = ImageDraw.Draw(img)
        y = int(RNG.integers(8, 30))
        while y < h - 30:
            size = int(RNG.integers(14, 30))
            ink = tuple(int(v) for v in RNG.integers(0, 70, 3))
            d.text((int(RNG.integers(8, 60)), y), _sentence(int(RNG.integers(2, 7))), fill=ink, font=_font(size))
            y += int(size * RNG.uniform(1.4, 2.4))
        xs.append(_normalize(np.asarray(img)))
    return {"x": np.stack(xs)}


def _line_crop(text: str, height: int = 48) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(int(RNG.integers(26, 34)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font)
    pad = int(RNG.integers(3, 8))
    img = _paper(y1 - y0 + 2 * pad, x1 - x0 + 2 * pad)
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, fill=tuple(int(v) for v in RNG.integers(0, 60, 3)), font=font)
    ratio = img.width / img.height
    return np.asarray(img.resize((max(1, int(round(height * ratio))), height), Image.BILINEAR))


def _pad_width(crop: np.ndarray, width: int) -> np.ndarray:
    """rapidocr resize_norm_img: resize to fit ``width`` keeping the ratio, normalize, pad right with 0."""
    from PIL import Image

    h, w = crop.shape[:2]
    if w > width:
        crop = np.asarray(Image.fromarray(crop).resize((width, h), Image.BILINEAR))
        w = width
    out = np.zeros((3, h, width), np.float32)
    out[:, :, :w] = _normalize(crop)
    return out


def rec_lines(n: int = 32) -> dict:
    return {"x": np.stack([_pad_width(_line_crop(_sentence(int(RNG.integers(1, 5)))), 320) for _ in range(n)])}


def cls_lines(n: int = 32) -> dict:
    xs, labels = [], []
    for i in range(n):
        crop = _line_crop(_sentence(int(RNG.integers(1, 4))))
        if i % 2:
            crop = crop[::-1, ::-1].copy()  # 180 degrees
        xs.append(_pad_width(crop, 192))
        labels.append(i % 2)
    return {"x": np.stack(xs), "label": np.asarray(labels, np.int64)}


def speech_stream(seconds: float = 6.0, sr: int = 16000) -> np.ndarray:
    """Voiced speech-like segments (pulse train through formant resonators) between room-noise gaps."""
    n = int(seconds * sr)
    out = RNG.normal(0, 0.003, n).astype(np.float64)
    t = 0
    speaking = False
    while t < n:
        dur = int(sr * RNG.uniform(0.4, 1.0))
        if speaking:
            seg = np.zeros(min(dur, n - t))
            f0 = RNG.uniform(110, 220)
            period = int(sr / f0)
            seg[::period] = 1.0
            for f, bw in ((RNG.uniform(500, 800), 80), (RNG.uniform(1000, 1800), 120), (RNG.uniform(2300, 3000), 160)):
                r = np.exp(-np.pi * bw / sr)
                a1, a2 = -2 * r * np.cos(2 * np.pi * f / sr), r * r
                y = np.zeros_like(seg)
                for i in range(len(seg)):  # two-pole resonator
                    y[i] = seg[i] - a1 * (y[i - 1] if i else 0) - a2 * (y[i - 2] if i > 1 else 0)
                seg = seg + 0.5 * y
            syll = 0.5 * (1 - np.cos(2 * np.pi * np.arange(len(seg)) / (sr * 0.2)))  # ~5 syllables/s
            seg = seg * syll
            seg = 0.3 * seg / (np.abs(seg).max() + 1e-9)
            out[t:t + len(seg)] += seg
        t += dur
        speaking = not speaking
    return out.astype(np.float32)


def vad_chunks(model_path: Path, n_keep: int = 32) -> dict:
    import onnxruntime as ort

    audio = speech_stream()
    ctx, step = 64, 512
    chunks = [np.concatenate([np.zeros(ctx, np.float32) if i == 0 else audio[i - ctx:i], audio[i:i + step]])
              for i in range(0, len(audio) - step + 1, step)]
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    states = []
    sr = np.array(16000, np.int64)
    for c in chunks:
        states.append(state[:, 0])
        _, state = sess.run(None, {"input": c[None], "state": state, "sr": sr})
    keep = np.linspace(0, len(chunks) - 1, n_keep).round().astype(int)
    return {"input": np.stack([chunks[i] for i in keep]),
            "state": np.stack([states[i] for i in keep], axis=1).astype(np.float32),
            "sr": sr}


def vad_sequence(n: int = 32) -> dict:
    audio = speech_stream()
    ctx, step = 64, 512
    chunks = [np.concatenate([np.zeros(ctx, np.float32) if i == 0 else audio[i - ctx:i], audio[i:i + step]])
              for i in range(0, len(audio) - step + 1, step)][:n]
    z = np.zeros((1, 1, 128), np.float32)
    return {"input": np.stack(chunks), "h": z, "c": z.copy()}


def _magika_features(data: bytes, beg: int = 1024, end: int = 1024, block: int = 4096, pad: int = 256) -> np.ndarray:
    """``data``: the whole file, or its first and last ``block`` bytes concatenated (``_head_tail``)."""
    head = data[:block]
    tail = data[-block:] if len(data) >= block else data
    if len(data) <= block:
        head, tail = head.strip(), tail.strip()
    else:
        head, tail = head.lstrip(), tail.rstrip()
    b = list(head[:beg]) + [pad] * max(0, beg - len(head))
    e = [pad] * max(0, end - len(tail)) + list(tail[-end:] if tail else b"")
    return np.asarray(b[:beg] + e[-end:], np.int32)


MAGIKA_WHEELS = ("magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
                 "silero_vad-6.2.3-py3-none-any.whl")


def _head_tail(f, block: int = 4096) -> bytes:
    """First and last ``block`` bytes of a stream (whole content when short), reading it once."""
    head = f.read(block)
    tail = b""
    while chunk := f.read(1 << 20):
        tail = (tail + chunk)[-block:]
    return head + tail if tail else head


def magika_files(cache: Path, n: int = 32) -> dict:
    """Magika's features of real files: the three pinned wheels (zip) and the files inside them."""
    blobs: list[tuple[str, bytes]] = []
    by_ext: dict[str, list[tuple[str, bytes]]] = {}
    for name in MAGIKA_WHEELS:
        w = cache / "wheels" / name
        if not w.exists():
            raise SystemExit(f"make_data: {w} missing (fetch.py downloads it for magika's data)")
        with open(w, "rb") as f:
            blobs.append((w.name, _head_tail(f)))
        with zipfile.ZipFile(w) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if info.is_dir() or info.file_size < 64:
                    continue
                ext = Path(info.filename).suffix.lower() or Path(info.filename).name
                with z.open(info) as f:
                    by_ext.setdefault(ext, []).append((info.filename, _head_tail(f)))
    # round-robin over file types so the batch is varied (py, json, yaml, md, onnx, ELF, ...)
    exts = sorted(by_ext)
    i = 0
    while len(blobs) < n and any(by_ext.values()):
        lst = by_ext[exts[i % len(exts)]]
        if lst:
            blobs.append(lst.pop(0))
        i += 1
    return {"bytes": np.stack([_magika_features(b) for _, b in blobs[:n]])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--models", required=True)
    a = ap.parse_args(argv)
    cache = Path(a.cache)
    (cache / "data").mkdir(parents=True, exist_ok=True)
    makers = {
        "ppocr_det_v4": det_pages,
        "ppocr_rec_v4": rec_lines,
        "ppocr_cls_v2": cls_lines,
        "silero_vad_op15": lambda: vad_chunks(cache / "models" / "silero_vad_op15.onnx"),
        "silero_vad_v6": lambda: vad_chunks(cache / "models" / "silero_vad_v6.onnx"),
        "silero_vad_lstm": vad_sequence,
        "magika_v3_3": lambda: magika_files(cache),
    }
    for name in a.models.split(","):
        if name not in makers:
            print(f"make_data: no maker for {name}", file=sys.stderr)
            return 1
        arrays = makers[name]()
        out = cache / "data" / f"{name}.npz"
        tmp = out.with_name(out.stem + ".part.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, out)
        print(name, {k: (v.shape, str(v.dtype)) for k, v in arrays.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
