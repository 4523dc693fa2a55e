"""benchmarks/versus_original.py's log parsing and timing, on hand-written log lines.

No TensorFlow work here, except the last test, which runs the whole benchmark (both programs,
3 steps each) when SIMCLR_ORIGINAL_DIR names the original's tf2/ directory.
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import versus_original as vo
from cli_helpers import REPO, environment

ORIGINAL_LOG = """\
I1202 21:30:00.000000 139990 run.py:497] # train_steps: 6
I1202 21:31:00.000000 139990 run.py:640] Completed: 1 / 6 steps
I1202 21:31:00.100000 139990 metrics.py:70] Step: [1] train/total_loss = 7.100000
I1202 21:31:12.500000 139990 run.py:640] Completed: 2 / 6 steps
W1202 21:31:20.000000 139990 run.py:1] something else entirely
I1202 21:31:25.000000 139990 run.py:640] Completed: 3 / 6 steps
I1202 21:31:40.000000 139990 run.py:420] Completed eval for 1 / 1 steps
Completed: 4 / 6 steps without an absl prefix (e.g. a print) is not a step time
"""

OURS_TRAIN_LOG = "".join(json.dumps(record) + "\n" for record in [
    {"step": 1, "total_steps": 4, "images_per_second": 12.8, "elapsed_seconds": 40.0, "loss": 7.0},
    {"step": 2, "total_steps": 4, "images_per_second": 85.3, "elapsed_seconds": 46.0, "loss": 6.9},
    {"step": 3, "total_steps": 4, "images_per_second": 81.9, "elapsed_seconds": 52.5, "loss": 6.8},
    {"step": 4, "total_steps": 4, "images_per_second": 85.3, "elapsed_seconds": 58.0, "loss": 6.7},
])


def test_absl_timestamps_differ_by_the_seconds_between_them():
    t0 = vo.parse_absl_timestamp("I1202 21:30:01.123456 1 run.py:1] a", 2026)
    t1 = vo.parse_absl_timestamp("I1202 21:30:11.623456 1 run.py:1] b", 2026)
    assert t1 - t0 == pytest.approx(10.5)


def test_absl_timestamps_across_midnight_keep_counting():
    before = vo.parse_absl_timestamp("I1202 23:59:58.500000 1 run.py:1] a", 2026)
    after = vo.parse_absl_timestamp("I1203 00:00:02.000000 1 run.py:1] b", 2026)
    assert after - before == pytest.approx(3.5)


def test_lines_without_an_absl_prefix_have_no_timestamp():
    assert vo.parse_absl_timestamp("step 3/6 (50.0%) | 90 img/s", 2026) is None
    assert vo.parse_absl_timestamp("I0000 00:00:1796245702.588541 7888 port.cc:153] oneDNN", 2026) is None


def test_the_originals_completed_lines_give_step_times_and_nothing_else_does():
    points = vo.original_step_times(ORIGINAL_LOG, 2026)
    assert [step for step, _ in points] == [1, 2, 3]
    start = points[0][1]
    # 21:31:00.0, 21:31:12.5 and 21:31:25.0.
    assert [t - start for _, t in points] == pytest.approx([0.0, 12.5, 25.0])


def test_the_originals_seconds_per_step_leave_out_the_first_step():
    # (21:31:25.0 - 21:31:00.0) / (3 - 1) = 12.5 s; 2 x 512 / 12.5 = 81.92 views/s.
    step_seconds, timed = vo.seconds_per_step(vo.original_step_times(ORIGINAL_LOG, 2026))
    assert (step_seconds, timed) == (pytest.approx(12.5), 2)
    assert vo.views_per_second(step_seconds) == pytest.approx(81.92)


def test_our_train_log_gives_step_times_and_seconds_per_step():
    points = vo.ours_step_times(OURS_TRAIN_LOG)
    assert points == [(1, 40.0), (2, 46.0), (3, 52.5), (4, 58.0)]
    # (58.0 - 40.0) / (4 - 1) = 6.0 s; 1024 / 6 = 170.67 views/s.
    step_seconds, timed = vo.seconds_per_step(points)
    assert (step_seconds, timed) == (pytest.approx(6.0), 3)
    assert vo.views_per_second(step_seconds) == pytest.approx(1024 / 6)


def test_seconds_per_step_sorts_its_points_and_needs_two_steps():
    assert vo.seconds_per_step([(3, 30.0), (1, 10.0), (2, 21.0)]) == (pytest.approx(10.0), 2)
    with pytest.raises(vo.BenchmarkError, match="two or more steps"):
        vo.seconds_per_step([(1, 10.0)])
    with pytest.raises(vo.BenchmarkError, match="two or more steps"):
        vo.seconds_per_step([])
    with pytest.raises(vo.BenchmarkError, match="do not increase"):
        vo.seconds_per_step([(1, 10.0), (2, 10.0)])


def test_the_table_and_the_ratio_line():
    rows = [{"program": "original", "seconds_per_step": 12.5, "views_per_s": 81.92, "timed_steps": 5},
            {"program": "ours", "seconds_per_step": 6.0, "views_per_s": 1024 / 6, "timed_steps": 5}]
    table = vo.format_table(rows).splitlines()
    assert table[0].split() == ["program", "seconds/step", "views/s", "timed", "steps"]
    assert table[1].split() == ["original", "12.500", "81.9", "5"]
    assert table[2].split() == ["ours", "6.000", "170.7", "5"]
    # 170.67 / 81.92 = 2.083.
    assert vo.ratio_line((1024 / 6) / 81.92) == "ours / original: 2.08x (target >= 1.8x)"


def test_a_missing_original_dir_is_a_one_line_error_naming_the_flag(tmp_path):
    script = os.path.join(REPO, "benchmarks", "versus_original.py")
    for extra in ([], [f"--original_dir={tmp_path}"]):
        result = subprocess.run([sys.executable, script, *extra], cwd=REPO, env=environment(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "--original_dir" in result.stderr


@pytest.mark.skipif(not os.path.isfile(os.path.join(os.environ.get("SIMCLR_ORIGINAL_DIR", ""), "run.py")),
                    reason="set SIMCLR_ORIGINAL_DIR to the tf2/ directory of a google-research/simclr checkout "
                           "(the one holding run.py) to run the benchmark against the original")
def test_the_benchmark_runs_both_programs(tmp_path):
    output = tmp_path / "versus.json"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "versus_original.py"),
         f"--original_dir={os.environ['SIMCLR_ORIGINAL_DIR']}", "--steps=3", f"--output_json={output}"],
        cwd=REPO, env=environment(), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ours / original: " in result.stdout
    assert "\nmachine: " in result.stdout
    record = json.loads(output.read_text())
    assert record["machine"]["cores"] == os.cpu_count() and isinstance(record["machine"]["isa"], list)
    for program in ("original", "ours"):
        assert record[program]["timed_steps"] == 2
        assert record[program]["views_per_s"] > 0
    assert record["ratio_ours_over_original"] == pytest.approx(
        record["ours"]["views_per_s"] / record["original"]["views_per_s"])
