"""`make mutate`: mutation testing of the core modules with mutmut 3 (pinned in the ``dev`` extra).

Why mutmut: maintained, pytest-native, incremental (it keeps each mutant's result until the mutated
function's source changes) and it runs only the tests that cover the mutated function, in forked processes.
cosmic-ray needs a session database and one full test command per mutant, which does not fit two cores.

Each target mutates one module (optionally only some of its functions) in its own scratch copy of the
repository, with only the test files that own that module's behaviour selected; the scores go to
docs/mutation.json and docs/testing.md quotes them.

    python tools/mutate.py [TARGET ...]        # all targets (PLAN) or the named ones (e.g. latency metrics)
    python tools/mutate.py --sample            # the small fixed sample (a few functions; minutes)
    python tools/mutate.py --list              # targets, their modules and test files
    python tools/mutate.py latency --rerun     # re-test the survivors after adding tests (incremental)

How it keeps mutmut usable on two shared cores:

* ``process_isolation = "forkserver"``: mutants run in processes forked from a server that has imported the
  tests but run none. Forking from mutmut's own process (the default) inherits tqdm's monitor thread and its
  lock from the stats run, and every mutant whose tests show a progress bar then hangs until the timeout.
* Timeouts are CPU time, not wall time: mutmut limits each mutant to ``RLIMIT_CPU = 2 x 15 x (its tests'
  time + 1 s)`` CPU seconds, which does not depend on the load, and also sends SIGXCPU after a wall-clock
  deadline of half that. On a machine shared with other jobs at a higher priority the wall deadline fires
  on healthy mutants (last session: nearly all of them "timed out"), so this tool multiplies the wall
  deadline by ``--wall-factor`` (default 10). An infinite loop still dies on its CPU limit.
* Slow tests never run: the selections below name the fast test files of each module, and
  ``-m "not browser and not notebook and not gpu and not trt"`` drops the rest; pytest runs with ``-x``.
* Error-message text is not mutated (``do_not_mutate_patterns``: statements that start with ``raise``).
  Which error class is raised, and the condition that raises it, are mutated like all other code.

Score (docs/mutation.json, docs/testing.md):
``score = detected / (detected + undetected)`` with detected = killed + timeout (a mutant whose tests hit the
CPU limit: an infinite loop is a detected bug) and undetected = survived + "no tests" (a mutant that no
selected test even executes is a mutant nothing catches). Each count is recorded separately.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "mutation.json"
WORK = Path(os.environ.get("WB_MUTATE_DIR") or Path.home() / ".cache" / "trt-workbench" / "mutate")
SKIP_MARKS = "not browser and not notebook and not gpu and not trt"
NO_MUTATE = [r"^\s*raise \w"]


@dataclass
class Target:
    module: str                     # the file mutated
    tests: list[str]                # the test files selected for it (fast ones only)
    functions: list[str] = field(default_factory=list)  # mangled-name globs; empty = every function
    note: str = ""
    undecorate: tuple[str, ...] = ()  # more decorators applied after definition in the scratch copy (_undecorate)


#: slow (2-40 s) or real-model tests left out of the precision/ targets' selections
_SLOW_RECIPE_TESTS = ["--deselect", "tests/test_recipe_validity.py::test_minilm_transformer_int8_keeps_cosine",
                      "--deselect", "tests/test_recipe_validity.py::test_real_models_float_recipes_valid[fp16-ppocr",
                      "--deselect", "tests/test_precision.py::test_fp16_light_resnet50_initializer_inputs",
                      "--deselect", "tests/test_precision.py::test_int8_calibration_method_changes_scales",
                      "--deselect", "tests/test_precision.py::test_int8_light_squeezenet_synthetic",
                      "--deselect", "tests/test_recipe_validity.py::test_real_models_float_recipes_valid[bf16-ppocr",
                      "--deselect", "tests/test_recipe_validity.py::test_toposort_20000_node_chain_no_recursion_limit",
                      "--deselect", "tests/test_recipe_validity.py::test_fold_cleanup_large_reversed_chain_valid"]

#: target name -> what is mutated and which tests judge it. Order = priority (the issue's planted bugs first).
PLAN: dict[str, Target] = {
    "latency": Target("workbench/measure/latency.py",
                      ["tests/test_latency.py", "tests/test_mut_latency.py",
                       "tests/test_oracles.py::test_latency_stats_match_numpy_on_skewed_samples",
                       "tests/test_oracles.py::test_measure_latency_runs_the_warmup_and_times_only_the_rest"]),
    "metrics": Target("workbench/compare/metrics.py",
                      ["tests/test_compare.py", "tests/test_verdicts.py", "tests/test_mut_metrics.py",
                       "--deselect", "tests/test_compare.py::test_int8_digits_top1_matches_direct_ort_run",
                       "--deselect", "tests/test_compare.py::test_identical_variant_is_exact",
                       "--deselect", "tests/test_compare.py::test_cli_compare_json"],
                      note="tests: not the 2-9 s int8/CLI comparisons"),
    "repeat": Target("workbench/measure/repeat.py", ["tests/test_mut_summary.py"],
                     note="speedup = fp32 p50 / variant p50, its block range, faster/slower/within noise"),
    "summary": Target("workbench/report.py", ["tests/test_mut_summary.py"],
                      ["*.x_summary_frame*", "*.x_summary_html*"],
                      "summary_frame, summary_html only"),
    "flow-summary": Target("workbench/flow.py", ["tests/test_mut_summary.py"],
                           ["*FlowResult*summary*"], "FlowResult.summary, summary_text only"),
    "sensitivity": Target("workbench/compare/sensitivity.py",
                          ["tests/test_mut_sensitivity.py", "tests/test_sensitivity.py::test_target_parsing",
                           "tests/test_sensitivity.py::test_attribution_gives_relu_error_to_its_conv",
                           "tests/test_sensitivity.py::test_labels_required_for_top1_target"],
                          note="tests: not the full searches on real models"),
    "fp16safety": Target("workbench/precision/fp16safety.py", ["tests/test_fp16_safety.py", "tests/test_mut_fp16.py"]),
    "fp16-checks": Target("workbench/precision/floating.py", ["tests/test_fp16_safety.py", "tests/test_mut_fp16.py"],
                          ["*.x_tensor_problem*", "*.x_fp16_range_blocks*", "*.x_norm_variance_nodes*",
                           "*.x__const_value*"], "the range / underflow / normalization checks only"),
    "fp16-convert": Target("workbench/precision/floating.py", ["tests/test_mut_floating.py"],
                           [*[f"*.x_{f}__mutmut_*" for f in (
                               "default_op_block_list", "linear_converter_sort", "_elem_types", "_float_nodes",
                               "convert_fp16", "retype_to_bf16", "_ml_version")],
                            "*ǁFp16Recipeǁ*", "*ǁBf16Recipeǁ*"],
                           "the fp16/bf16 conversion itself: convert_fp16, the recipes' apply/default_keep, "
                           "retype_to_bf16, the converter patch; tests: small onnx.helper graphs through make_variant",
                           undecorate=("contextlib.contextmanager",)),
    "model": Target("workbench/model.py", ["tests/test_model.py", "tests/test_mut_model.py",
                                           "tests/test_oracles.py::test_dotdot_inside_the_folder_is_refused_by_the_dotdot_rule"]),
    "data": Target("workbench/data.py", ["tests/test_data.py", "tests/test_mut_data.py"],
                   ["*ShapeRange*", "*ShapeMap*", "*.x__split_items*", "*.x__parse_dims*", "*.x__parse_range*",
                    "*.x__make_range*", "*.x_np_dtype*", "*TensorSpec*", "*.x__spec_of*", "*.x_input_specs*",
                    "*.x_output_specs*", "*.x_resolve_shapes*", "*.x_samples_in*", "*.x__take*", "*.x_static_batch*",
                    "*.x_default_batch*", "*.x_feeds_batch*", "*.x_head_batches*", "*.x_cast_feeds*",
                    "*.x_synthetic_inputs*", "*.x_model_batch_axes*"],
                   "shapes syntax, input specs, shape resolution, batch axes, synthetic inputs, batch helpers; not "
                   "the .npz reader"),
    "builds": Target("workbench/builds.py", ["tests/test_builds_fallback.py", "tests/test_mut_builds.py"]),
    "layerwise": Target("workbench/compare/layerwise.py",
                        ["tests/test_mut_layerwise.py", "tests/test_layerwise.py::test_bad_metric_and_missing_threshold"],
                        ["*.x_layerwise__mutmut*", "*.x__is_diverged*", "*.x__resolve_threshold*",
                         "*.x_plan_passes*", "*.x__pair_bytes*", "*.x__groups*", "*.x__splittable*", "*.x__split*",
                         "*.x__first_samples*", "*.x__human_bytes*", "*.x_parse_bytes*", "*.x__batches*",
                         "*.x__fold*", "*.x__samples*"],
                        "layerwise() with its memory / compare budget (plan_passes, parse_bytes and their "
                        "helpers), divergence rule; not the tensor matching (match_tensors) nor first_divergence; "
                        "tests: tiny real graphs in test_mut_layerwise.py, not the slow digits files"),
    "layerwise-match": Target("workbench/compare/layerwise.py",
                              ["tests/test_mut_layerwise.py",
                               *[f"tests/test_layerwise_scale.py::test_{t}" for t in (
                                   "renamed_fused_and_cast_tensors_are_matched_structurally",
                                   "structural_match_finds_a_planted_change",
                                   "transposed_and_reshaped_tensors_are_unmatched_not_fatal",
                                   "shape_mismatch_seen_only_at_run_time_is_unmatched",
                                   "missing_tensor_recorded_map_and_skips", "cut_model_keeps_only_what_the_tensor_needs",
                                   "fused_node_keeping_its_name_does_not_pair_the_pre_fusion_tensor")]],
                              ["*.x_match_tensors__*", "*.x_match_tensor__*", "*.x__shapes_conflict*", "*.x__fmt_shape*",
                               "*.x_dynamic_tensors*", "*.x__subgraph_refs*", "*.x__infer*", "*.x__types_and_shapes*",
                               "*.x_tensor_types*", "*.x_expose*", "*.x_cut_model*", "*.x_layerwise_summary*",
                               "*.x_unmatched_frame*", "*.x_layerwise_tidy*", "*.x_node_label*", "*ǁMatchPlanǁ*"],
                              "tensor matching (name and structure rules, shape checks), expose/cut_model, the "
                              "summary/unmatched/tidy frames; tests: tiny real graphs, not the digits files"),
    "bisect": Target("workbench/compare/layerwise.py",
                     ["tests/test_mut_bisect.py",
                      "tests/test_layerwise_scale.py::test_bisection_agrees_with_the_full_scan_on_a_planted_divergence"],
                     ["*.x_first_divergence__*", "*ǁBisectionǁ*", "*ǁPeakRSSǁ*", "*.x__session__*", "*.x__as_variant__*"],
                     "first_divergence (bisection over cut graphs), the Bisection record, PeakRSS, the ORT CPU "
                     "session and variant helpers; not layerwise_debug_tensors (needs TensorRT on a GPU); tests: "
                     "tiny real graphs, not the int8 digits bisection"),
    "precision-base": Target("workbench/precision/base.py",
                             ["tests/test_precision.py", "tests/test_extending.py", "tests/test_mut_precision.py"]),
    "layers": Target("workbench/measure/layers.py",
                     ["tests/test_layers.py", "tests/test_oracles.py", "tests/test_speed_attribution.py",
                      "tests/test_mut_layers.py"],
                     [f"*.x_{f}__mutmut_*" for f in (
                         "_check", "_frame", "_run_columns", "_named_index", "parse_ort_trace", "shape_text",
                         "_ort_session", "_optimized_nodes", "ort_layer_rows", "_neighbour", "profile_layers_ort",
                         "make_trt_profiler", "_format_text", "_io_field", "parse_trt_layer_info", "precision_tokens",
                         "_precision_of", "trt_layer_rows", "profile_layers", "coverage_reason", "coverage",
                         "_run_facts", "_profiled_run_ms", "profile", "save_layers_csv")] + ["*ǁCoverageǁ*"],
                     "all but profile_layers_trt, which needs a TensorRT engine on a GPU"),
    "speed": Target("workbench/compare/speed.py", ["tests/test_speed_attribution.py", "tests/test_mut_speed.py"],
                    note="why a variant is slower/faster: per-node attribution, categories, summary"),
    "outputs": Target("workbench/compare/outputs.py",
                      ["tests/test_compare.py", "tests/test_verdicts.py", "tests/test_mut_outputs.py"]),
    "quantize": Target("workbench/precision/quantize.py",
                       ["tests/test_precision.py", "tests/test_mut_quantize.py",
                        "tests/test_recipe_validity.py::test_fold_cleanup_large_reversed_chain_valid"],
                       [f"*.x_{f}__mutmut_*" for f in (
                           "default_target", "resolve_target", "looks_like_transformer", "resolve_placement",
                           "_has_calibration_cache", "_calibration_method", "fp8_supported", "sums_to_adds",
                           "flatten_gemm_bias", "_failed_in", "scope_producers", "scope_changes", "subgraph_summary",
                           "_initializer_consumers", "_nan_reason", "_float_op_summary", "_kept_nodes")]
                       + ["*ǁ_QuantRecipeǁ_settings*", "*ǁ_QuantRecipeǁ_method*", "*ǁFp8Recipeǁ_method*"],
                       "its own graph/target logic; not _ort_quantize (674 mutants) nor apply/_calibrate/_preprocess "
                       "(target quantize-apply): each mutant would run real ORT quantizations; tests: not the 11 s "
                       "MiniLM int8 runs"),
    "quantize-apply": Target("workbench/precision/quantize.py",
                             ["tests/test_precision.py", "tests/test_mut_quantize.py", "tests/test_realmodels_int8.py",
                              "--deselect", "tests/test_realmodels_int8.py::test_real_int8_valid"],
                             ["*ǁ_QuantRecipeǁapply__mutmut_*", "*ǁFp8Recipeǁapply__mutmut_*", "*.x__preprocess__mutmut_*",
                              "*.x__calibrate__mutmut_*"],
                             "the recipe's entry (apply), pre-processing and calibration steps; each mutant runs real "
                             "ORT quantizations (~5 s of tests); not _ort_quantize (674 mutants); tests: not the "
                             "real-model corpus runs"),
    "calibration": Target("workbench/precision/calibration.py",
                          ["tests/test_calibration_memory.py", "tests/test_precision.py", "tests/test_mut_calibration.py",
                           "--deselect", "tests/test_calibration_memory.py::"
                           "test_what_the_calibrator_holds_does_not_grow_with_samples[entropy]"],
                          note="tests: not the 12 s entropy-calibrator memory run"),
    "data-npz": Target("workbench/data.py",
                       ["tests/test_data.py", "tests/test_mut_data.py", "tests/test_adversarial_stream.py",
                        "tests/test_mut_npz.py", "--deselect",
                        "tests/test_adversarial_stream.py::test_a_racing_thread_swapping_the_path_never_hangs_or_mixes"],
                       ["*ǁ_Arraysǁ*", "*ǁ_Fileǁ*", "*ǁNpzDatasetǁ*", "*ǁ_WholeArraysǁ*", "*ǁBatchesǁ*",
                        "*.x__check_meta*", "*.x__check_array*", "*.x_first_batch_rows*", "*.x_as_feed_batches*",
                        "*.x_resolve_data*"],
                       "the .npz reader: NpzDataset, Batches, array checks, as_feed_batches, resolve_data"),
    # mut-precision (session 27): the precision/ modules without a target yet
    "typefix": Target("workbench/precision/typefix.py",
                      ["tests/test_mut_typefix.py", "tests/test_recipe_validity.py", "tests/test_precision.py",
                       "tests/test_fp16_safety.py", *_SLOW_RECIPE_TESTS],
                      note="float type repair after the fp16/bf16 conversion, round-trip Cast removal; tests: not "
                           "the real-model int8/MiniLM/ppocr runs"),
    "validity": Target("workbench/precision/validity.py",
                       ["tests/test_mut_validity.py", "tests/test_recipe_validity.py", "tests/test_precision.py",
                        *_SLOW_RECIPE_TESTS],
                       note="strict checks, checker message -> node, If/Loop hiding, shape math, repair loop; tests: "
                            "not the real-model int8/MiniLM/ppocr runs"),
    "smooth": Target("workbench/precision/smooth.py",
                     ["tests/test_mut_smooth.py",
                      "tests/test_recipe_validity.py::test_transformer_int8_builds_strongly_typed_with_tensorrt_rtx"],
                     note="SmoothQuant for the transformer int8 recipe"),
    "precision-registry": Target("workbench/precision/__init__.py",
                                 ["tests/test_mut_registry.py", "tests/test_precision.py", "tests/test_mut_precision.py",
                                  "tests/test_extending.py::test_add_a_precision", *_SLOW_RECIPE_TESTS],
                                 note="the built-in precision entries, list_recipes, make_variant's checks"),
    "mapping": Target("workbench/measure/mapping.py",
                      ["tests/test_layers.py", "tests/test_mut_layers.py", "tests/test_mut_mapping.py"],
                      note="layer -> ONNX node rules: names, subgraphs, plumbing, ORT fusions/NCHWc, TensorRT names"),
    "roofline": Target("workbench/measure/roofline.py",
                       ["tests/test_mut_roofline.py", "tests/test_protocol.py::test_precision_facts_derive_every_list"],
                       ["*ǁDevicePeaksǁ*", *[f"*.x_{f}__mutmut_*" for f in (
                           "_matmul_model", "roofline_dtype", "__getattr__", "roofline_row", "layer_intensity")]],
                       "all but measure_matmul_tflops/_time_matmul/measure_copy_gbps/measure_peaks, which time a "
                       "CUDA device (tests/test_gpu_ort.py -m gpu)"),
    "native-log": Target("workbench/measure/native_log.py",
                         ["tests/test_mut_native_log.py", "tests/test_gpu_cupti.py::test_native_log_capture_and_summary"],
                         undecorate=("contextlib.contextmanager",)),
    "cupti": Target("workbench/measure/cupti.py",
                    ["tests/test_gpu_cupti.py", "tests/test_mut_cupti.py",
                     "tests/test_json_policy.py::test_cupti_tables_keep_what_coverage_needs_through_concat"],
                    [f"*.x_{f}__mutmut_*" for f in (
                        "_record_to_dict", "clock_marker", "launch_times", "launch_array", "_runs", "_nodes", "align",
                        "refine_offset", "_union_ns", "attribute", "_label", "gpu_timeline", "_kernel_text",
                        "attribution_stats", "cpu_nodes", "layer_rows", "cupti_frame", "trt_cross_check",
                        "save_recording", "load_recording", "attribute_recording")] + ["*ǁ_Collectorǁensure*"],
                    "the pure logic (alignment, attribution, timeline, rows, recordings; tests on the H200 "
                    "recordings in tests/data); not cupti_unavailable/ActivityTrace/_device_synchronize/"
                    "profile_layers_ort_cupti/_iobinding, which need cupti-python and a GPU "
                    "(tests/test_gpu_cupti.py -m gpu)"),
}

#: The fixed sample (`make mutate-sample`): the functions behind the issue's planted bugs.
SAMPLE: dict[str, Target] = {
    "sample-latency": Target(PLAN["latency"].module, PLAN["latency"].tests, ["*.x_latency_stats*"]),
    "sample-metrics": Target(PLAN["metrics"].module, PLAN["metrics"].tests, ["*.x_verdict*"]),
    "sample-summary": PLAN["summary"],
}

# Run mutmut with its wall-clock deadline scaled (see the module docstring); argv[1] is the factor.
_ENTRY = """
import sys
import mutmut.workers.isolation as iso
_register, _factor = iso.register_timeout, float(sys.argv.pop(1))
iso.register_timeout = lambda pid, timeout_s: _register(pid, timeout_s * _factor)
from mutmut.__main__ import cli
sys.argv[0] = "mutmut"
cli()
"""

_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
           36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", -9: "timeout",
           37: "type check", None: "not checked"}
#: mutmut's words when its unmutated run of the selection fails (then it judges no mutant)
_BROKEN_RUN = ("Failed to run clean test", "failed to collect stats")
_COPY = ["workbench", "tests", "sample_models", "bench", "docs", "notebooks", "realmodels", "pyproject.toml"]


def _config(t: Target) -> str:
    return ("\n[tool.mutmut]\n"
            'source_paths = ["workbench/"]\n'
            f"only_mutate = {json.dumps([t.module])}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(t.tests)}\n"
            'also_copy = ["sample_models/", "bench/", "docs/", "notebooks/", "realmodels/"]\n'
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly", "-x", "-q", '
            f'"-m", "{SKIP_MARKS}"]\n'
            f"do_not_mutate_patterns = {json.dumps(NO_MUTATE)}\n"
            'process_isolation = "forkserver"\n'
            "use_git_change_detection = false\n")


def copy_repo(work: Path) -> None:
    """Copy the repository's current files (those tests need) into ``work``, replacing earlier copies; other
    entries of ``work`` (mutmut's ``mutants/`` results) stay. Also used by tools/planted.py."""
    work.mkdir(parents=True, exist_ok=True)
    for name in _COPY:
        src, dst = ROOT / name, work / name
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "mutants"))
        elif src.exists():
            shutil.copy2(src, dst)


