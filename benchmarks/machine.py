"""What a benchmark's figures depend on besides the code: the CPU, its bfloat16 hardware, the settings.

bfloat16 speed differs most between CPUs: with AMX-BF16 a ResNet-18 training step ran 2.3x
faster than in float32 on one Intel Xeon, while the same Xeon with oneDNN capped below AMX
(ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) ran bfloat16 slower than float32. So every benchmark
records and prints these, and a figure is only compared with one from the same machine line.
No TensorFlow here: the benchmarks' parent processes stay light.
"""

from __future__ import annotations

import os
import platform

from simclr_tf.cpu_info import CPUINFO, cpu_flags, cpu_model

# The instruction sets that decide float32 / bfloat16 speed on x86.
ISA_SHOWN_PREFIXES = ("avx512_bf16", "amx", "avx512f", "avx512_vnni")
# Environment variables that change what TensorFlow and oneDNN run.
ENV_SHOWN = ("TF_ENABLE_ONEDNN_OPTS", "TF_SET_ONEDNN_FPMATH_MODE", "ONEDNN_DEFAULT_FPMATH_MODE", "ONEDNN_MAX_CPU_ISA",
             "DNNL_MAX_CPU_ISA", "TF_XLA_FLAGS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
             "KMP_AFFINITY")


def describe(cpuinfo_path: str = CPUINFO) -> dict:
    """CPU model, its float32/bfloat16-relevant instruction sets, cores, Python and the load when asked."""
    isa = sorted(flag for flag in cpu_flags(cpuinfo_path) if flag.startswith(ISA_SHOWN_PREFIXES))
    return {"cpu": cpu_model(cpuinfo_path), "isa": isa, "cores": os.cpu_count(), "python": platform.python_version(),
            "sched_affinity": len(os.sched_getaffinity(0)), "load_average_at_start": list(os.getloadavg())}


def shown_env(env: dict) -> dict:
    """The subset of `env` that changes what TensorFlow and oneDNN compute with."""
    return {key: env[key] for key in ENV_SHOWN if key in env}


def summary(machine: dict, env: dict) -> str:
    """One line, e.g. `Intel(R) Xeon(R) Processor, 2 cores (amx_bf16 avx512_bf16 ...), env defaults`."""
    settings = " ".join(f"{key}={value}" for key, value in env.items()) or "defaults"
    return f"{machine['cpu']}, {machine['cores']} cores ({' '.join(machine['isa']) or 'no AVX-512'}), env {settings}"
