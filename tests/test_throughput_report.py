"""The throughput benchmark's reporting (benchmarks/throughput_report.py) on hand-written measured figures.

No TensorFlow work: the figures below stand for what train_throughput.py's workers measure.
"""

import copy
import json

import pytest

from benchmarks import throughput_report as report_module

# ResNet-18-like: 1.0 GFLOP forward per view, so a training step is 3 GFLOP per view.
FORWARD_FLOPS = 1.0e9


def _variant(name, precision, views_per_s, **extra):
    return {"variant": name, "precision": precision, "xla": "off", "step_time_s": 256 / views_per_s,
            "views_per_s": views_per_s, "cpu_per_wall": 1.9, "max_rss_mb": 2000.0, "tf_peak_mb": None, **extra}


def measured(**settings_overrides) -> dict:
    settings = {"resnet_depth": 18, "width_multiplier": 1.0, "image_size": 32, "cifar_stem": True, "batch_size": 128,
                "steps": 6, "warmup_steps": 2, "end_to_end_steps": 3, **settings_overrides}
    reference = {"tf_version": "2.21.0", "forward_flops_per_view": {"encoder_plus_projection": FORWARD_FLOPS},
                 "matmul_peak": {"float32": {"n": 4096, "best_gflops": 300.0, "median_gflops": 290.0},
                                 "bfloat16": {"n": 4096, "best_gflops": 1000.0, "median_gflops": 900.0}}}
    return {
        "settings": settings,
        "machine": {"cpu": "Test CPU", "isa": ["avx512f"], "cores": 2, "python": "3.12",
                    "sched_affinity": 2, "load_average_at_start": [0.5, 0.5, 0.5]},
        "env": {},
        "flags": {"config": "r18_32", "variants": ["float32", "mixed_bfloat16"], "seconds": 300.0,
                  "pipeline_seconds": 20.0, "matmul_size": 4096, "intra_op_threads": 0, "inter_op_threads": 0},
        "reference": reference,
        # The second run (after the variants) found a higher bfloat16 peak: the best of both counts.
        "matmul_runs": [reference, {"tf_version": "2.21.0",
                               "matmul_peak": {"float32": {"n": 4096, "best_gflops": 280.0, "median_gflops": 270.0},
                                               "bfloat16": {"n": 4096, "best_gflops": 1200.0, "median_gflops": 1100.0}}}],
        # 200 two-view images/s alone.
        "pipeline": {"source": "fashion_mnist_offline", "batches_per_s": 200 / 128, "cpu_per_wall": 1.0,
                     "two_view_images_per_s": 200.0, "views_per_s": 400.0},
        "variants": [
            _variant("float32", "float32", 80.0),
            _variant("mixed_bfloat16", "mixed_bfloat16", 200.0, end_to_end_views_per_s=150.0),
            {"variant": "float32_xla", "error": "no XLA mode compiled", "xla_failures": {"whole loop": "boom"}},
        ],
        "load_average_at_end": [1.5, 1.0, 0.8],
    }


@pytest.fixture
def figures() -> dict:
    return measured()


def test_derived_ratios(figures):
    # Mutation tried: dividing by the float32 row's step time instead of its views/s in derive_rows -> fails.
    rows = {row["variant"]: row for row in report_module.json_record(figures)["variants"]}
    bf16 = rows["mixed_bfloat16"]
    assert bf16["speedup_vs_float32"] == pytest.approx(2.5)
    assert rows["float32"]["speedup_vs_float32"] == pytest.approx(1.0)
    # 200 views/s x 3 GFLOP per view = 600 GFLOP/s; best bfloat16 peak over both runs is 1200.
    assert bf16["gflops"] == pytest.approx(600.0)
    assert bf16["percent_of_peak"] == pytest.approx(50.0)
    # float32 is compared with the float32 peak (best 300): 240 / 300.
    assert rows["float32"]["percent_of_peak"] == pytest.approx(80.0)
    # Pipeline 200 two-view images/s over the step's 100 two-view images/s.
    assert bf16["pipeline_over_step"] == pytest.approx(2.0)
    # The failed row gets no derived figures; the input is not modified.
    assert "speedup_vs_float32" not in rows["float32_xla"]
    assert "speedup_vs_float32" not in figures["variants"][0]