def _sync(t: Target, work: Path) -> None:
    """Copy the repository's current files into ``work`` (keeping mutmut's ``mutants/`` results)."""
    copy_repo(work)
    _undecorate(work / t.module, ("captures_native_log", *t.undecorate))
    with open(work / "pyproject.toml", "a") as f:  # the scratch copy's config only
        f.write(_config(t))
    for test in t.tests:  # a selected test file not written yet: an empty stand-in in the scratch copy, so that
        if test.startswith("-"):
            continue
        path = work / test.split("::")[0]  # adding it later is a new test for mutmut, not a new selection
        if not path.exists():  # (which would discard every result)
            path.write_text("")


def _undecorate(path: Path, decorators: tuple[str, ...] = ("captures_native_log",)) -> None:
    """mutmut 3 never mutates a decorated function. The entry points wrapped in ``@captures_native_log``
    (measure_latency, layerwise, build_variants, ...) are therefore rewritten, in the scratch copy only, as
    ``def f(...)`` plus ``f = captures_native_log(f)`` at the end of the module: the same wrapper at import
    time, and mutmut sees the function. A target can name more module-level decorators (``Target.undecorate``,
    e.g. ``contextlib.contextmanager``); mutmut's trampolines pass generators through."""
    import re

    if not path.exists():
        return
    text = _unproperty(path.read_text())
    tail = []
    for dec in decorators:
        pat = rf"^@{re.escape(dec)}\n(def (\w+)\()"
        names = [m.group(2) for m in re.finditer(pat, text, flags=re.M)]
        text = re.sub(pat, r"\1", text, flags=re.M)
        tail += [f"{n} = {dec}({n})\n" for n in names]
    if not tail:
        path.write_text(text)
        return
    text += "\n\n# tools/mutate.py: the decorator, applied after definition so mutmut mutates the function\n"
    text += "".join(tail)
    path.write_text(text)


def _unproperty(text: str) -> str:
    """``@property`` methods (a lone decorator, e.g. ``Batches.num_samples``) are never mutated by mutmut 3; in
    the scratch copy each becomes a plain method followed by ``name = property(name)`` in its class body."""
    import ast

    lines = text.splitlines(keepends=True)
    found = []
    for cls in ast.walk(ast.parse(text)):
        if isinstance(cls, ast.ClassDef):
            for f in cls.body:
                if (isinstance(f, ast.FunctionDef) and len(f.decorator_list) == 1
                        and isinstance(f.decorator_list[0], ast.Name) and f.decorator_list[0].id == "property"):
                    found.append(f)
    for f in sorted(found, key=lambda f: f.lineno, reverse=True):  # bottom up: line numbers stay valid
        dec = f.decorator_list[0].lineno - 1
        indent = lines[dec][:len(lines[dec]) - len(lines[dec].lstrip())]
        lines.insert(f.end_lineno, f"{indent}{f.name} = property({f.name})  # tools/mutate.py\n")
        del lines[dec]
    return "".join(lines)


def _results(t: Target, work: Path) -> dict[str, str]:
    meta = work / "mutants" / (t.module + ".meta")
    if not meta.exists():
        return {}
    import fnmatch

    codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
    return {k: _STATUS.get(v, "suspicious") for k, v in codes.items()
            if not t.functions or any(fnmatch.fnmatch(k, g) for g in t.functions)}


def _short(key: str) -> str:
    """``workbench.data.xǁBatchesǁbounds__mutmut_3`` -> ``xǁBatchesǁbounds`` (the key of mutmut's hashes)."""
    return key.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[1]


def _changed_functions(t: Target, work: Path) -> set[str]:
    """Functions of the scratch copy (just synced) whose source differs from when mutmut last generated them."""
    meta = work / "mutants" / (t.module + ".meta")
    if not meta.exists() or not (work / t.module).exists():
        return set()
    from mutmut.mutation.file_mutation import compute_function_hashes

    old = json.loads(meta.read_text()).get("hash_by_function_name", {})
    now = compute_function_hashes((work / t.module).read_text())
    return {f for f, h in old.items() if now.get(f) != h}


def _tests_by_function(work: Path) -> dict[str, list]:
    """mutmut's stats: mangled function name -> the tests that call it (empty without a stats file)."""
    p = work / "mutants" / "mutmut-stats.json"
    return json.loads(p.read_text()).get("tests_by_mangled_function_name", {}) if p.exists() else {}


def _covered_functions(work: Path) -> set[str]:
    return {k for k, v in _tests_by_function(work).items() if v}


