"""Engine cache on real TensorRT-RTX builds: hits, misses, corrupt entries rebuilt and never trusted."""
from __future__ import annotations

import hashlib

import pytest

import workbench
from workbench.backends import get_backend
from workbench.backends.base import BuildOptions
from workbench.backends.cache import EngineCache, cache_key
from workbench.builds import build_variants
from workbench.variant import Variant

pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: pip install 'trt-workbench[trt-rtx]'")
pytestmark = pytest.mark.rtx


@pytest.fixture
def setup(tmp_path, sample):
    model = workbench.load(sample("digits_cnn.onnx"))
    cache = EngineCache(tmp_path / "cache")
    return model, cache, get_backend("tensorrt-rtx")


SHAPES = "image:1x1x8x8/8x1x8x8/32x1x8x8"


def test_second_identical_build_is_a_hit(setup):
    model, cache, b = setup
    opts = BuildOptions(progress=False)
    first = cache.get_or_build(b, Variant.of(model), SHAPES, opts)
    assert (cache.hits, cache.misses) == (0, 1)
    assert first.record.cache_hit is False and first.record.cache_key
    # an equal model loaded again (new objects) gives the same key
    again = cache.get_or_build(b, Variant.of(workbench.load(model.source)), SHAPES, BuildOptions(progress=False))
    assert (cache.hits, cache.misses) == (1, 1)
    assert again.record.cache_hit is True and again.record.status == "cached"
    assert again.serialized == first.serialized
    assert again.record.cache_key == first.record.cache_key


def test_options_shapes_precision_change_the_key(setup):
    model, cache, b = setup
    v = Variant.of(model)
    base = cache_key(v, b, SHAPES, BuildOptions())
    assert cache_key(v, b, SHAPES, BuildOptions(progress=False)) == base  # display options do not count
    assert cache_key(v, b, SHAPES, BuildOptions(opt_level=1)) != base
    assert cache_key(v, b, "image:1x1x8x8/8x1x8x8/64x1x8x8", BuildOptions()) != base
    assert cache_key(Variant.of(model, "tf32"), b, SHAPES, BuildOptions()) != base

    cache.get_or_build(b, v, SHAPES, BuildOptions(progress=False))
    cache.get_or_build(b, v, SHAPES, BuildOptions(progress=False, opt_level=1))
    assert (cache.hits, cache.misses) == (0, 2)
    assert len(list(cache.dir.glob("*.engine"))) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "record"])
def test_corrupt_entry_is_rebuilt_not_trusted(setup, damage):
    model, cache, b = setup
    opts = BuildOptions(progress=False)
    first = cache.get_or_build(b, Variant.of(model), SHAPES, opts)
    eng_path, rec_path = cache.paths(first.record.cache_key)
    if damage == "flip":
        data = bytearray(eng_path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        eng_path.write_bytes(bytes(data))
    elif damage == "truncate":
        eng_path.write_bytes(eng_path.read_bytes()[:1000])
    else:
        rec_path.write_text("{ not json")
    rebuilt = cache.get_or_build(b, Variant.of(model), SHAPES, opts)
    assert (cache.hits, cache.misses, cache.invalid) == (0, 2, 1)
    assert rebuilt.record.cache_hit is False
    assert "rebuilt" in rebuilt.record.reason
    # the rebuilt entry is valid again and now hits
    assert hashlib.sha256(eng_path.read_bytes()).hexdigest() == rebuilt.record.engine_sha256
    hit = cache.get_or_build(b, Variant.of(model), SHAPES, opts)
    assert hit.record.cache_hit and hit.serialized == eng_path.read_bytes()


def test_build_variants_uses_the_cache(tmp_path, sample):
    model = sample("digits_cnn.onnx")
    kw = dict(backend="tensorrt-rtx", shapes=SHAPES, cache=tmp_path / "cache", progress=False)
    first = build_variants(model, "fp32,fp16", out_dir=tmp_path / "a", **kw)
    assert [r.status for r in first] == ["ok", "ok"]
    second = build_variants(model, "fp32,fp16", out_dir=tmp_path / "b", **kw)
    assert [r.status for r in second] == ["cached", "cached"]
    assert second.to_frame()["cache_hit"].tolist() == [True, True]
    for r1, r2 in zip(first, second):
        assert (tmp_path / "a" / r1.files["engine"]).read_bytes() == (tmp_path / "b" / r2.files["engine"]).read_bytes()
