"""Reporting for benchmarks/train_throughput.py: from the measured figures to the printed table and the JSON record.

Everything here is a pure function of one dict of measured figures, as train_throughput.py
assembles it in its parent process:

    {"settings": {...}, "machine": {...}, "env": {...}, "flags": {...},
     "reference": {...}, "matmul_runs": [{...}, ...], "pipeline": {...},   # "pipeline" is optional
     "variants": [{...}, ...], "load_average_at_end": [...]}

`json_record` adds the derived figures (speedup over float32, achieved GFLOP/s, % of the
same-precision matmul peak, pipeline/step ratio) to a copy of it and the lines comparing the
best variant with the targets; `format_table` turns that record into the printed text. No
TensorFlow here, so the tests can check the arithmetic on a hand-written dict.
"""

from __future__ import annotations

import copy

# The matmul peak a precision is compared with.
PEAK_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}

# The targets were set for this configuration on this 2-core CPU; for any other they are shown for information.
TARGET_SETTINGS = {"resnet_depth": 18, "image_size": 32, "batch_size": 128, "cifar_stem": True}
TARGET_SETTINGS_IN_WORDS = "ResNet-18, CIFAR stem, 32 px, global batch 128"
SPEEDUP_TARGET = 1.6  # best variant's views/s over float32 non-XLA
PEAK_TARGET_PERCENT = 70.0  # best variant's GFLOP/s as % of the bfloat16 matmul peak
PIPELINE_TARGET = 2.0  # input pipeline alone over the best variant's step rate


def matmul_peaks(report: dict) -> dict[str, float]:
    """Best GFLOP/s per dtype over all matmul runs (before and after the variants)."""
    peaks: dict[str, float] = {}
    for run in report["matmul_runs"]:
        for dtype, peak in run.get("matmul_peak", {}).items():
            peaks[dtype] = max(peaks.get(dtype, 0.0), peak["best_gflops"])
    return peaks


def forward_flops_per_view(report: dict) -> float | None:
    return report["reference"].get("forward_flops_per_view", {}).get("encoder_plus_projection")


def _timed(rows: list[dict]) -> list[dict]:
    return [row for row in rows if "views_per_s" in row]


def derive_rows(report: dict) -> list[dict]:
    """Copies of the variant rows with speedup_vs_float32, gflops, percent_of_peak and pipeline_over_step added
    (None where a figure they need is missing); failed rows are copied unchanged."""
    flops = forward_flops_per_view(report)
    peaks = matmul_peaks(report)
    rows = copy.deepcopy(report["variants"])
    baseline = next((r for r in _timed(rows) if r.get("variant") == "float32"), None)
    pipe = report.get("pipeline", {}).get("two_view_images_per_s")
    for row in _timed(rows):
        row["speedup_vs_float32"] = row["views_per_s"] / baseline["views_per_s"] if baseline else None
        # A training step counts as 3x the forward pass.
        row["gflops"] = row["views_per_s"] * 3 * flops / 1e9 if flops else None
        peak = peaks.get(PEAK_DTYPE[row["precision"]])
        row["percent_of_peak"] = 100 * row["gflops"] / peak if peak and row["gflops"] else None
        # Two-view images/s of the pipeline over the step's two-view images/s.
        row["pipeline_over_step"] = pipe / (row["views_per_s"] / 2) if pipe else None
    return rows


def is_target_config(settings: dict) -> bool:
    return all(settings[key] == value for key, value in TARGET_SETTINGS.items())


def target_lines(report: dict, rows: list[dict]) -> list[str]:
    """The best timed variant against each target, one line each after a title; [] when nothing was timed."""
    timed = _timed(rows)
    if not timed:
        return []
    best = max(timed, key=lambda r: r["views_per_s"])
    peaks = matmul_peaks(report)
    if is_target_config(report["settings"]):
        title = f"targets (set for this config: {TARGET_SETTINGS_IN_WORDS})"
    else:
        title = f"targets (set for {TARGET_SETTINGS_IN_WORDS}; this is another config: info only)"
    bf16_percent = (100 * best["gflops"] / peaks["bfloat16"]
                    if best.get("gflops") and peaks.get("bfloat16") else None)
    lines = [f"{title}, best variant {best['variant']}:"]
    for name, value, bar, unit, target in (
        ("speedup over float32 non-XLA", best.get("speedup_vs_float32"), SPEEDUP_TARGET, "x",
         f"best variant at least {SPEEDUP_TARGET:g}x float32 non-XLA"),
        ("% of bfloat16 matmul peak", bf16_percent, PEAK_TARGET_PERCENT, "%",
         f"best variant at least {PEAK_TARGET_PERCENT:g}% of the bfloat16 matmul peak"),
        ("input pipeline / step rate", best.get("pipeline_over_step"), PIPELINE_TARGET, "x",
         f"input pipeline alone at least {PIPELINE_TARGET:g}x the step's rate"),
    ):
        verdict = "n/a" if value is None else ("MET" if value >= bar else "NOT MET")
        lines.append(f"  {name:32s} {'-' if value is None else f'{value:.2f}'}{unit} (target: {target}): {verdict}")
    return lines