def run(name: str, t: Target, *, max_children: int, wall_factor: float, rerun: bool, fresh: bool,
        skip: tuple[str, ...] = (), record_only: bool = False) -> dict:
    work = WORK / name
    if fresh and work.exists():
        shutil.rmtree(work)
    if not record_only:
        _sync(t, work)
    names = list(t.functions)
    if rerun:  # re-test what is not detected yet, where some test now covers the function, and every mutant of
        tests = _tests_by_function(work)  # a function whose source changed (mutmut resets those only when it
        covered = {k for k, v in tests.items() if v}  # regenerates, after this list is made: they would stay
        changed = _changed_functions(t, work)  # "not run")
        results = _results(t, work)
        # functions new since mutmut's stats (e.g. properties mutated since 2b85ed6): no test is known for them,
        # so the stats are collected again (mutmut then judges them, "no tests" included)
        new = {k.rsplit("__mutmut_", 1)[0] for k, s in results.items() if s == "not checked"} - set(tests)
        stats = work / "mutants" / "mutmut-stats.json"
        if new and stats.exists():
            stats.unlink()
            covered |= new
        names = [k for k, s in results.items()
                 if (s in ("survived", "no tests", "suspicious", "not checked") or _short(k) in changed)
                 and k.rsplit("__mutmut_", 1)[0] in covered and not any(fnmatch.fnmatch(k, g) for g in skip)]
        if not names:
            print(f"{name}: nothing to re-run")
    cmd = [sys.executable, "-c", _ENTRY, str(wall_factor), "run", "--max-children", str(max_children), *names]
    t0 = dt.datetime.now()
    if record_only:
        names, rerun = [], True
    if names or not rerun:
        with open(work / "mutmut.log", "w") as log:  # progress: tail -c 300 <WB_MUTATE_DIR>/<target>/mutmut.log
            rc = subprocess.run(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT).returncode
        tail = (work / "mutmut.log").read_text(errors="replace")[-3000:].replace("\r", "\n")
    else:
        tail, rc = "", 0
    res = _results(t, work)
    counts = {s: sum(1 for v in res.values() if v == s) for s in
              ("killed", "timeout", "survived", "no tests", "suspicious", "skipped", "not checked")}
    detected, undetected = counts["killed"] + counts["timeout"], counts["survived"] + counts["no tests"]
    return {"module": t.module, "functions": t.functions or "all", "note": t.note, "tests": t.tests, **counts,
            "mutants": len(res), "score": round(detected / (detected + undetected), 4) if detected + undetected else None,
            "undetected": sorted(k for k, v in res.items() if v in ("survived", "no tests")),
            "run_rc": rc, "minutes": round((dt.datetime.now() - t0).total_seconds() / 60, 1),
            "tail": tail[-800:] if rc else ""}


#: Surviving mutants that cannot be killed, with the reason (checked by hand; docs/mutation.json lists them).
_L = "workbench.measure.latency."
EXPLAINED: dict[str, str] = {
    _L + "xǁLatencyResultǁto_row__mutmut_19": "equivalent: the 'batch' key left in by the mutated filter is "
                                             "overwritten by the explicit \"batch\": self.batch after it",
    _L + "xǁLatencyResultǁto_row__mutmut_20": "equivalent: as to_row__mutmut_19",
    _L + "xǁLatencyResultǁ__repr____mutmut_10": "equivalent: float('NAN') is float('nan')",
    _L + "xǁLatencyResultǁ__repr____mutmut_19": "equivalent: float('NAN') is float('nan')",
    _L + "x__progress__mutmut_8": "equivalent: tqdm's default unit is 'it'",
    _L + "x__host_timed__mutmut_3": "equivalent: a float64 buffer holds every int64 ns count below 2^53 ns "
                                    "(104 days) exactly; the result is ns / 1e6 either way",
    _L + "x__host_timed__mutmut_5": "equivalent: as _host_timed__mutmut_3 (np.empty defaults to float64)",
    _L + "x__host_timed__mutmut_30": "equivalent: chunking without a bar runs the same iterations in the same order",
    _L + "xǁCudaEventsǁtimed__mutmut_6": "equivalent: np.empty's default dtype is float64",
    _L + "xǁCudaEventsǁtimed__mutmut_8": "equivalent: np.empty's default dtype is float64",
    **{_L + f"x_measure_latency__mutmut_{i}": "equivalent: LatencyResult computes the same stats from times_ms "
       "and batch when none are given" for i in (94, 106)},
}
_M = "workbench.compare.metrics."
_COPY_FLAG = "equivalent: the copy flag of astype only decides whether memory is shared; nothing writes to the result"
_FLOAT64 = "equivalent: astype(None) / a dropped dtype is float64 here"
_OUT = "equivalent: out= only reuses a buffer; the result is the value used afterwards"
EXPLAINED.update({
    **{_M + f"x__pair__mutmut_{i}": _FLOAT64 for i in (2, 9)},
    **{_M + f"x__pair__mutmut_{i}": _COPY_FLAG for i in (3, 5, 7, 10, 12, 14)},
    **{_M + f"x_allclose__mutmut_{i}": _FLOAT64 for i in (2, 12)},
    **{_M + f"x_allclose__mutmut_{i}": _COPY_FLAG for i in (3, 5, 7, 13, 15, 17)},
    **{_M + f"xǁErrorAccumulatorǁ_update_finite__mutmut_{i}": "equivalent: einsum subscripts are case-sensitive "
       "labels; 'I,I->' is the same contraction as 'i,i->'" for i in (10, 19, 28)},
    **{_M + f"xǁErrorAccumulatorǁ_update_finite__mutmut_{i}": _OUT for i in (51, 53, 66, 68)},
    _M + "x__hist_add__mutmut_1": "equivalent: log10 never sees 0 (np.maximum(ad, 1e-300)), so the errstate is moot",
    **{_M + f"x__hist_add__mutmut_{i}": "equivalent: idx + 1 lies in 0.._H_BINS + 1, so bincount's length and the "
       "slice both stay _H_BINS + 2" for i in (33, 37)},
    _M + "x__hist_quantile__mutmut_12": "equivalent: side='left' is searchsorted's default",
    **{_M + f"xǁErrorAccumulatorǁ_hist__mutmut_{i}": "equivalent: a float64 histogram counts the same integers"
       for i in (5, 7)},
    **{_M + f"xǁErrorAccumulatorǁresult__mutmut_{i}": "equivalent: this empty histogram is only read when nothing "
       "was added (total 0 -> 0.0 whatever its dtype or length)" for i in (24, 26, 27, 28)},
    **{_M + f"xǁErrorAccumulatorǁupdate__mutmut_{i}": "equivalent: numpy reads any negative reshape size as 'infer'"
       for i in (8, 12)},
    **{_M + f"xǁErrorAccumulatorǁupdate__mutmut_{i}": _FLOAT64 for i in (21, 24)},
    **{_M + f"xǁErrorAccumulatorǁupdate__mutmut_{i}": _OUT for i in (29, 32)},
    **{_M + f"x_topk_agreement__mutmut_{i}": "equivalent: numpy reads any negative reshape size as 'infer'"
       for i in (14, 25)},
    _M + "x_tolerance_for__mutmut_9": "equivalent: 'xxxx' is not a precision either; both give GENERIC_TOLERANCE",
    _M + "x_nan_count__mutmut_9": "equivalent: 'f' and 'c' are still in 'XXfcXX' and no dtype kind is 'X'",
    _M + "x_inf_count__mutmut_9": "equivalent: 'f' and 'c' are still in 'XXfcXX' and no dtype kind is 'X'",
    **{_M + f"x_top1_accuracy__mutmut_{i}": "equivalent: numpy reads any negative reshape size as 'infer'; "
       "axis=+1 of the 2-D array is axis -1" for i in (12, 13, 21)},
    **{_M + f"x_topk_overlap__mutmut_{i}": "equivalent: r and v are 2-D here, so shape[+1] / axis=+1 / the "
       "default axis are the last axis" for i in (11, 18, 21, 30, 33)},
    **{_M + f"x_topk_overlap__mutmut_{i}": "equivalent: numpy's kind argument is case-insensitive ('STABLE')"
       for i in (24, 36)},
    **{_M + f"x_topk_overlap__mutmut_{i}": "equivalent: a list of Python floats becomes float64 without the dtype"
       for i in (38, 40)},
    "workbench.model.x_graph_cycle__mutmut_8": "equivalent: no node output is named '' (outputs are filtered "
                                               "with `if o`), so neither '' nor 'XXXX' changes what waits",
    "workbench.measure.repeat.x__bar__mutmut_9": "equivalent: leave=True is tqdm's default",
    "workbench.measure.repeat.x__verdict__mutmut_8": "equivalent: |s - 1| is never exactly the float 0.03 (1 + "
                                                     "fl(0.03) is not a double), so < and <= agree",
    **{f"workbench.measure.repeat.x__verdict__mutmut_{i}": "equivalent: a speedup of exactly 1 returned "
       "'within noise' two lines earlier" for i in (23, 31)},
    **{f"workbench.measure.repeat.x_speed_verdicts__mutmut_{i}": "equivalent: the frame is built with "
       "columns=cols, so a missing initial key is NaN and a misspelled one is dropped" for i in range(44, 50)},
    **{f"workbench.measure.repeat.x_speed_verdicts__mutmut_{i}": "equivalent: the rows' keys are already in "
       "cols order (rows is never empty here)" for i in (131, 133)},
    "workbench.measure.repeat.x_speed_verdicts__mutmut_22": "equivalent: pandas reads orient case-insensitively",
    "workbench.measure.repeat.x_speed_verdicts__mutmut_60": "equivalent: a p50 of 0 is already refused by the "
                                                            "truthiness test before it",
    **{f"workbench.flow.xǁFlowResultǁsummary__mutmut_{i}": "equivalent: the frame is built with "
       "columns=SUMMARY_COLUMNS, so a missing initial key is NaN and a misspelled one is dropped"
       for i in (31, 32, 33, 34, 35, 36, 37, 38, 47, 48)},
    "workbench.flow.xǁFlowResultǁsummary__mutmut_70": "equivalent: speed_verdicts gives a row for every latency "
                                                      "row, so v is never empty where sel is not",
    **{f"workbench.flow.xǁFlowResultǁ{fn}__mutmut_{i}": "equivalent: pandas reads orient case-insensitively"
       for fn, i in (("summary", 8), ("summary_text", 24))},
    **{f"workbench.flow.xǁFlowResultǁsummary_text__mutmut_{i}": "equivalent: 'F' differs from 'f' only for "
       "inf/nan, which never reach this format (f() shows NaN as '-', speedups need p50 > 0)"
       for i in (75, 106, 116, 126)},
    **{f"workbench.data.x_resolve_shapes__mutmut_{i}": "not killed: the warning's stacklevel (which frame it "
       "names) cannot be tested under mutmut, whose trampoline adds a frame between caller and function"
       for i in (55, 58)},
    **{f"workbench.compare.sensitivity.x_lowered_nodes__mutmut_{i}": "equivalent: Q/DQ/Cast nodes are inserted "
       "by the recipe, and the result keeps only the original graph's node names, so skipping them or not "
       "changes nothing" for i in (24, 26, 27, 28, 29, 30, 31, 32, 33, 34)},
    "workbench.compare.sensitivity.xǁMixedPrecisionResultǁto_json__mutmut_26": "equivalent: pandas reads orient "
                                                                               "case-insensitively",
    **{f"workbench.precision.floating.x_norm_variance_nodes__mutmut_{i}": "equivalent: reshape(+1) / reshape(-2) "
       "of a one-element array is that element" for i in (55, 56)},
    "workbench.precision.floating.x_tensor_problem__mutmut_13": "equivalent: with no finite value the maximum "
                                                                "(0.0 or 1.0) is below 65504 either way",
    "workbench.precision.floating.x_fp16_range_blocks__mutmut_15": "equivalent in valid ONNX: a Constant's only "
                                                                    "TENSOR attribute is 'value'",
    "workbench.compare.sensitivity.xǁTargetǁvalue_of__mutmut_5": "equivalent: astype(None) is float64",
    **{f"workbench.compare.sensitivity.x_attribute_noise__mutmut_{i}": "equivalent: the groupby result is only "
       "looked up by node name, so its order does not matter" for i in (5, 7, 10)},
    "workbench.compare.sensitivity.x_attribute_noise__mutmut_39": "equivalent: owner.get(None) is None",
    "workbench.model.xǁModelǁcheck_structure__mutmut_8": "equivalent: check_type=False is onnx's default",
    **{f"workbench.model.xǁModelǁ{fn}__mutmut_{i}": "not re-run: tests/test_mut_model.py targets it, but the "
       "rerun had to leave save/check_output_path/path_for_runtime out (--skip): mutmut's clean run of "
       "tests/test_model.py::test_source_with_external_data_unchanged fails inside its mutants/ copy only"
       for fn, nums in (("save", (8, 10, 11, 12, 14, 16, 18, 19, 38, 39, 40, 41, 42, 43)),
                        ("check_output_path", (1, 2, 7, 8, 9)), ("path_for_runtime", (5,))) for i in nums},
    "workbench.data.x_resolve_shapes__mutmut_13": "equivalent: the batch axes are only read when batch is given",
    "workbench.data.x_static_batch__mutmut_12": "equivalent: min() of a one-element set is that element",
    "workbench.data.xǁShapeMapǁparse__mutmut_4": "equivalent: '' then parses to an empty ShapeMap anyway",
    "workbench.model.xǁModelǁcheck_structure__mutmut_9": "equivalent: strict_mode=False is onnx's default",
    "workbench.model.xǁModelǁsave__mutmut_28": "not killed: the >= vs > boundary at exactly 2 GiB of protobuf needs a "
                                               "2 GiB model in memory; not a unit test",
    **{_M + f"xǁErrorAccumulatorǁ_update_general__mutmut_{i}": "equivalent: this path runs only for chunks with a "
       "NaN/Inf, where allclose() is always False, and None/a NaN operand is False too" for i in (7, 8, 9)},
})
_LW = "workbench.compare.layerwise."
_DIV = ("equivalent: int(a / b) and int(a // b) differ only when a / b rounds up to an integer at the last ulp "
        "(a budget that exactly divides in real arithmetic), well inside the estimate's own precision")
