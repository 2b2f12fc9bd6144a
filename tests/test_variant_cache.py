"""Variant cache across runs (issue #15): a second report on the same model, data and precisions reuses
the recipe outputs; other calibration data, options or a damaged entry make the variant again."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workbench.precision as precision
from workbench.builds import build_variants
from workbench.variantcache import VariantCache, data_fingerprint

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "sample_models" / "digits_cnn.onnx"
CALIB = ROOT / "sample_models" / "digits_calib.npz"
TEST = ROOT / "sample_models" / "digits_test.npz"


@pytest.fixture()
def recipe_calls(monkeypatch):
    """Counts make_variant calls per precision (the recipes that actually ran)."""
    calls: list[str] = []
    original = precision.make_variant

    def spy(model, prec, **kw):
        calls.append(prec)
        return original(model, prec, **kw)

    monkeypatch.setattr(precision, "make_variant", spy)
    return calls


def _calib(n: int = 32, offset: int = 0) -> list[dict]:
    return [{"image": np.load(CALIB)["image"][offset:offset + n]}]


def test_second_build_reuses_variants_and_new_calibration_data_invalidates(tmp_path, recipe_calls):
    cache = VariantCache(tmp_path / "variants")
    first = build_variants(str(DIGITS), "fp32,fp16,int8", calib=_calib(), variant_cache=cache, progress=False)
    assert recipe_calls == ["fp32", "fp16", "int8"]
    assert first.to_frame()["variant_cached"].tolist() == [False, False, False]
    assert first["int8"].recipe_time_s > 0

    second = build_variants(str(DIGITS), "fp32,fp16,int8", calib=_calib(), variant_cache=cache, progress=False)
    assert recipe_calls[3:] == ["fp32"]  # fp32 keeps the graph: nothing to cache; fp16/int8 reused
    frame = second.to_frame()
    assert frame["variant_cached"].tolist() == [False, True, True]
    assert frame["recipe_time_s"].tolist()[1:] == [0.0, 0.0]
    for p in ("fp16", "int8"):
        assert second[p].variant.hash == first[p].variant.hash
        assert second[p].variant.recipe == first[p].variant.recipe
        feeds = {"image": np.load(TEST)["image"][:8]}
        a, b = second[p].engine.run(feeds), first[p].engine.run(feeds)
        for k in b:
            np.testing.assert_array_equal(a[k], b[k])
    assert cache.stats()["hits"] == 2

    # other calibration data (same shape, other samples): int8 is calibrated again; fp16 needs no data
    third = build_variants(str(DIGITS), "fp16,int8", calib=_calib(offset=100), variant_cache=cache, progress=False)
    assert recipe_calls[4:] == ["int8"]
    assert third.to_frame()["variant_cached"].tolist() == [True, False]
    # the same data as a .npz file is another fingerprint than the in-memory arrays: made once, then reused
    build_variants(str(DIGITS), "int8", calib=str(CALIB), variant_cache=cache, progress=False)
    build_variants(str(DIGITS), "int8", calib=str(CALIB), variant_cache=cache, progress=False)
    assert recipe_calls[5:] == ["int8"]
    # another recipe option is another variant
    build_variants(str(DIGITS), "int8", calib=_calib(), variant_cache=cache, progress=False,
                   recipe_options={"per_channel": False})
    assert recipe_calls[6:] == ["int8"]


def test_damaged_entry_is_removed_and_remade(tmp_path, recipe_calls):
    cache = VariantCache(tmp_path / "variants")
    build_variants(str(DIGITS), "fp16", variant_cache=cache, progress=False)
    onnx_file = next((tmp_path / "variants").glob("*.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])  # truncated
    again = build_variants(str(DIGITS), "fp16", variant_cache=cache, progress=False)
    assert recipe_calls == ["fp16", "fp16"]
    assert again["fp16"].status == "ok" and not again["fp16"].variant_cached
    assert cache.invalid == 1 and "altered" in cache.last_reason
    third = build_variants(str(DIGITS), "fp16", variant_cache=cache, progress=False)
    assert third["fp16"].variant_cached and recipe_calls == ["fp16", "fp16"]


def test_one_shot_calibration_data_is_not_cached(tmp_path, recipe_calls):
    cache = VariantCache(tmp_path / "variants")
    data = np.load(CALIB)["image"][:32]
    for _ in range(2):
        gen = ({"image": data[i:i + 8]} for i in range(0, 32, 8))  # readable once: no fingerprint
        build_variants(str(DIGITS), "int8", calib=gen, variant_cache=cache, progress=False)
    assert recipe_calls == ["int8", "int8"]
    assert "fingerprint" in cache.last_reason
    assert data_fingerprint(iter([])) is None
    assert data_fingerprint(str(CALIB)) == data_fingerprint(Path(CALIB))


def test_second_report_reuses_variants_and_says_so(tmp_path, recipe_calls):
    from workbench.commands.report import make_report
    from workbench.report import stage_frame

    kw = dict(data=str(TEST), labels="label", calib=str(CALIB), shapes=None, iterations=3, warmup=1,
              layer_iterations=2, limit=32, progress=False, layerwise_limit=4)
    fr1, out1, _, _ = make_report(str(DIGITS), ["fp32", "fp16", "int8"], ["onnxruntime"], out=tmp_path / "a.html", **kw)
    assert recipe_calls == ["fp32", "fp16", "int8"]
    assert "variants made: fp16, int8" in fr1.config["reused"]["build"]
    fr2, out2, _, _ = make_report(str(DIGITS), ["fp32", "fp16", "int8"], ["onnxruntime"], out=tmp_path / "b.html", **kw)
    assert recipe_calls[3:] == ["fp32"]
    assert fr2.config["reused"]["build"].startswith("variants reused: fp16, int8")
    stages = stage_frame(fr2).set_index("stage")
    assert "variants reused: fp16, int8" in stages.loc["build", "reused"]
    assert stages["cpu seconds"].notna().all()
    html = out2.read_text()
    assert "variants reused: fp16, int8" in html and "cpu seconds" in html
    assert (tmp_path / ".workbench-cache" / "variants").is_dir()  # beside the reports, not elsewhere
    # the same numbers from the reused variants
    a = fr1.accuracy.set_index("variant")["cosine_min"]
    b = fr2.accuracy.set_index("variant")["cosine_min"]
    assert a.to_dict() == b.to_dict()
    # no cache: everything is made again and nothing is written
    fr3, _, _, _ = make_report(str(DIGITS), ["fp16"], ["onnxruntime"], out=tmp_path / "c" / "c.html",
                               cache_dir=None, **kw)
    assert "fp16" in recipe_calls[-2:] and "no variant cache" in fr3.config["reused"]["build"]
    assert not (tmp_path / "c" / ".workbench-cache").exists()
