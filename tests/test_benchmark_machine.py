"""benchmarks/machine.py: what the benchmarks record about the CPU they ran on."""

from benchmarks import machine

CPUINFO = """processor\t: 0
model name\t: Test Xeon
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16

processor\t: 1
model name\t: Test Xeon
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16
"""


def test_describe_reads_the_model_and_the_bfloat16_instruction_sets_once(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    described = machine.describe(str(cpuinfo))
    assert described["cpu"] == "Test Xeon"
    # Only the sets that decide float32/bfloat16 speed, each once although every core lists them.
    assert described["isa"] == ["amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f"]


def test_a_cpu_without_avx512_is_said_so(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Old CPU\nflags\t\t: fpu sse avx2\n")
    described = machine.describe(str(cpuinfo))
    assert described["isa"] == []
    assert machine.summary(described, {}) == f"Old CPU, {described['cores']} cores (no AVX-512), env defaults"


def test_the_summary_names_the_onednn_settings_that_change_the_speed(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    env = machine.shown_env({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "HOME": "/root", "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}
    line = machine.summary(machine.describe(str(cpuinfo)), env)
    assert line.startswith("Test Xeon, ")
    assert "amx_bf16" in line and line.endswith("env TF_ENABLE_ONEDNN_OPTS=1 ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16")