EXPLAINED.update({
    **{_LW + f"x_layerwise__mutmut_{i}": "equivalent in the frame: percentiles only add err_p99/err_p999, which "
       "are not columns of the layerwise frame (it costs a histogram per tensor)" for i in (148, 149)},
    _LW + "x_layerwise__mutmut_20": "equivalent: load() returns a Model it is given unchanged",
    _LW + "x_layerwise__mutmut_217": "equivalent: the slot only drops its reference to the array; '' or None",
    **{_LW + f"x_layerwise__mutmut_{i}": "equivalent: every unmatched tensor is an output of a reference node, so "
       "the sort key's default is never used" for i in (362, 364, 367, 368)},
    _LW + "x_layerwise__mutmut_441": "not killed: how many decimals the diagnostic wall time is rounded to is "
                                     "presentation; no test pins it",
    _LW + "x_layerwise__mutmut_96": _DIV,
    _LW + "x_plan_passes__mutmut_55": _DIV,
    _LW + "x__first_samples__mutmut_9": "equivalent: when n + size == keep the cut b[:keep - n] is the whole batch",
    _LW + "x__first_samples__mutmut_12": "equivalent: after a cut n >= keep, so the loop stops at the next batch "
                                         "whatever size was added",
    _LW + "x__fold__mutmut_21": "equivalent: range(0, 1, CHUNK) and range(0, 2, CHUNK) both give the one start 0",
    **{_LW + f"x__fold__mutmut_{i}": "equivalent: numpy reads any negative reshape size as 'infer'" for i in (5, 9)},
    **{_LW + f"x__pair_bytes__mutmut_{i}": "equivalent: a compared pair's types are float types (match_tensors "
       "checks both), all keys of _ITEMSIZE, so the default is never used" for i in (21, 23, 24, 26, 28, 29)},
    _LW + "x_parse_bytes__mutmut_17": "equivalent: the text is lower-cased first, so the upper-case X added to the "
                                      "strip set never matches",
    _LW + "x_plan_passes__mutmut_26": "equivalent: at total x biggest == budget the other branch makes the same plan "
                                      "(runs of budget // total = biggest samples, every tensor in one group)",
    _LW + "x_plan_passes__mutmut_37": "equivalent: run_batch is only tested for truth; '' and None are both falsy",
    _LW + "x_plan_passes__mutmut_44": "equivalent: with biggest == 1 the split branch gives runs of 1 sample, which "
                                      "is every batch as it is",
    **{_LW + f"x_plan_passes__mutmut_{i}": "equivalent: this branch runs only when total x biggest > budget > 0, "
       "so total > 0 already" for i in (48, 56)},
})
_S = "workbench.compare.sensitivity.x_propose_mixed_precision__mutmut_"
EXPLAINED.update({
    _S + "28": "equivalent: load() returns a Model it is given unchanged",
    _S + "77": "equivalent: precision names are case-insensitive (get_recipe('FP32') is the fp32 recipe)",
    **{_S + f"{i}": "equivalent: progress=None disables the comparison's bar as False does (disable=not progress)"
       for i in (99, 222)},
    **{_S + f"{i}": "equivalent: the search data holds the same samples whatever the batch size (an .npz limit "
       "counts samples; a list of feed dicts is not re-batched), and the metrics are sums over samples"
       for i in (50, 56)},
    **{_S + f"{i}": "not killed here: shapes only set TensorRT optimization profiles; the ONNX Runtime CPU backend "
       "these tests can build checks them and records them in the build record, which the result does not carry"
       for i in (69, 74, 83, 90)},
    **{_S + f"{i}": "equivalent: the fp32 build on ONNX Runtime draws no bar (no recipe, no calibration), so its "
       "progress flag shows nothing either way" for i in (70, 75)},
    "workbench.compare.sensitivity.x_lowered_nodes__mutmut_22": "not killed: needs a variant on which ONNX shape "
                                                                "inference raises",
    "workbench.compare.sensitivity.xǁMixedPrecisionResultǁto_json__mutmut_35": "equivalent: pandas reads orient "
                                                                               "case-insensitively",
})
EXPLAINED.update({
    _LW + "x_layerwise_tidy__mutmut_18": "equivalent: pandas melt's default value_name is 'value'",
    **{_LW + f"x__subgraph_refs__mutmut_{i}": "equivalent in standard ONNX: no standard op has a GRAPHS (list) "
       "attribute, and a non-graph attribute's a.g is an empty graph, which is skipped" for i in (4, 8)},
})
_F = "workbench.precision.fp16safety."
EXPLAINED.update({
    _F + "x_clamp_mask_constants__mutmut_15": "equivalent in valid ONNX: a Constant's only TENSOR attribute is "
                                              "'value', and ConstantOfShape's only attribute is the TENSOR 'value'",
    _F + "x_clamp_mask_constants__mutmut_27": "equivalent: mask constants are float32 only (_constants); astype(None) "
                                              "gives float64 with the same values, cast back to float32 after the test",
    _F + "x_clamp_mask_constants__mutmut_37": "equivalent: a value equal to the clamp value is replaced by itself",
    **{_F + f"x_fp16_safety__mutmut_{i}": "equivalent: tensor_problem never reads the TensorProto's name"
       for i in (96, 98)},
    **{_F + f"x_fp16_safety__mutmut_{i}": "equivalent: _constants holds float32 arrays only, so asarray without a "
       "dtype is the same float32 array" for i in (100, 102)},
    **{_F + f"x_fp16_safety__mutmut_{i}": "equivalent: every mask constant has readers (mask_constants skips "
       "those without), so the default of readers.get is never used" for i in (74, 76)},
    **{_F + f"x_fp16_safety__mutmut_{i}": "equivalent in valid ONNX: Pow has exactly two inputs, so len(n.input) "
       "> 1, >= 1 and True agree" for i in (135, 138)},
    _F + "x_fp16_safety_overlay__mutmut_4": "equivalent: an empty table's groupby(...).max() is an empty series, "
                                            "so the dict is {} either way",
    **{_F + f"x_mask_constants__mutmut_{i}": "equivalent: None and [] are both falsy, and `not rs` skips the "
       "constant before rs is iterated" for i in (15, 17)},
    **{_F + f"x_mask_like__mutmut_{i}": "equivalent: a[bad] holds only values outside [-65504, 65504] (or NaN), "
       "where <= -65504, < -65504 and <= +65504 agree" for i in (18, 19)},
})

_B = "workbench.builds."
_CAST_ONLY = ("equivalent: only a backend's unsupported_op_type starts the rebuild, and the only one that answers "
              "(ORT CUDA, backends/onnxruntime.py) does so for cast recipes (fp16/bf16) alone, which read no calib, "
              "no backend option and show no progress bar")
_ALWAYS_SET = "equivalent: _make_variant always sets both facts (a hit or a recipe run), so the .get default is never used"
EXPLAINED.update({
    _B + "x_build_variants__mutmut_23": "equivalent: iterating a str gives characters, none a Variant, so ready is {} "
                                        "either way",
    _B + "x__make_variant__mutmut_15": "equivalent: key is only read when variant_cache is given, and is assigned "
                                       "variant_key(...) first",
    _B + "x__make_variant__mutmut_44": "equivalent: a missing recipe_time_s reads as 0.0 wherever it is read "
                                       "(_one, the rebuild's sum)",
    **{_B + f"x__make_variant__mutmut_{i}": "equivalent: a missing or None variant_cached is read as "
       "bool(facts.get('variant_cached', False)) = False" for i in (65, 67)},
    **{_B + f"x__one__mutmut_{i}": "equivalent: bool() of a None default is False, as of the False default"
       for i in (45, 47)},
    _B + "x__record__mutmut_25": "equivalent: options is never None here: build_variants always passes a BuildOptions",
    _B + "x__record__mutmut_27": "equivalent: ShapeMap.parse(None).to_json() is {}",
    **{_B + f"x__one_build__mutmut_{i}": "equivalent: the .onnx file was written a few lines earlier in the same "
       "loop iteration, so it exists and missing_ok does not matter" for i in (160, 164)},
    **{_B + f"x__one_build__mutmut_{i}": _CAST_ONLY for i in (169, 172, 174, 184)},
    **{_B + f"x__one_build__mutmut_{i}": _ALWAYS_SET for i in (196, 198, 201, 203, 205, 208, 210, 212, 215)},
})

