"""FlowResult stores each build once (``build_entries``); flow.json is versioned and older JSON migrates.

``tests/data/flow_v1.json`` is a real ``flow.json`` written by workbench at commit 12ca776 (schema version
1: a ``builds`` frame plus ``variants: {"variants": ..., "builds": ...}``, layerwise column ``node``) from
``run_flow(digits_cnn, "fp32,int8", data=digits_test.npz, labels="label", calib=digits_calib.npz)``.
"""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from conftest import ROOT, SAMPLES
from workbench.flow import BUILDS_COLUMNS, BuildEntry, FlowRecord, FlowResult, run_flow
from workbench.records import load_record
from workbench.report import write_report

V1 = ROOT / "tests" / "data" / "flow_v1.json"


def _v1_views(raw: dict) -> tuple[pd.DataFrame, dict, dict]:
    """What version 1 stored, read straight from its JSON (not through the migration)."""
    f = raw["frames"]["builds"]
    return (pd.DataFrame(f["rows"], columns=f["columns"]), raw["variants"]["builds"], raw["variants"]["variants"])


def test_a_version_1_flow_loads_with_every_view_of_its_builds(tmp_path):
    raw = json.loads(V1.read_text())
    assert raw["schema_version"] == 1 and "builds" in raw["frames"] and "node" in raw["frames"]["layerwise"]["columns"]
    frame, records, configs = _v1_views(raw)
    shutil.copy(V1, tmp_path / "flow.json")
    fr = FlowResult.load(tmp_path)
    assert [type(e) for e in fr.build_entries] == [BuildEntry, BuildEntry]
    pd.testing.assert_frame_equal(fr.builds[list(frame.columns)], frame, check_dtype=False)
    assert fr.build_records == records and fr.variants == configs
    assert fr.build_entries[1].record["precision"] == "int8" and fr.build_entries[1].config["recipe"]
    assert "onnx_node" in fr.layerwise.columns and "node" not in fr.layerwise.columns
    assert fr.buildsets == {}  # loaded: no live engines
    s = fr.summary()
    assert list(s.precision) == ["fp32", "int8"] and s.p50_ms.notna().all()
    assert json.loads(V1.read_text()) == raw  # reading never rewrites the source file
    write_report(fr, tmp_path / "old.html")
    assert "digits_cnn-int8" in (tmp_path / "old.html").read_text()


def test_a_migrated_flow_saves_as_version_2_and_round_trips(tmp_path):
    shutil.copy(V1, tmp_path / "flow.json")
    old = FlowResult.load(tmp_path)
    d = old.save(tmp_path / "v2")
    raw = json.loads((d / "flow.json").read_text())
    assert raw["schema_version"] == 2 and "variants" not in raw and "builds" not in raw["frames"]
    assert [set(b) for b in raw["builds"]] == [set(BUILDS_COLUMNS) | {"record", "config"}] * 2
    back = FlowResult.load(d)
    assert back.build_entries == old.build_entries
    for name in FlowResult.FRAMES:
        pd.testing.assert_frame_equal(getattr(back, name), getattr(old, name), check_dtype=False, obj=name)
    assert back.variants == old.variants and back.build_records == old.build_records
    vr = load_record(d / "records" / "digits_cnn-int8@onnxruntime.json")
    assert vr.build == old.build_records["digits_cnn-int8@onnxruntime"] and vr.config["precision"] == "int8"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    d = tmp_path_factory.mktemp("fresh")
    for f in ("digits_cnn.onnx", "digits_test.npz"):
        shutil.copy(SAMPLES / f, d / f)
    return run_flow(d / "digits_cnn.onnx", "fp32,fp16,bf16", data=d / "digits_test.npz", labels="label",
                    iterations=3, warmup=0, layer_iterations=2, blocks=1, accuracy_limit=16, layerwise_limit=4,
                    progress=False)


def test_one_store_of_builds_and_its_views_agree(fresh):
    keys = [e.key for e in fresh.build_entries]
    assert keys == [f"digits_cnn-{p}@onnxruntime" for p in ("fp32", "fp16", "bf16")]
    assert list(fresh.builds.columns) == BUILDS_COLUMNS and list(fresh.builds.variant + "@" + fresh.builds.backend) == keys
    assert list(fresh.build_records) == keys
    bf16 = fresh.build_entries[2]
    assert bf16.status == "skipped" and bf16.result is not None and bf16.result.engine is None
    assert fresh.builds.status.tolist() == ["ok", "ok", "skipped"]
    bs = fresh.buildsets["onnxruntime"]
    assert [r.precision for r in bs] == ["fp32", "fp16", "bf16"] and bs["fp16"].engine is not None
    assert fresh.variants[keys[1]] == bs["fp16"].variant.to_json()
    assert fresh.build_records[keys[0]] == bs["fp32"].record.to_json()


def test_a_new_flow_round_trips(fresh, tmp_path):
    d = fresh.save(tmp_path / "new")
    raw = json.loads((d / "flow.json").read_text())
    assert raw["schema_version"] == FlowRecord.version == 2
    back = FlowResult.load(d)
    assert back.build_entries == fresh.build_entries  # live results are not compared (and not saved)
    assert all(e.result is None for e in back.build_entries)
    for name in FlowResult.FRAMES:
        pd.testing.assert_frame_equal(getattr(back, name), getattr(fresh, name).reset_index(drop=True),
                                      check_dtype=False, obj=name)
    assert back.summary().to_json() == fresh.summary().to_json()


def test_layerwise_facts_live_in_columns_and_frames_not_attrs(fresh, tmp_path):
    """The flow concatenates per-variant layerwise frames: the rule behind ``diverged`` is a column and the
    tensors left out are the ``layerwise_unmatched`` frame, so both survive concat and JSON."""
    from workbench.compare.layerwise import UNMATCHED_COLUMNS

    lw = fresh.layerwise
    assert set(lw.variant) == {"digits_cnn-fp16"} and len(lw)
    assert set(lw.divergence_metric) == {"cosine"} and lw.divergence_threshold.notna().all()
    assert list(fresh.layerwise_unmatched.columns) == UNMATCHED_COLUMNS
    back = FlowResult.load(fresh.save(tmp_path / "lw"))
    assert list(back.layerwise_unmatched.columns) == UNMATCHED_COLUMNS
    assert back.layerwise[["divergence_metric", "divergence_threshold"]].equals(
        lw[["divergence_metric", "divergence_threshold"]].reset_index(drop=True))
    v1 = FlowResult.load(V1)  # older files: no unmatched frame stored, an empty one
    assert v1.layerwise_unmatched.empty