def json_record(report: dict) -> dict:
    """A copy of the measured figures with the derived ones added to every timed variant row, and "targets"
    (the printed target lines) where a variant was timed. This is what --output_json writes."""
    record = copy.deepcopy(report)
    record["variants"] = derive_rows(report)
    lines = target_lines(report, record["variants"])
    if lines:
        record["targets"] = lines
    return record


def _cell(row: dict, key: str, spec: str) -> str:
    width = spec.split(".")[0]
    return format(row[key], spec) if row.get(key) is not None else format("-", f">{width}")


def format_table(record: dict) -> str:
    """The printed summary of a `json_record`: machine, settings, FLOPs, peaks, one row per variant, targets."""
    s, m, ref, rows, fl = record["settings"], record["machine"], record["reference"], record["variants"], record["flags"]
    flops = forward_flops_per_view(record)
    out = ["", "=" * 100]
    out.append(f"machine: {m['cpu']}, {m['cores']} cores ({' '.join(m['isa'])}), TF {ref.get('tf_version')}, "
               f"load avg at start {m['load_average_at_start'][0]:.2f}, at end {record['load_average_at_end'][0]:.2f}")
    out.append(f"env: {record['env'] or '(defaults)'}; threads intra={fl['intra_op_threads'] or 'default'} "
               f"inter={fl['inter_op_threads'] or 'default'}")
    out.append(f"config {fl['config']}: ResNet-{s['resnet_depth']} x{s['width_multiplier']:g}"
               f"{' CIFAR stem' if s['cifar_stem'] else ''}, {s['image_size']} px, global batch {s['batch_size']} "
               f"({2 * s['batch_size']} views/step), {s['steps']} timed steps after {s['warmup_steps']} warm-up")
    if flops:
        out.append(f"forward FLOPs per view (encoder + projection head, 2 x MACs): {flops / 1e9:.3f} G; "
                   f"training step counted as 3x forward = {3 * flops / 1e9:.3f} G/view")
    for dtype in ("float32", "bfloat16"):
        peaks = [r["matmul_peak"][dtype]["best_gflops"] for r in record["matmul_runs"] if dtype in r.get("matmul_peak", {})]
        if peaks:
            out.append(f"{dtype} matmul peak ({fl['matmul_size']}^2): {max(peaks):.1f} GFLOP/s "
                       f"(best of runs before/after: {', '.join(f'{p:.1f}' for p in peaks)})")
    header = (f"{'variant':20s} {'XLA':>17s} {'step s':>7s} {'views/s':>8s} {'x f32':>6s} {'GFLOP/s':>8s} "
              f"{'%peak':>6s} {'e2e v/s':>8s} {'pipe/step':>9s} {'cpu/wall':>8s} {'maxRSS MB':>9s} {'TF peak MB':>10s}")
    out += [header, "-" * len(header)]
    for row in rows:
        if "views_per_s" not in row:
            out.append(f"{row.get('variant', '?'):20s} FAILED: {row.get('error')} {row.get('xla_failures', '')}")
            continue
        out.append(f"{row['variant']:20s} {row['xla']:>17s} {row['step_time_s']:7.2f} {row['views_per_s']:8.1f} "
                   f"{_cell(row, 'speedup_vs_float32', '6.2f')} {_cell(row, 'gflops', '8.1f')} "
                   f"{_cell(row, 'percent_of_peak', '6.1f')} {_cell(row, 'end_to_end_views_per_s', '8.1f')} "
                   f"{_cell(row, 'pipeline_over_step', '9.2f')} "
                   f"{row['cpu_per_wall']:8.2f} {row['max_rss_mb']:9.0f} {_cell(row, 'tf_peak_mb', '10.0f')}")
        for mode, message in row.get("xla_failures", {}).items():
            out.append(f"{'':20s} XLA on the {mode} failed: {message[:120]}")
    pipe = record.get("pipeline", {})
    if "views_per_s" in pipe:
        out.append(f"input pipeline alone ({pipe['source']}, {s['image_size']} px): {pipe['batches_per_s']:.2f} "
                   f"two-view batches/s = {pipe['two_view_images_per_s']:.0f} images/s = {pipe['views_per_s']:.0f} views/s")
    out.append("memory: maxRSS = the variant process's resource.getrusage ru_maxrss (model, optimizer, data, TF runtime); "
               "TF peak = tf.config.experimental.get_memory_info('CPU:0')['peak'], TF's CPU allocator only")
    out += record.get("targets", [])
    out.append("=" * 100)
    return "\n".join(out)