def test_target_lines_name_the_target_and_verdict(figures):
    # Mutation tried: `value >= bar` -> `value > bar` in target_lines -> the pipeline line (exactly 2.00x) reads NOT MET.
    lines = report_module.json_record(figures)["targets"]
    assert lines[0] == ("targets (set for this config: ResNet-18, CIFAR stem, 32 px, global batch 128), "
                        "best variant mixed_bfloat16:")
    assert lines[1] == "  speedup over float32 non-XLA     2.50x (target: best variant at least 1.6x float32 non-XLA): MET"
    assert lines[2] == ("  % of bfloat16 matmul peak        50.00% "
                        "(target: best variant at least 70% of the bfloat16 matmul peak): NOT MET")
    assert lines[3] == ("  input pipeline / step rate       2.00x "
                        "(target: input pipeline alone at least 2x the step's rate): MET")
    assert not any("issue" in line.lower() for line in lines)


def test_targets_for_another_config_and_missing_figures():
    # Mutation tried: is_target_config returning True always -> the title check fails.
    figures = measured(image_size=224, cifar_stem=False)
    figures["matmul_runs"] = [{"matmul_peak": {}}]
    del figures["pipeline"]
    lines = report_module.json_record(figures)["targets"]
    assert "this is another config: info only" in lines[0]
    assert lines[2].endswith("-% (target: best variant at least 70% of the bfloat16 matmul peak): n/a")
    assert lines[3].endswith(": n/a")
    # Nothing timed: no target lines and no "targets" key.
    figures["variants"] = [{"variant": "float32", "error": "worker variant:float32 exited with code 1"}]
    assert "targets" not in report_module.json_record(figures)


def test_json_record_keys(figures):
    # Mutation tried: json_record never adding "targets" (`if lines:` -> `if False:`) -> fails.
    record = report_module.json_record(figures)
    assert set(record) == set(figures) | {"targets"}
    timed = record["variants"][1]
    assert set(timed) == set(figures["variants"][1]) | {"speedup_vs_float32", "gflops", "percent_of_peak",
                                                        "pipeline_over_step"}
    # JSON-serialisable as train_throughput.py writes it.
    assert json.loads(json.dumps(record, sort_keys=True))["variants"][1]["gflops"] == pytest.approx(600.0)


def test_format_table(figures):
    # Mutation tried: format_table printing the first matmul run's peak (`max(peaks)` -> `peaks[0]`) -> shows 1000.0.
    record = report_module.json_record(figures)
    text = report_module.format_table(copy.deepcopy(record))
    lines = text.splitlines()
    assert lines[0] == "" and lines[1] == "=" * 100 and lines[-1] == "=" * 100
    assert "config r18_32: ResNet-18 x1 CIFAR stem, 32 px, global batch 128 (256 views/step)" in text
    assert "bfloat16 matmul peak (4096^2): 1200.0 GFLOP/s (best of runs before/after: 1000.0, 1200.0)" in text
    assert "training step counted as 3x forward = 3.000 G/view" in text
    bf16_row = next(line for line in lines if line.startswith("mixed_bfloat16 "))
    assert bf16_row.split() == ["mixed_bfloat16", "off", "1.28", "200.0", "2.50", "600.0", "50.0", "150.0",
                                "2.00", "1.90", "2000", "-"]
    assert any(line.startswith("float32_xla") and "FAILED: no XLA mode compiled" in line for line in lines)
    assert "input pipeline alone (fashion_mnist_offline, 32 px): 1.56 two-view batches/s" in text
    assert lines[-5:-1] == record["targets"]