# mut-new targets (layers, speed, outputs, precision-base, data-npz, quantize, calibration)
_LY, _SP = "workbench.measure.layers.", "workbench.compare.speed."
_ORIENT = "equivalent: pandas reads orient case-insensitively"
EXPLAINED.update({
    **{_SP + f"xǁSpeedAttributionǁ{fn}__mutmut_{i}": _ORIENT for fn, i in (("summary", 22), ("to_json", 21))},
    _SP + "x__per_node__mutmut_6": _ORIENT,
    _SP + "x_explain_speed__mutmut_28": _ORIENT,
    **{_SP + f"x_explain_speed__mutmut_{i}": "equivalent: 'kept or None or []' is 'kept or [] or []'" for i in (16, 18)},
    # numbers after 1aedc2f removed explain_speed's dead 'src |= ...' (5 mutants fewer before these)
    **{_SP + f"x_explain_speed__mutmut_{i}": "equivalent: an empty layer frame's time_ms sums to 0.0"
       for i in (209, 216)},
    _SP + "x_explain_speed__mutmut_232": "not killed: > vs >= differs only when the two totals differ by exactly "
                                         "1e-12 ms",
    **{_SP + f"x_explain_speed__mutmut_{i}": "not killed: stable vs numpy's default sort differ only on equal |delta| "
       "ties in tables long enough (> 16 rows) for introsort to reorder them" for i in (240, 244)},
    _SP + "xǁSpeedAttributionǁspeedup__mutmut_8": "equivalent: float('NAN') is float('nan')",
    _SP + "x_explain_speed__mutmut_249": "equivalent: numpy's sort kind is case-insensitive ('STABLE')",
    **{_SP + f"x_explain_speed__mutmut_{i}": "equivalent: every Variant has a name, and without a variant the "
       "getattr of None's name falls back to '' as well" for i in (253, 256, 259, 262)},
    _SP + "xǁSpeedAttributionǁby_category__mutmut_15": "equivalent: reset_index() of the empty groupby result has the "
                                                       "same four columns as the explicit empty frame",
    _SP + "xǁSpeedAttributionǁsummary__mutmut_33": "equivalent: categories are sorted by |delta| descending, so after "
                                                   "the first one below 1e-9 every later one is too (break = continue)",
    **{_SP + f"xǁSpeedAttributionǁsummary__mutmut_{i}": "equivalent: zip() stops at the shorter of the two head(3) "
       "series; head(4) / head(None) on one side changes nothing" for i in (54, 55, 56, 57)},
    **{_SP + f"x_explain_profiles__mutmut_{i}": "equivalent: groupby(sort=None) does not sort, as sort=False"
       for i in (10, 24)},
    _SP + "x_explain_flow__mutmut_14": "equivalent: getattr(bs, 'variants', None) or {} is {} as with the {} default",
    **{_SP + f"x_attribution_frame__mutmut_{i}": "equivalent: the insert position is undone by selecting [cols]"
       for i in (9, 18)},
    **{_SP + f"x_speed_section_html__mutmut_{i}": "equivalent: plotly's to_html reads None as False for full_html / "
       "include_plotlyjs (checked: identical output)" for i in (36, 37)},
    **{_LY + f"x__format_text__mutmut_{i}": "equivalent: a missing key gives None instead of '', and the join keeps "
       "only truthy parts either way" for i in (18, 20, 29, 31)},
    **{_LY + f"x_coverage_reason__mutmut_{i}": "equivalent: a ratio equal to goal returned '' at the top (goal <= "
       "ratio <= upper), so < and <= agree wherever this line runs" for i in (41, 77, 112)},
    _LY + "x_coverage__mutmut_54": "equivalent: float('NAN') is float('nan')",
    _LY + "x__neighbour__mutmut_18": "equivalent: only element [0] (the empty node list) of the default is read",
    _LY + "x_coverage__mutmut_58": "equivalent: coverage() has already reduced the table to latency.variant's rows (or "
                                   "it holds one variant), and _profiled_run_ms falls back to the whole table",
    **{_LY + f"x__profiled_run_ms__mutmut_{i}": "equivalent via its only caller coverage(), which passes a table "
       "already reduced to one variant (the variant filter and its fallback select the same rows)"
       for i in (7, 8, 11, 12, 13, 14, 16, 17)},
    **{_LY + f"x__run_facts__mutmut_{i}": "not killed: re-deriving time_basis / gpu / cpu_nodes from the columns "
       "when attrs already hold them gives the same facts on every table a profiler writes (attrs and columns "
       "come from the same run); only a hand-made contradiction would differ" for i in (6, 7, 8, 41, 42, 43, 70, 71, 72)},
    _LY + "x__run_facts__mutmut_67": "equivalent: cpu_nodes is read only for a cupti-gpu basis (coverage_reason), so "
                                     "computing it for other bases changes no result",
    _LY + "x__run_facts__mutmut_83": "not killed: CPU-provider rows are exactly the host-basis rows in a CUPTI table "
                                     "(profile_layers_ort_cupti times CPU nodes on the host), so & and | select the same "
                                     "rows; needs a GPU-provider row on host time, which no profiler writes",
    **{_LY + f"x__run_facts__mutmut_{i}": "equivalent: the rounded times in 'top' are never shown (the reason names "
       "the nodes only)" for i in (116, 117, 118, 120)},
    _LY + "x_save_layers_csv__mutmut_17": "equivalent: to_csv(index=None) writes no index, as index=False",
    **{f"workbench.compare.outputs.xǁComparisonǁ{fn}__mutmut_{i}": "equivalent: every metrics row of a variant "
       "carries the same precision and backend, and compare_engines writes a row per metric and output (>= 12), so "
       "iloc[1] is iloc[0]'s value" for fn, i in (("summary", 14), ("summary", 17), ("verdict", 45), ("verdicts", 7))},
    **{f"workbench.compare.outputs.xǁComparisonǁ{fn}__mutmut_{i}": "equivalent: astype(None) is float64, as float"
       for fn, i in (("summary", 64), ("summary", 72), ("summary", 80), ("verdict", 47), ("verdict", 52))},
    "workbench.compare.outputs.xǁComparisonǁto_json__mutmut_19": "equivalent: groupby(sort=None) does not sort, as "
                                                                 "sort=False",
    **{f"workbench.compare.outputs.x_compare_engines__mutmut_{i}": "equivalent: argmax of float32 scores equals "
       "argmax of the same scores as float64 (dtype dropped)" for i in (68, 70, 113, 115)},
    **{f"workbench.compare.outputs.x_compare_engines__mutmut_{i}": "equivalent: numpy reads any negative reshape "
       "size as 'infer'; axis=+1 of the 2-D score array is axis -1" for i in (78, 84, 118, 124)},
    "workbench.compare.outputs.x_compare_engines__mutmut_91": "equivalent: running the reference engine again on "
                                                              "the same feeds gives the same outputs (deterministic "
                                                              "CPU kernels); only the time differs",
    **{f"workbench.data.xǁ_Arraysǁread__mutmut_{i}": "equivalent: NpzDataset reads arrays either whole (axis None) "
       "or with explicit start and stop, so the defaults are never used" for i in (1, 14)},
    "workbench.data.xǁ_Fileǁread__mutmut_1": "equivalent: as _Arrays.read: a whole read (axis None) ignores start "
                                             "(NpzReader.read resets it to 0), a sliced read passes start",
    "workbench.data.xǁNpzDatasetǁ_cast__mutmut_2": "equivalent: astype to the dtype the array already has gives an "
                                                   "equal copy; nothing writes through what a batch returns",
    "workbench.data.x__check_array__mutmut_14": "equivalent: as NpzDataset._cast__mutmut_2 (an equal copy)",
    **{f"workbench.data.x__check_meta__mutmut_{i}": "equivalent: 'XXUSVXX' still holds U, S and V, and for a "
       "'usv' miss the dtype check right below refuses a str/bytes/void array with the same message (no model "
       "input has such a dtype: STRING inputs want object)" for i in (4, 5)},
    "workbench.data.x__check_meta__mutmut_33": "equivalent: np.can_cast's default casting is 'safe'",
    "workbench.data.x_as_feed_batches__mutmut_29": "equivalent: axes is assigned from model_batch_axes on the first "
                                                   "item (i == 0) before any use",
    "workbench.data.x_as_feed_batches__mutmut_36": "equivalent: in a generator, return and break at the end of the "
                                                   "last loop both end the iteration",
    "workbench.data.x_as_feed_batches__mutmut_41": "equivalent: recomputing model_batch_axes for every item gives "
                                                   "the same axes (only the cost differs)",
    "workbench.data.x_as_feed_batches__mutmut_73": "equivalent: as mutmut_36 (return vs break ending the generator's "
                                                   "last loop)",
    "workbench.data.x_as_feed_batches__mutmut_82": "equivalent: validated items have each input's declared rank and "
                                                   "a batch axis inside it, so a.ndim == axes[k] never occurs",
    "workbench.data.x_as_feed_batches__mutmut_85": "equivalent: slice(None, n) is slice(0, n)",
    "workbench.data.xǁBatchesǁnum_samples__mutmut_7": "equivalent: the sum over the bounds is what the formula "
                                                     "computes faster; it is right for every step",
    "workbench.data.x_resolve_data__mutmut_73": "equivalent: for a 1-D label array prod(shape[1:]) is 1, so '>= 1' "
                                                "refuses nothing more than '> 1'",
    "workbench.data.xǁNpzDatasetǁcheck_finite__mutmut_19": "equivalent: max(n, 2) differs from max(n, 1) only for one "
                                                          "sample, and one sample is one step whatever the step",
    "workbench.data.xǁNpzDatasetǁcheck_finite__mutmut_20": "equivalent: the row size is 0 only when every float input "
                                                          "has empty samples, which hold no NaN whatever the step",
    **{f"workbench.data.x_resolve_data__mutmut_{i}": "equivalent: a label key left out at construction is read by "
       "add_labels right after, with the same count check" for i in (2, 11)},
    "workbench.data.x_resolve_data__mutmut_17": "equivalent: add_labels raises the same 'label key not found' "
                                                "DataError for a key the file lacks",
    "workbench.precision.quantize.x__nan_reason__mutmut_13": "equivalent: astype(None) is float64",
    "workbench.precision.quantize.x__nan_reason__mutmut_33": "equivalent: numpy reads any negative reshape size as "
                                                             "'infer'",
    **{f"workbench.precision.quantize.x_resolve_target__mutmut_{i}": "equivalent: an absent 'target' gives None "
       "instead of 'auto', and the `or \"auto\"` right after turns None into 'auto'" for i in (8, 10)},
    **{f"workbench.precision.quantize.x_flatten_gemm_bias__mutmut_{i}": "equivalent: numpy reads any negative "
       "reshape size as 'infer'" for i in (39, 80)},
    "workbench.precision.quantize.x_flatten_gemm_bias__mutmut_79": "equivalent: this branch holds a single-value "
                                                                   "bias, and reshape(1) of one element is reshape(-1)",
    "workbench.precision.quantize.x_flatten_gemm_bias__mutmut_56": "equivalent: a missing transB defaults to None "
                                                                   "instead of 0; both are false in the `if trans_b`",
    **{f"workbench.precision.quantize.x_flatten_gemm_bias__mutmut_{i}": "equivalent: `uses` counts every node input "
       "and this Gemm reads c.name, so the .get default is never used" for i in (83, 85, 86)},
    # quantize-apply (apply, Fp8Recipe.apply, _preprocess, _calibrate); reviewed from the mutant diffs, not run yet
    **{f"workbench.precision.quantize.x__calibrate__mutmut_{i}": "equivalent: the name of a file inside the recipe's "
       "own TemporaryDirectory, which nothing else reads and which is deleted afterwards" for i in (19, 20, 24, 25)},
    "workbench.precision.quantize.x__calibrate__mutmut_4": "not killed: op_types=None makes ORT's calibrator range "
                                                           "every float tensor instead of the quantized ops' ones; "
                                                           "each tensor's range is computed alone, so quantize_static "
                                                           "reads the same ranges (only the run statistics change)",
    **{f"workbench.precision.quantize.x__preprocess__mutmut_{i}": "equivalent: names_ok only reads a file that "
       "quant_pre_process just wrote with save_as_external_data=False (all weights inline), so loading external "
       "data or not reads the same nodes" for i in (20, 22, 24)},
    "workbench.precision.quantize.x__preprocess__mutmut_33": "equivalent: each of the two attempts either returns or "
                                                             "sets why, so its initial value is never read",
    **{f"workbench.precision.quantize.x__preprocess__mutmut_{i}": "equivalent: skip_symbolic_shape=None / left out "
       "is quant_pre_process's default False" for i in (37, 41)},
    "workbench.precision.quantize.x__preprocess__mutmut_46": "not killed: skipping ORT's symbolic shape inference "
                                                             "changes only the pre-processed graph's dim names / "
                                                             "value_info (checked on Add of ['a', 4] and ['b', 4]); no "
                                                             "recipe record or test graph's quantization depends on it",
    **{f"workbench.precision.quantize.xǁ_QuantRecipeǁapply__mutmut_{i}": "not killed here: only decides whether the "
       "ORT-only target/placement options are validated when tool='modelopt', which needs NVIDIA ModelOpt "
       "(not installed) to go further" for i in (21, 22)},
    "workbench.precision.quantize.x_flatten_gemm_bias__mutmut_44": "not killed: differs only for a Gemm whose C has "
                                                                   "3 dims of 1, which ONNX forbids (C broadcasts "
                                                                   "unidirectionally to (M, N)) and ONNX Runtime "
                                                                   "refuses to run ('Invalid bias shape for broadcast')",
    "workbench.precision.base.x_name_unnamed_nodes__mutmut_11": "not killed: generated names carry the node index, "
                                                                 "so two can only collide through a custom op type "
                                                                 "spelled like another node's generated name",
    **{f"workbench.precision.base.x_{fn}__mutmut_{i}": "not killed: the similarity cutoff of the hint's suggestions "
       "(0.5 vs difflib's default 0.6) is a tuning choice no behaviour pins down"
       for fn, i in (("check_keep_nodes", 13), ("check_keep_op_types", 22))},
    "workbench.precision.base.x_check_keep_op_types__mutmut_32": "not killed: the similarity cutoff 0.6 is difflib's "
                                                                 "default (equivalent)",
    **{f"workbench.precision.base.x_ort_session_check__mutmut_{i}": "not killed: without a GPU, ONNX Runtime runs the "
       "check on its CPU provider whether the list names it, is left out, or holds an unknown name"
       for i in (9, 10, 11, 12)},
    "workbench.precision.base.x_get_recipe__mutmut_4": "not killed: differs only for a non-str argument whose str() "
                                                       "is a registered precision name",
    "workbench.precision.base.x_ort_session_check__mutmut_3": "not killed: log level 3 vs 4 only decides whether ONNX "
                                                              "Runtime also prints its own error line next to the "
                                                              "raised WorkbenchError",
    "workbench.precision.base.x_ort_session_check__mutmut_6": "not killed: without a GPU, ONNX Runtime's default "
                                                              "provider list is the CPU provider",
    "workbench.precision.base.x_register_precision__mutmut_10": "equivalent: an empty precision becomes 'xxxx', "
                                                                "which differs from recipe.precision and is refused too",
})

# mut-layers (layers: the ORT profiling path, session 27)
_CUDA_T = "tests/test_mut_layers.py::test_cuda_session_timing_choices"
_CUDA = ("not killed here: ORT CUDA-provider branch (engine.on_cuda is False on this CPU-only onnxruntime); "
         f"{_CUDA_T} checks it on a GPU (written, not run: no GPU in this session)")
EXPLAINED.update({
    **{_LY + f"x__ort_session__mutmut_{i}": "equivalent: every OrtEngine carries its BuildRecord (OnnxRuntimeBackend"
       ".build sets it), so the record-is-None fallback never runs" for i in (3, 16)},
    **{_LY + f"x__ort_session__mutmut_{i}": "equivalent: record.options is BuildOptions.to_json(), which always holds "
       "'threads', so the .get default is never used" for i in (7, 9, 13)},
    **{_LY + f"x__ort_session__mutmut_{i}": "equivalent: OnnxRuntimeBackend.session_options never reads "
       "BuildOptions.progress" for i in (20, 22, 23)},
    **{_LY + f"x__ort_session__mutmut_{i}": "equivalent: the trace's file name inside the temp folder; it is found "
       "through the path end_profiling() returns and deleted with the folder" for i in (29, 30)},
    **{_LY + f"x__ort_session__mutmut_{i}": "not killed here: a CPU-only onnxruntime runs a session without a "
       "providers list on its CPU provider, and the CPU backend's providers_for ignores the variant; on a GPU "
       f"onnxruntime-gpu refuses a session without providers and providers_for reads variant.tf32 ({_CUDA_T})"
       for i in (36, 37, 44, 48)},
    **{_LY + f"x__optimized_nodes__mutmut_{i}": "equivalent: ORT writes optimized.onnx with its initializers inline "
       "(no session.optimized_model_external_initializers_file_name is set), so there is no external data to load "
       "or skip; only node names/inputs/outputs are read" for i in (4, 6, 8)},
    **{_LY + f"x__frame__mutmut_{i}": "equivalent: only an empty frame takes this branch, and an empty time_ms sums to "
       "0.0 / divides to an empty share column" for i in (9, 13)},
    _LY + "x__frame__mutmut_36": "equivalent: numpy's sort kind is case-insensitive ('STABLE')",
    **{_LY + f"x_parse_ort_trace__mutmut_{i}": "equivalent: an event without a name is no kernel either way ('None' "
       "and 'XXXX' do not end with '_kernel_time')" for i in (45, 47, 50)},
    _LY + "x__neighbour__mutmut_24": "equivalent: the optimized graph is acyclic, so without marking visited nodes "
                                     "the breadth-first walk only revisits diamond nodes and meets the same first "
                                     "mapped consumer at the same depth",
    **{_LY + f"x_profile_layers_ort__mutmut_{i}": "equivalent: the temp folder's name prefix; the folder is deleted "
       "after the run" for i in (47, 48, 49)},
    _LY + "x_profile_layers_ort__mutmut_74": "equivalent: tqdm's default unit is 'it'",
    **{_LY + f"x_profile_layers_ort__mutmut_{i}": "equivalent: the trace was read from this path just before, so it "
       "exists and missing_ok does not matter (a failed read raises FileNotFoundError either way)" for i in (93, 94)},
    _LY + "x_profile_layers_ort__mutmut_16": "equivalent: cupti_reason is only read by 'if cupti_reason:' and is "
                                             "re-assigned on the CUDA branch; '' and None are both falsy",
    **{_LY + f"x_profile_layers_ort__mutmut_{i}": _CUDA + " (the host-launch time basis of CUDA rows)"
       for i in (121, 129, 131, 132, 143, 148)},
    **{_LY + f"x_profile_layers_ort__mutmut_{i}": "not killed: CPU-provider rows of a CUDA session get the same "
       "'host' basis; needs a CUDA-session table with a CPU-provider row, which the GPU test's model (all nodes "
       f"on CUDA) lacks ({_CUDA_T} asserts the rule per row)" for i in (142, 149, 150)},
})

