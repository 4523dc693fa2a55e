"""benchmarks/gpu_check.sh in its dry mode: every step, at CPU sizes, so the script cannot rot."""

import json
import os
import re
import subprocess
import sys

from cli_helpers import REPO, environment

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.sh")


def test_the_gpu_tests_it_runs_exist():
    with open(SCRIPT) as f:
        listed = re.findall(r"tests/[\w/]+\.py", f.read())
    assert len(listed) >= 6
    missing = [path for path in listed if not os.path.exists(os.path.join(REPO, path))]
    assert not missing


def test_dry_run_runs_every_step_and_writes_the_figures(tmp_path):
    env = environment(GPU_CHECK_DRY_RUN="1", PYTHON=sys.executable)
    result = subprocess.run(["bash", SCRIPT, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.split("== summary (exit 0)", 1)[1]
    assert "--precision=auto chooses" in summary
    assert "tests: 1 passed" in summary
    assert "throughput at batch 4" in summary
    with open(tmp_path / "throughput.json") as f:
        variants = [v["variant"] for v in json.load(f)["variants"]]
    assert variants == ["float32", "mixed_bfloat16_xla"]
    with open(tmp_path / "pipeline.json") as f:
        assert json.load(f)
