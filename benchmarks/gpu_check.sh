#!/usr/bin/env bash
# GPU check, at most ~8 minutes on one GPU machine, from the repository root after scripts/setup.sh:
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]      # on the GPU machine
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh /tmp/dry   # on any CPU: every step, tiny
#
# 1. the device (nvidia-smi, what TensorFlow sees, its compute capability and --precision=auto's choice);
# 2. the distributed-math and training tests on the GPU (SIMCLR_TEST_DEVICE=GPU: the replica tests
#    run on 4 logical GPUs carved out of the first GPU, the CLI tests see the GPU);
# 3. training throughput, ResNet-50 224 px bfloat16 with and without --jit_compile, at the largest
#    global batch (of 512, 256, 128, 64, 32) whose step fits in the GPU's memory;
# 4. the input pipeline alone on the host's cores at 224 px: is it the bottleneck for this GPU?
# Figures go to OUTPUT_DIR (default /tmp/gpu_check) as JSON and logs; the summary is printed last.
# Each step has its own time limit, so one that hangs cannot eat the others' time.
set -uo pipefail

OUT=${1:-/tmp/gpu_check}
PYTHON=${PYTHON:-.venv/bin/python}
DRY=${GPU_CHECK_DRY_RUN:-0}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD TF_CPP_MIN_LOG_LEVEL=2

if [[ $DRY == 1 ]]; then
  # The same commands at sizes a CPU runs in seconds: this mode is what keeps the script from rotting.
  TEST_DEVICE=CPU
  TESTS=(tests/test_losses.py::test_same_value_inside_tf_function)
  BATCHES=(4)
  VARIANTS=mixed_bfloat16_xla  # (train_throughput.py adds float32) the XLA path is the likelier to rot
  THROUGHPUT=(--config=r18_32 --resnet_depth=18 --image_size=32 --steps=1 --warmup_steps=1
              --end_to_end_steps=0 --matmul_size=0 --pipeline_seconds=0 --seconds=5)
  PIPELINE=(--sizes=32 --seconds=1 --batch_size=8)
  LIMIT_TESTS=120 LIMIT_PROBE=120 LIMIT_THROUGHPUT=300 LIMIT_PIPELINE=120
else
  TEST_DEVICE=GPU
  TESTS=(tests/test_distributed.py tests/test_losses.py tests/test_lars.py tests/test_fused_batch_norm.py
         tests/test_training_parts.py tests/test_run_cli.py)
  BATCHES=(512 256 128 64 32)
  VARIANTS=mixed_bfloat16,mixed_bfloat16_xla
  THROUGHPUT=(--config=r50_224 --steps=10 --warmup_steps=2 --end_to_end_steps=5 --pipeline_seconds=20 --seconds=60)
  PIPELINE=(--sizes=224 --seconds=20 --batch_size=256)
  LIMIT_TESTS=200 LIMIT_PROBE=60 LIMIT_THROUGHPUT=200 LIMIT_PIPELINE=60
fi

step() { echo; echo "== $* ($(date +%H:%M:%S))"; }
status=0
summary=()

step "1/4 device"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>/dev/null || echo "nvidia-smi: not found (no NVIDIA driver here)"
"$PYTHON" - <<'PY' | tee "$OUT/device.txt"
import tensorflow as tf
from simclr_tf.precision import resolve_precision
gpus = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "| CUDA build:", tf.test.is_built_with_cuda())
for gpu in gpus:
    details = tf.config.experimental.get_device_details(gpu)
    print(gpu.name, details.get("device_name"), "compute capability", details.get("compute_capability"))
if not gpus:
    print("TensorFlow sees no GPU")
choice = resolve_precision("auto", tf.distribute.get_strategy())
print(f"--precision=auto chooses {choice.policy} ({choice.reason})")
PY
summary+=("device: $(head -3 "$OUT/device.txt" | tr '\n' ' ')")

step "2/4 tests on $TEST_DEVICE: ${TESTS[*]}"
if SIMCLR_TEST_DEVICE=$TEST_DEVICE timeout "$LIMIT_TESTS" "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
    > "$OUT/tests.log" 2>&1; then
  summary+=("tests: $(tail -1 "$OUT/tests.log")")
else
  status=1; summary+=("tests FAILED or timed out (exit $?): $(tail -1 "$OUT/tests.log"); see $OUT/tests.log")
fi
tail -5 "$OUT/tests.log"

step "3/4 training throughput, largest batch first"
batch=""
for candidate in "${BATCHES[@]}"; do
  # One short bfloat16 variant: does a step of this batch fit in memory?
  if timeout "$LIMIT_PROBE" "$PYTHON" benchmarks/train_throughput.py "${THROUGHPUT[@]}" --batch_size="$candidate" \
      --variants=mixed_bfloat16 --steps=1 --warmup_steps=1 --end_to_end_steps=0 --matmul_size=0 --pipeline_seconds=0 \
      > "$OUT/probe_$candidate.log" 2>&1; then
    batch=$candidate; break
  fi
  echo "batch $candidate: does not fit or failed (tail of $OUT/probe_$candidate.log):"; tail -2 "$OUT/probe_$candidate.log"
done
if [[ -z $batch ]]; then
  status=1; summary+=("throughput: no batch of ${BATCHES[*]} ran")
else
  echo "largest batch that runs: $batch"
  if timeout "$LIMIT_THROUGHPUT" "$PYTHON" benchmarks/train_throughput.py "${THROUGHPUT[@]}" --batch_size="$batch" \
      --variants="$VARIANTS" --output_json="$OUT/throughput.json" > "$OUT/throughput.log" 2>&1; then
    summary+=("throughput at batch $batch: $OUT/throughput.json")
  else
    status=1; summary+=("throughput FAILED or timed out at batch $batch: see $OUT/throughput.log")
  fi
  sed -n '/^variant /,/^====/p' "$OUT/throughput.log"
fi

step "4/4 input pipeline alone on $(nproc) host cores"
if timeout "$LIMIT_PIPELINE" "$PYTHON" benchmarks/input_pipeline.py "${PIPELINE[@]}" --json="$OUT/pipeline.json" \
    > "$OUT/pipeline.log" 2>&1; then
  summary+=("pipeline: $(tail -1 "$OUT/pipeline.log")")
else
  status=1; summary+=("pipeline FAILED or timed out: see $OUT/pipeline.log")
fi
tail -3 "$OUT/pipeline.log"

step "summary (exit $status)"
printf '%s\n' "${summary[@]}"
exit $status