# mut-calib (calibration)
_C = "workbench.precision.calibration."
_RANK = ("equivalent: validated feeds have each input's declared rank and a batch axis outside the rank is refused "
         "(ShapeSpecError), so ndim == axis never occurs")
_NBYTES = "equivalent: ONNX Runtime's session.run returns numpy arrays, which always have nbytes"
EXPLAINED.update({
    _C + "x__can_split__mutmut_6": _RANK,
    _C + "x__cut__mutmut_7": _RANK,
    **{_C + f"xǁ_SizedSessionǁ__init____mutmut_{i}": "equivalent: last_bytes is read only after run() set it"
       for i in (2, 3)},
    _C + "xǁ_SizedSessionǁrun__mutmut_3": "equivalent: ORT's calibrators call infer_session.run(None, feeds) "
                                          "positionally; no keyword arguments reach it",
    **{_C + f"xǁ_SizedSessionǁrun__mutmut_{i}": _NBYTES for i in (9, 12, 15)},
    _C + "x__priority_session__mutmut_5": "not killed: log level 3 vs 4 only decides whether ONNX Runtime prints "
                                          "its own error lines",
    **{_C + f"x__priority_session__mutmut_{i}": "not killed here: on a CPU-only onnxruntime a session without "
       "providers gets the CPU provider (a GPU build would refuse it: needs onnxruntime-gpu)" for i in (8, 11)},
    _C + "x_collect_ranges__mutmut_23": "not killed here: on a CPU-only onnxruntime a session without providers "
                                        "gets the CPU provider, as the calibrator's own list asks",
    _C + "x_collect_ranges__mutmut_40": "equivalent: prepare_calibration guarantees at least one sample, so some run "
                                        "has k >= 1 and the max is the same from 0 or 1",
    _C + "x_collect_ranges__mutmut_43": "equivalent: every calibration run returns the non-empty reductions/tensors of "
                                        "at least one calibrated tensor, so the max is the same from 0 or 1 byte",
    **{_C + f"x_collect_ranges__mutmut_{i}": "equivalent: cutting a run of k = n samples (a batch run whole) "
       "gives _cut(feeds, 0, n), which slices every batched input whole" for i in (91, 101, 102)},
    _C + "x_collect_ranges__mutmut_141": "not killed: a split first run holds 1 sample and returns >= 4 bytes (a "
                                         "float32 reduction), so the floor 1 vs 2 matters only after a whole "
                                         "unsplittable first batch of < 2 bytes/sample with a budget of a few bytes",
    _C + "x_prepare_calibration__mutmut_49": "equivalent: batch_size was set to static or batch_size or "
                                             "DEFAULT_CALIB_BATCH just above, so the last 'or' is never reached",
    _C + "x_prepare_calibration__mutmut_151": "equivalent: np.issubdtype(None, np.floating) is True (dtype None is "
                                              "float64), and np.isfinite of an integer array is all True",
    _C + "x_prepare_calibration__mutmut_168": _RANK,
    **{_C + f"x_prepare_calibration__mutmut_{i}": "equivalent: as_feed_batches uses batch_size only for .npz data "
       "and synthetic data; this branch is an iterable of feed dicts, passed through as given" for i in (189, 193)},
    _C + "x_prepare_calibration__mutmut_203": "equivalent: when total + n == num_calib the cut keeps keep = n "
                                              "samples, i.e. the whole batch",
    _C + "x_prepare_calibration__mutmut_207": "equivalent: the loop stops once total >= num_calib, so keep = "
                                              "num_calib - total is always > 0 here",
    _C + "x_prepare_calibration__mutmut_211": "equivalent: with a fixed batch every validated batch has n = static "
                                              "samples and a cut happens only when keep < n, so keep == static "
                                              "never occurs",
    _C + "x_prepare_calibration__mutmut_219": _RANK,
    **{_C + f"x_prepare_calibration__mutmut_{i}": "equivalent: slice(None, keep) and slice(keep) are slice(0, keep)"
       for i in (222, 224)},
    _C + "xǁProgressReaderǁ__init____mutmut_7": "equivalent: rewind() at the end of __init__ sets _it",
    **{_C + f"x_prepare_calibration__mutmut_{i}": "not killable under mutmut: its trampoline adds a stack frame "
       "between the caller and prepare_calibration, so the warning's stacklevel cannot be observed" for i in (254, 255)},
    _C + "x__priority_session__mutmut_12": "not killed here: the mutant turns a given provider list into "
                                           "['CPUExecutionProvider'], which is what a CPU-only onnxruntime runs anyway",
})

# mut-bisect (bisect)
_B = "workbench.compare.layerwise."
EXPLAINED.update({
    **{_B + f"x_first_divergence__mutmut_{i}": "equivalent: without types, cut_model types the cut output by ONNX "
       "shape inference of the same graph, which is where match_tensors took p.ref_type / p.var_type from"
       for i in (110, 113, 121, 124)},
    **{_B + f"x_first_divergence__mutmut_{i}": "equivalent: cut_model(proto, {tensor: type}) iterates the dict's one "
       "key as the outputs and types the cut output by ONNX shape inference, where the pair's type came from"
       for i in (112, 123)},
    **{_B + f"x_first_divergence__mutmut_{i}": "equivalent: build_engine hands options=None on to build_variants, "
       "which then makes BuildOptions(progress=False): the same options as opts" for i in (125, 133, 139, 159, 165)},
    **{_B + f"x_first_divergence__mutmut_{i}": "equivalent: build_engine's progress only reaches make_variant, "
       "which a ready Variant skips; the build itself gets opts (progress=False)"
       for i in (134, 140, 147, 160, 166, 176)},
    _B + "x_first_divergence__mutmut_16": "equivalent: load() returns a Model it is given unchanged",
    _B + "x_first_divergence__mutmut_144": "equivalent: Variant.of's default precision is 'fp32'",
    _B + "x_first_divergence__mutmut_178": "equivalent: percentiles=None is falsy like False (no histogram; "
                                           "err_p99/err_p999 stay NaN)",
    _B + "x_first_divergence__mutmut_266": "equivalent: found is only read through `if found`, and '' is falsy "
                                           "like None",
    **{_B + f"x__session__mutmut_{i}": "not killed here: on a CPU-only onnxruntime a session without providers "
       "gets the CPU provider (a GPU build would pick CUDA: needs onnxruntime-gpu)" for i in (11, 14)},
    _B + "xǁPeakRSSǁ__init____mutmut_8": "equivalent: _thread is only read in __exit__, after __enter__ set it to "
                                        "the sampling thread",
})

# mut-precision (typefix, validity, smooth, precision-registry)
_S, _V = "workbench.precision.smooth.", "workbench.precision.validity."
_TF, _R = "workbench.precision.typefix.", "workbench.precision."
_CPU_ONLY = ("not killed here: on a CPU-only onnxruntime the session runs on the CPU provider whether the list names "
             "it, is left out, or holds an unknown name (ORT warns and falls back)")
EXPLAINED.update({
    **{_S + f"x_activation_channel_max__mutmut_{i}": _CPU_ONLY for i in (14, 17, 18, 19, 20)},
    **{_S + f"x_activation_channel_max__mutmut_{i}": "not killed: without the session options ORT optimizes the "
       "graph, but every requested tensor is a graph output, which the optimizers keep with the same values (checked: "
       "a fp32->fp16->fp32 Cast chain in front of a requested tensor is not removed); only log lines differ"
       for i in (13, 16)},
    _S + "x_activation_channel_max__mutmut_9": "not killed: log level 3 vs 4 only decides whether ONNX Runtime prints "
                                               "its own error lines",
    _S + "x_activation_channel_max__mutmut_46": "equivalent: numpy reads any negative reshape size as 'infer'",
    **{_S + f"x_smooth_groups__mutmut_{i}": "equivalent: w is an input of the node n being looked at, so uses[w] >= 1 "
       "always exists and the .get default is never used" for i in (36, 38, 39)},
    **{_V + f"x_strict_problems__mutmut_{i}": "equivalent: check_model(full_check=True) already runs strict inference "
       "with check_type=True, so a type clash fails the checker first, and the second run's message is only added "
       "when it differs; data propagation adds shape values, not types" for i in (14, 17)},
    **{_V + f"x_shape_compute_nodes__mutmut_{i}": "equivalent: None is falsy like False where outs_shape_only / "
       "shape_only[...] are read (if, all())" for i in (29, 38, 65, 67, 71)},
    **{_V + f"x_shape_compute_nodes__mutmut_{i}": "equivalent: `if not uses` treats None like []" for i in (34, 36)},
    **{_V + f"x_shape_compute_nodes__mutmut_{i}": "equivalent in valid ONNX: Cast's 'to' attribute is required, and "
       "the defaults 0 / None / 1 (FLOAT) are not integer types either" for i in (53, 55, 59)},
    _V + "x_shape_compute_nodes__mutmut_68": "equivalent on topologically sorted graphs (convert_fp16 sorts first): "
                                             "in reverse order every consumer's outputs are already in shape_only, so "
                                             "the .get default is never read",
    **{_TF + f"x__schema__mutmut_{i}": "equivalent for checker-valid models: every node's domain must be in "
       "opset_import (the checker refuses 'No opset import for domain'), so the .get default is never used"
       for i in (8, 10, 13)},
    _TF + "x__schema__mutmut_11": "not killed: differs only for an op of a non-default domain whose schema at the "
                                  "default domain's opset version has other float type constraints than at its own "
                                  "domain's version; no test graph has one",
    _TF + "x_repair_float_types__mutmut_108": "equivalent: onnx's infer_node_outputs itself raises KeyError for an "
                                              "input without a type, so without the filter the same KeyError comes "
                                              "one step earlier inside the same try (no inferred types either way)",
    _TF + "x_repair_float_types__mutmut_139": "equivalent: a tensor's type starts as its value_info's own and is only "
                                              "replaced by types with a nonzero element type, so when it is 0 it "
                                              "equals the value_info's own (0) and the 'or' branch is False",
    _TF + "x__elem__mutmut_2": "equivalent: reading tensor_type of a TypeProto that holds another kind of type gives "
                               "the default message (elem_type 0) without setting it",
    **{_TF + f"x__toposort__mutmut_{i}": "not killed: recursing also sorts the nodes inside If/Loop bodies, which the "
       "converter leaves sorted (a stable sort keeps a sorted body's order)" for i in (6, 8, 9)},
    _TF + "x_drop_round_trip_casts__mutmut_18": "equivalent: no ONNX op but Cast has an attribute named 'to'",
    _TF + "x_drop_round_trip_casts__mutmut_21": "equivalent in valid ONNX: Cast's 'to' attribute is required",
    _TF + "x_drop_round_trip_casts__mutmut_40": "equivalent: the count of removed second Casts never equals None, nor "
                                                "k + 1 (it is at most the k main-graph readers), so a tensor a body "
                                                "reads keeps its first Cast both ways",
    _TF + "x_drop_round_trip_casts__mutmut_46": "equivalent: the count is only compared for u, which its removed Cast "
                                                "b reads in the main graph, so the .get default is never used for it",
    _TF + "x_drop_round_trip_casts__mutmut_47": "equivalent: k + 2 exceeds the removed count (<= k) like k + 1, so a "
                                                "tensor a body reads keeps its first Cast both ways",
    **{_TF + f"x_drop_round_trip_casts__mutmut_{i}": "equivalent: u is read by the removed Cast b, so n_consumers "
       "always holds it and the .get default is never used" for i in (118, 120, 121)},
    **{_R + f"xǁ_Unchangedǁ__init____mutmut_{i}": "not killable under mutmut: the fp32/tf32 entries are built once when "
       "workbench.precision is imported, before mutmut activates a mutant (its fork server imports the package "
       "first); test_builtin_facts checks them" for i in (1, 2)},
    **{_R + f"xǁ_Unchangedǁapply__mutmut_{i}": "equivalent: Variant.__post_init__ names an unnamed variant "
       "f'{model.name}-{precision}', which is variant_name(model, precision, False)" for i in (18, 24)},
    _R + "xǁ_Unchangedǁapply__mutmut_32": "equivalent: variant_name adds '-mixed' only for a truthy flag; None is "
                                          "falsy like False",
    _R + "x_make_variant__mutmut_3": "equivalent: the method is lowercased (str(...).lower()) before it is checked "
                                     "or used",
})

