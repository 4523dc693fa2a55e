"""Which compute precision a run uses when TrainConfig.precision is "auto".

bfloat16 halves the memory traffic of convolutions and matmuls where the hardware computes
it natively, and needs no loss scaling; where it is emulated it is slower than float32.
So "auto" is mixed_bfloat16 on TPUs, on NVIDIA GPUs of compute capability 8.0 or more
(Ampere and later), and on x86 CPUs with AVX512_BF16 or AMX-BF16 instructions when oneDNN
is on (TensorFlow's default); float32 everywhere else. Measured on 2 cores for ResNet-18 at
32 px (benchmarks/train_throughput.py): 1.6x the float32 training throughput on an AMD EPYC
with AVX512_BF16, 2.3x on an Intel Xeon with AMX-BF16, and 18x slower with oneDNN off. The
instruction sets do not settle it everywhere: the same Xeon with oneDNN held below AMX
(ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) ran bfloat16 at 0.64x float32, so the choice and its
reason are logged, and "float32" can always be forced.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import tensorflow as tf

from simclr_tf.cpu_info import cpu_flags

AUTO = "auto"
BFLOAT16 = "mixed_bfloat16"
FLOAT32 = "float32"
# Ampere: the first NVIDIA GPUs whose tensor cores compute bfloat16.
MIN_GPU_COMPUTE_CAPABILITY = (8, 0)
# /proc/cpuinfo flag names of the x86 instructions that compute bfloat16 dot products.
CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    policy: str  # a Keras dtype policy name
    reason: str  # one line for the log and config.json


def choose_precision(
    device_kind: str,
    *,
    gpu_compute_capabilities: Sequence[tuple[int, int] | None] = (),
    cpu_flags: frozenset[str] = frozenset(),
    onednn: bool = True,
) -> PrecisionChoice:
    """The "auto" policy for replicas on `device_kind` ("TPU", "GPU" or "CPU"), from the facts given."""
    if device_kind == "TPU":
        return PrecisionChoice(BFLOAT16, "auto: TPUs compute bfloat16 natively")
    if device_kind == "GPU":
        wanted = ".".join(map(str, MIN_GPU_COMPUTE_CAPABILITY))
        found = ", ".join("unknown" if c is None else ".".join(map(str, c)) for c in gpu_compute_capabilities)
        if gpu_compute_capabilities and all(c is not None and tuple(c) >= MIN_GPU_COMPUTE_CAPABILITY
                                            for c in gpu_compute_capabilities):
            return PrecisionChoice(BFLOAT16, f"auto: every GPU has compute capability >= {wanted} ({found})")
        return PrecisionChoice(FLOAT32, f"auto: not every GPU has compute capability >= {wanted} ({found or 'none'}), "
                                        f"which bfloat16 needs to be fast")
    if device_kind == "CPU":
        native = sorted(flag for flag in CPU_BFLOAT16_FLAGS if flag in cpu_flags)
        if native and onednn:
            return PrecisionChoice(BFLOAT16, f"auto: the CPU computes bfloat16 natively ({', '.join(native)}, oneDNN)")
        if native:
            return PrecisionChoice(FLOAT32, "auto: the CPU has bfloat16 instructions, but TF_ENABLE_ONEDNN_OPTS=0 "
                                            "turns off the oneDNN kernels that use them")
        return PrecisionChoice(FLOAT32, "auto: the CPU has no AVX512_BF16 or AMX-BF16, so bfloat16 would be "
                                        "emulated (slower than float32)")
    raise ValueError(f"`device_kind` must be TPU, GPU or CPU, got {device_kind!r}.")


def resolve_precision(requested: str, strategy: tf.distribute.Strategy) -> PrecisionChoice:
    """`requested` itself unless it is "auto"; then the choice for the devices `strategy` runs on."""
    if requested != AUTO:
        return PrecisionChoice(requested, "set explicitly")
    kind = replica_device_kind(strategy)
    gpus = tf.config.list_physical_devices("GPU") if kind == "GPU" else []
    return choose_precision(
        kind,
        gpu_compute_capabilities=[tf.config.experimental.get_device_details(gpu).get("compute_capability")
                                  for gpu in gpus],
        cpu_flags=cpu_flags() if kind == "CPU" else frozenset(),
        onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
    )


def replica_device_kind(strategy: tf.distribute.Strategy) -> str:
    """"TPU", "GPU" or "CPU": where the replicas of `strategy` compute."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPU"
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # The default strategy has none: ops go to the first GPU if there is one.
        return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    return "GPU" if any("GPU" in tf.DeviceSpec.from_string(d).device_type for d in devices) else "CPU"