# mut-measure (mapping, roofline, native-log, cupti)
_NL, _RF = "workbench.measure.native_log.", "workbench.measure.roofline."
_NAN = "equivalent: float('NAN') is float('nan')"
EXPLAINED.update({
    _NL + "x_capture_native_output__mutmut_32": "equivalent: Python's codec lookup normalizes 'UTF-8' to 'utf-8'",
    _NL + "x_summarize__mutmut_3": "equivalent: prev only feeds the warning-echo regex '^\\S.*:\\d+: \\w*Warning: ', "
                                   "which matches neither '' nor 'XXXX'",
    **{_RF + f"x_roofline_row__mutmut_{i}": _NAN for i in (16, 27, 35, 44, 51, 58, 72, 98)},
    _RF + "xǁDevicePeaksǁridge_point__mutmut_17": _NAN,
})
_CU = "workbench.measure.cupti."
_MASKED = "equivalent: index -1 (np.clip without its lower bound) is only read where ok = (i >= 0) masks it out"
EXPLAINED.update({
    **{_CU + f"x__nodes__mutmut_{i}": "equivalent: the default name matters only for a Node event without a name, "
       "which ORT never writes; '', None and 'XXXX' all fail the '_kernel_time' test" for i in (13, 15, 18)},
    **{_CU + f"x__nodes__mutmut_{i}": "equivalent: a missing 'args' becomes {} through 'or {}' either way"
       for i in (24, 26)},
    _CU + "x__union_ns__mutmut_6": "equivalent: a touching interval (s == cur_e) adds e - s either way: one block "
                                   "[cur_s, e] or two blocks [cur_s, cur_e] + [s, e] have the same length",
    **{_CU + f"x_align__mutmut_{i}": "equivalent: _runs returns floats, so np.array makes float64 without the dtype"
       for i in (24, 26, 30, 32)},
    _CU + "x_align__mutmut_62": _MASKED,
    _CU + "x_refine_offset__mutmut_58": _MASKED,
    _CU + "x_refine_offset__mutmut_24": "equivalent: astype(None) is float64",
    **{_CU + f"x_refine_offset__mutmut_{i}": "equivalent: any sort kind orders nodes with different starts the same; "
       "among equal starts searchsorted(side='right') takes the last, where the running maximum of the ends covers "
       "all of them in any order" for i in (29, 31, 33)},
    _CU + "x_refine_offset__mutmut_76": "equivalent: range(-5000, 5002, 250) holds the same shifts as "
                                        "range(-5000, 5001, 250)",
    _CU + "x_clock_marker__mutmut_32": "not killed: which of two samples with exactly the same bracket is kept; both "
                                       "are equally tight (the contract), and a perf_counter_ns tie cannot be staged "
                                       "without faking the clock",
    _CU + "x_layer_rows__mutmut_8": "equivalent: ort_layer_rows of empty stats returns no rows",
    _CU + "x_load_recording__mutmut_4": "equivalent: gzip.open's default mode 'rb' gives bytes, which json.load "
                                        "decodes as UTF-8 too",
    _CU + "x_trt_cross_check__mutmut_35": _NAN,
})
_MP = "workbench.measure.mapping."
_MAIN = ("equivalent: the node looked up is always a main-graph node (a producer/consumer from the index, or a "
         "top-level plumbing node), so the key is present and the default is never used")
EXPLAINED.update({
    _MP + "x_name_nodes__mutmut_10": "equivalent: a generated name ends with '_<its node index>' (or with '_' after a "
                                     "clash), so no later candidate '<op>_<j>' can equal it; used.add only guards that",
    _MP + "x_ort_fused_nodes__mutmut_1": "equivalent: the default op type matters only when none is given; neither '' "
                                         "nor 'XXXX' is an op type of a real model, so the walk finds no core either way",
    **{_MP + f"x_ort_fused_nodes__mutmut_{i}": _MAIN for i in (42, 44)},
    **{_MP + f"x_ort_nchwc_sum__mutmut_{i}": _MAIN for i in (18, 20)},
    **{_MP + f"xǁGraphIndexǁ_follow__mutmut_{i}": _MAIN for i in (5, 7, 14, 16)},
    _MP + "xǁGraphIndexǁ_follow__mutmut_22": "equivalent: only plumbing nodes enter seen; without it a plumbing node "
                                             "reached twice is queued twice, after its first copy in the same level, "
                                             "so the first non-plumbing node found is the same (repeated work only)",
    _MP + "xǁGraphIndexǁ_through_plumbing__mutmut_8": "equivalent: downstream=None is falsy like False",
    _MP + "x_spread__mutmut_4": "equivalent: pandas reads orient case-insensitively",
    **{_MP + f"x__split_pwn__mutmut_{i}": "not killed: depth is only tested for being non-zero, and differs from "
       "the original's only after the outermost PWN(...) has closed; a pointwise layer name ends there (' + ' joins "
       "and ' [profile N]' are split off before), and no result is specified for text after it" for i in (3, 18, 19, 46, 47)},
})

# mut-review (session 27): outputs, layerwise-match
_O = "workbench.compare.outputs."
EXPLAINED.update({
    _O + "x_compare_outputs__mutmut_10": "equivalent: load() returns a Model it is given unchanged",
    **{_O + f"x_compare_outputs__mutmut_{i}": "not killable under mutmut: its trampoline adds a stack frame between "
       "the caller and compare_outputs, so the warning's stacklevel cannot be observed; "
       "test_compare_outputs_warnings_point_at_the_caller checks it outside mutmut" for i in (49, 50, 61, 64)},
    **{_O + f"x_compare_outputs__mutmut_{i}": "not killed here: the fp32 reference build on ONNX Runtime draws no bar "
       "(no recipe, no calibration), so its progress flag shows nothing either way; a TensorRT reference build "
       "(IProgressMonitor bar) needs TensorRT and a GPU" for i in (71, 76)},
    _O + "x_compare_outputs__mutmut_78": "equivalent: precision names are case-insensitive (build_engine(m, 'FP32') "
                                         "makes the same fp32 variant, precision 'fp32', name '<model>-fp32')",
    **{_O + f"x_compare_outputs__mutmut_{i}": "not killed here: on ONNX Runtime a variant build only checks shapes "
       "(the fp32 reference build of the same inputs checked them just before) and records them in the engine's "
       "BuildRecord, which the Comparison does not carry; TensorRT optimization profiles need TensorRT"
       for i in (84, 90)},
    _O + "xǁComparisonǁto_json__mutmut_74": "equivalent: pandas reads orient case-insensitively",
    **{_O + f"xǁComparisonǁto_json__mutmut_{i}": "equivalent: the 'unmatched'/'skipped' entries this lets into info "
       "are overwritten by the explicit 'unmatched'/'skipped' keys written after **info" for i in (79, 80, 81, 82)},
})

_LWM = "workbench.compare.layerwise."
EXPLAINED.update({
    **{_LWM + f"x__fmt_shape__mutmut_{i}": "equivalent: _fmt_shape is only called for a shape conflict, which "
       "_shapes_conflict reports only when both shapes are known (not None)" for i in (2, 15)},
    _LWM + "x_cut_model__mutmut_33": "equivalent: an empty optional input '' (or a name already needed) added to "
                                     "need again has no producer, initializer, input or value_info of that name",
    _LWM + "x_match_tensors__mutmut_163": "equivalent: match_tensor looks the name up only in `available`, the "
                                          "empty set here (the node-output rule reads the producer instead)",
    _LWM + "x_match_tensors__mutmut_199": "equivalent: ok is only read by `if not ok`; None is falsy as False",
    _LWM + "x_match_tensors__mutmut_236": "equivalent: claimed_by is read only by taken(), in phase 1 (names), "
                                          "which has finished before phase 2 (structure) writes it",
    _LWM + "x_match_tensors__mutmut_240": "equivalent: this elif is reached only when len(found) != 1, where >= 1 "
                                          "and > 1 agree",
    **{_LWM + f"x_match_tensors__mutmut_{i}": "equivalent: every candidate left unpaired got a reason in phase 2 "
       "(each of its branches sets one), so the 'no match' default is never used" for i in (312, 314, 315, 316)},
})

_SI = "workbench.data.x_synthetic_inputs__mutmut_"
EXPLAINED.update({
    **{_SI + f"{i}": "equivalent: Generator.integers(n) draws from [0, n) as integers(0, n) does" for i in (88, 102)},
    _SI + "64": "equivalent: an index's low is always 0 (rows 0..n-1 of the table it indexes), and integers(high) "
                "draws from [0, high)",
    _SI + "109": "not killed: float64 -> dt instead of float64 -> float32 -> dt is the same for float32/float64 "
                 "inputs; for float16/bfloat16 only a rare double-rounding tie differs, which no behaviour reads",
    **{_SI + f"{i}": "equivalent: np.prod of the shape in int64 equals float64's for any shape whose float64 draws "
       "passed the memory-budget check just before (far below 2**63 elements)" for i in (116, 118)},
    _SI + "36": "equivalent: diagnose() returns a fact for every graph input, so f is never None",
    **{_SI + f"{i}": "equivalent: synthetic_inputs reads only value_kind/low/high/choices from diagnose(), which "
       "the graph trace decides without batch_axis" for i in (6, 8)},
})

#: Targets without a trustworthy score, and why (shown in the docs table instead of numbers).
# fp16-convert (session 27, mut-floating): the fp16/bf16 conversion of precision/floating.py
_FL = "workbench.precision.floating."
_FLABEL = ("not killed: the precision label only appears in the error text of a check that cannot fail here: "
           "convert_fp16's repair loop returns only graphs that pass the same checks (else it raises itself)")
EXPLAINED.update({
    _FL + "x_convert_fp16__mutmut_1": "equivalent for every model the recipe can convert: upgrade_opset(p, 1) acts "
                                      "only when no default-domain opset is imported, and such a model fails either "
                                      "way (the converter's Casts need one); only the error class/message differ",
    _FL + "x_convert_fp16__mutmut_87": "equivalent: subgraph_keep is reassigned after repair_loop before any read",
    **{_FL + f"x_convert_fp16__mutmut_{i}": "equivalent: repair_float_types reads output_types[o] only when truthy "
       "(typefix.py: 'and output_types[o]'), and None / 0 are both falsy" for i in (103, 105)},
    _FL + "x_convert_fp16__mutmut_106": "not killed: 1 (FLOAT) instead of 0 as the type of a subgraph holder's output "
                                        "that shape inference left untyped in the fp32 source; every tried If output "
                                        "was typed",
    _FL + "x_convert_fp16__mutmut_121": "not killed: hides the bodies of non-holders (none have any) instead of kept "
                                        "holders; onnxconverter-common itself skips the bodies of blocked nodes "
                                        "(float16.get_next_level_graph), so the kept-If tests convert the same",
    **{_FL + f"x_convert_fp16__mutmut_{i}": "not killed: the bf16 repair pass without the source types of kept "
       "If/Loop outputs; it matters only for a holder output that per-node inference cannot type after the fp16 "
       "pass, which the bf16 If test does not produce" for i in (204, 209)},
    **{_FL + f"x_convert_fp16__mutmut_{i}": "not killed: repair_loop's default candidates are every node the checker "
       "names; they differ only when it names a node the source lacks (a converter-added Cast), not seen in the tests"
       for i in (225, 228)},
    _FL + "x_convert_fp16__mutmut_261": "not killed: needs a node without a subgraph that the strict check rejects "
                                        "after conversion (kept by the repair loop alone); the tried candidate (IsInf "
                                        "at opset 17) converts cleanly",
    _FL + "x_convert_fp16__mutmut_266": "equivalent: the same subgraph_keep.get(n.name) already appears earlier in this "
                                        "'or' chain",
    _FL + "x_convert_fp16__mutmut_132": "equivalent: simplefilter('ignore') without a category ignores Warning, and the "
                                        "converter's only warnings are its four warnings.warn(msg) UserWarnings",
    _FL + "x_convert_fp16__mutmut_149": "equivalent: check_fp16_ready=True is convert_float_to_float16's default",
    **{_FL + f"x_convert_fp16__mutmut_{i}": "equivalent: the per-round 'blocked' entry is never read (the record "
       "copies named keys of the last round only)" for i in (170, 171)},
    **{_FL + f"x{c}apply__mutmut_{i}": "equivalent: Variant.__post_init__ fills an empty source_hash from "
       "model.parent_hash, which Model.derive sets to the source model's hash"
       for c, ids in (("ǁFp16Recipeǁ", (66, 72)), ("ǁBf16Recipeǁ", (46, 52))) for i in ids},
    **{_FL + f"x{c}apply__mutmut_{i}": "equivalent: Model.derive(proto, name=None) names the result self.name"
       for c, ids in (("ǁFp16Recipeǁ", (77, 79)), ("ǁBf16Recipeǁ", (57, 59))) for i in ids},
    **{_FL + f"xǁFp16Recipeǁapply__mutmut_{i}": _FLABEL for i in (18, 21, 22, 46, 49, 50)},
    **{_FL + f"xǁBf16Recipeǁapply__mutmut_{i}": _FLABEL for i in (29, 32, 33)},
    **{_FL + f"x_retype_to_bf16__mutmut_{i}": "equivalent: every FLOAT16 initializer / Constant value of the converted "
       "graph has a FLOAT namesake in the source (the converter adds none and, with check_fp16_ready, refuses a "
       "source holding fp16), so the original is always used" for i in (8, 9)},
    _FL + "x_retype_to_bf16__mutmut_13": "equivalent: the fp32 original is exact in float64, so float64 -> bfloat16 "
                                         "rounds once to the same value as float32 -> bfloat16",
    _FL + "x_linear_converter_sort__mutmut_3": "not killed: without the converter's sort the main graph is still "
                                               "ordered (repair_float_types re-sorts it after every conversion, "
                                               "typefix._toposort); a converted If body with Casts would need it, but "
                                               "in the tried If/Max case the repair loop kept the If fp32 either way",
    _FL + "x__elem_types__mutmut_3": "not killed: the except branch needs onnx.shape_inference.infer_shapes to raise in "
                                     "non-strict mode; it did not on type clashes, bad Reshape/MatMul/Concat shapes or "
                                     "conflicting value_info (tried); a > 2 GB model would, which no fast test builds",
})

NOT_MEASURED: dict[str, str] = {
}

#: The issue's core modules (#23: measure/, compare/, precision/, model.py, data.py, builds, the report summary).
CORE = ["workbench/measure", "workbench/compare", "workbench/precision", "workbench/model.py", "workbench/data.py",
        "workbench/builds.py"]
#: Functions of core modules that no target mutates, each with the reason (`--coverage` fails on any other).
NOT_MUTATED: dict[str, str] = {}

# mut-measure: measure/cupti.py and measure/roofline.py functions that need a GPU (their GPU tests are named)
_GPU_CUPTI = "needs cupti-python and an NVIDIA GPU (tests/test_gpu_cupti.py -m gpu, run on the H200 in session 25)"
NOT_MUTATED.update({
    **{f"workbench/measure/cupti.py:{f}": _GPU_CUPTI for f in (
        "x__import_cupti", "x_cupti_unavailable", "xǁActivityTraceǁ__init__", "xǁActivityTraceǁ__enter__",
        "xǁActivityTraceǁ_disable", "xǁActivityTraceǁ__exit__", "x__device_synchronize", "x_profile_layers_ort_cupti",
        "x__iobinding")},
    "workbench/measure/cupti.py:x_cupti_unavailable": "only its ImportError branch runs without cupti-python (tested: "
                                                      "test_cupti_path_is_skipped_cleanly_without_gpu); the others need "
                                                      "cupti-python / libcupti / a GPU (tests/test_gpu_cupti.py -m gpu)",
    **{f"workbench/measure/roofline.py:{f}": "times a CUDA device through onnxruntime-gpu / cuda-python "
       "(tests/test_gpu_ort.py -m gpu)" for f in ("x_measure_matmul_tflops", "x__time_matmul", "x_measure_copy_gbps",
                                                  "x_measure_peaks")},
})

# mut-precision: precision/modelopt.py (tool="modelopt"; docs/testing.md, "precision/ targets" paragraph)
_MO = ("needs NVIDIA ModelOpt (nvidia-modelopt[onnx], pulls torch; not installed here or in CI): the function runs "
       "after _require() and only passes arguments to / reads results of modelopt.onnx calls")
NOT_MUTATED.update({
    **{f"workbench/precision/modelopt.py:{f}": _MO for f in ("x_autocast", "x_quantize")},
    **{f"workbench/precision/modelopt.py:{f}": "the two-line missing-ModelOpt guard; its "
       "no-ModelOpt path is tested by tests/test_precision.py::test_modelopt_tool_is_guarded; left out of the targets "
       "with the module, whose other two functions cannot be judged here" for f in ("x_modelopt_available", "x__require")},
})


# the lead: functions that need TensorRT on a GPU, a lazy import shim, the slow ORT quantizer call
NOT_MUTATED.update({
    "workbench/measure/layers.py:x_profile_layers_trt": "needs a built TensorRT engine on an NVIDIA GPU (IProfiler; "
        "tests/test_tensorrt_gpu.py -m trt); full TensorRT cannot be installed on this project's machines",
    "workbench/compare/layerwise.py:x_layerwise_debug_tensors": "needs TensorRT debug tensors on a GPU "
        "(tests/test_tensorrt_gpu.py::test_layerwise_debug_tensors_agree_with_ort_layerwise -m trt); its CPU-side "
        "refusal is tests/test_trt_runtime.py::test_layerwise_on_the_engine_needs_a_gpu_it_can_run_on",
    "workbench/compare/__init__.py:x___getattr__": "a PEP 562 lazy import of three sensitivity names (no logic "
        "beyond the name check); mutating it would only break `from workbench.compare import ...`",
    "workbench/precision/quantize.py:xǁ_QuantRecipeǁdefault_keep": "a constant `return []` (int8/fp8 keep no op "
        "type by default)",
    "workbench/precision/quantize.py:xǁ_QuantRecipeǁ_ort_quantize": "674 mutants, each judged by ~4.8 s of real ONNX "
        "Runtime quantizations (~70 CPU-minutes a pass): not run on two shared cores; the recipe tests exercise it "
        "unmutated (tests/test_precision.py, tests/test_mut_quantize.py)",
})


def _functions(module: str) -> list[str]:
    """mutmut's names of the functions it would mutate in ``module``: ``x_f`` for a module-level function,
    ``xǁClassǁm`` for a method (nested functions belong to the function that holds them)."""
    import ast

    tree = ast.parse((ROOT / module).read_text())
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(f"x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            out += [f"xǁ{node.name}ǁ{f.name}" for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return out


def coverage() -> dict[str, dict]:
    """Per core module: its functions, the targets that mutate each, and those no target mutates."""
    import fnmatch

    modules = []
    for c in CORE:
        p = ROOT / c
        modules += sorted(str(f.relative_to(ROOT)) for f in p.glob("*.py")) if p.is_dir() else [c]
    out = {}
    for m in modules:
        dotted = m[:-3].replace("/", ".").removesuffix(".__init__")
        funcs = _functions(m)
        by = {}
        for f in funcs:
            name = f"{dotted}.{f}__mutmut_1"
            by[f] = [n for n, t in PLAN.items() if t.module == m and
                     (not t.functions or any(fnmatch.fnmatch(name, g) for g in t.functions))]
        if funcs:
            out[m] = {"functions": len(funcs), "targets": sorted({n for v in by.values() for n in v}),
                      "uncovered": [f for f, v in by.items() if not v]}
    return out


def _coverage_report() -> int:
    """Print the core modules and what no target mutates; 1 if a function is neither mutated nor excused."""
    bad = 0
    for m, c in coverage().items():
        print(f"{m}: {c['functions'] - len(c['uncovered'])}/{c['functions']} functions mutated by "
              f"{', '.join(c['targets']) or 'no target'}")
        for f in c["uncovered"]:
            why = NOT_MUTATED.get(f"{m}:{f}")
            bad += why is None
            print(f"    not mutated: {f}: {why or 'NO REASON GIVEN'}")
    return 1 if bad else 0


DOC = ROOT / "docs" / "testing.md"
_BEGIN, _END = "<!-- mutation-table: written by tools/mutate.py -->", "<!-- /mutation-table -->"


def _table(results: dict) -> str:
    head = ("| target | mutated | mutants | killed | timeout | survived | no tests | score | explained | date | "
            "load (1 min) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    rows = []
    for name in [*PLAN, *[k for k in results if k not in PLAN]]:
        r = results.get(name)
        t = PLAN.get(name)
        if r is None or name in NOT_MEASURED:
            what = f"`{t.module}`" + (f" ({t.note})" if t and t.note else "")
            why = NOT_MEASURED.get(name, "not run in the session's time")
            rows.append(f"| {name} | {what} | not measured: {why} | | | | | | | | |")
            continue
        what = f"`{r['module']}`" + (f" ({r['note']})" if r.get("note") else "")
        score = "—" if r["score"] is None else f"{100 * r['score']:.1f} %"
        mutants = str(r["mutants"]) + (f" ({r['not checked']} not run yet)" if r.get("not checked") else "")
        rows.append(f"| {name} | {what} | {mutants} | {r['killed']} | {r['timeout']} | {r['survived']} | "
                    f"{r['no tests']} | **{score}** | {len(r.get('explained', {}))} | {r['date']} | "
                    f"{r.get('load_at_start', '')} |")
    return "\n".join([head, *rows])


def _write_table(results: dict) -> None:
    if not DOC.exists():
        return
    text = DOC.read_text()
    if _BEGIN not in text or _END not in text:
        return
    pre, rest = text.split(_BEGIN, 1)
    _, post = rest.split(_END, 1)
    DOC.write_text(pre + _BEGIN + "\n" + _table(results) + "\n" + _END + post)


def _load() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*", help=f"targets (default: all): {', '.join(PLAN)}")
    ap.add_argument("--sample", action="store_true", help="the small fixed sample (SAMPLE)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", action="store_true", help="rewrite the table in docs/testing.md from docs/mutation.json")
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--wall-factor", type=float, default=10.0, help="multiply mutmut's wall-clock deadline")
    ap.add_argument("--rerun", action="store_true", help="re-test survivors and untested mutants only")
    ap.add_argument("--fresh", action="store_true", help="forget earlier results of these targets")
    ap.add_argument("--skip", action="append", default=[], help="with --rerun: leave mutants matching this glob")
    ap.add_argument("--record", action="store_true", help="record the scratch copy's current results; run nothing")
    ap.add_argument("--no-write", action="store_true", help="print, do not update docs/mutation.json")
    ap.add_argument("--min-score", type=float, default=None, help="exit 1 if a target scores below this")
    ap.add_argument("--coverage", action="store_true",
                    help="list the core modules' functions no target mutates (exit 1 if one has no reason)")
    a = ap.parse_args()
    if a.coverage:
        sys.exit(_coverage_report())
    plan = SAMPLE if a.sample else PLAN
    if a.table:  # re-apply EXPLAINED to the recorded survivors and rewrite the docs table
        results = _load()
        for k in [k for k in results if k in NOT_MEASURED]:
            del results[k]
        for r in results.values():
            r["explained"] = {k: v for k, v in {**r.get("explained", {}), **EXPLAINED}.items() if k in r["undetected"]}
            r["unexplained"] = [k for k in r["undetected"] if k not in r["explained"]]
        if results:
            OUT.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        _write_table(results)
        return
    if a.list:
        for n, t in plan.items():
            print(f"{n:14} {t.module} [{', '.join(t.functions) or 'all'}] <- {' '.join(t.tests)}")
        return
    unknown = [n for n in a.targets if n not in plan]
    if unknown:
        sys.exit(f"unknown target(s) {unknown}; known: {', '.join(plan)}")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    low = []
    for n in a.targets or list(plan):
        res = run(n, plan[n], max_children=a.max_children, wall_factor=a.wall_factor, rerun=a.rerun, fresh=a.fresh,
                  skip=tuple(a.skip), record_only=a.record)
        res.update(date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), tool="mutmut 3.8.1",
                   command=" ".join(["python tools/mutate.py", *(["--sample"] if a.sample else []), n,
                                     *(["--rerun"] if a.rerun else []), *[f"--skip '{g}'" for g in a.skip],
                                     *(["--record"] if a.record else [])]),
                   load_at_start=None if load is None else round(load, 1), cores=os.cpu_count())
        print(f"{n}: score {res['score']}  killed {res['killed']}  timeout {res['timeout']}  survived "
              f"{res['survived']}  no tests {res['no tests']}  ({res['mutants']} mutants, {res['minutes']} min)"
              + (f"\n  mutmut exited {res['run_rc']}: {res['tail']}" if res["run_rc"] else ""))
        if a.min_score is not None and (res["score"] is None or res["score"] < a.min_score):
            low.append(n)
        broken = res["run_rc"] and any(m in res["tail"] for m in _BROKEN_RUN)
        if broken:  # mutmut never judged a mutant: recording would turn old or empty results into a score
            print(f"  {n}: mutmut could not run the selected tests unmutated; nothing recorded")
            low.append(n)
        if not a.no_write and not a.sample and not broken:
            import fcntl

            lock = open(WORK.parent / "mutate.lock" if WORK.parent.exists() else OUT.with_suffix(".lock"), "w")
            fcntl.flock(lock, fcntl.LOCK_EX)  # two `make mutate` runs at once: one read-modify-write at a time
            results = _load()
            explained = {**(results.get(n) or {}).get("explained", {}), **EXPLAINED}
            res["explained"] = {k: v for k, v in explained.items() if k in res["undetected"]}
            res["unexplained"] = [k for k in res["undetected"] if k not in res["explained"]]
            results[n] = res
            OUT.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
            _write_table(results)
            lock.close()
    if low:
        sys.exit(f"below {a.min_score} or not run: {', '.join(low)}")


if __name__ == "__main__":
    main()
