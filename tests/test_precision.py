"""--precision=auto: which policy for which devices, and what a run records."""

import json
import os

import pytest
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, run_cli
from simclr_tf.config import RunConfig, TrainConfig
from simclr_tf.cpu_info import cpu_flags
from simclr_tf.errors import ConfigError
from simclr_tf.precision import choose_precision, replica_device_kind, resolve_precision
from simclr_tf.training.trainer import Trainer


@pytest.mark.parametrize(
    "kind, facts, policy, reason_has",
    [
        ("TPU", {}, "mixed_bfloat16", "TPU"),
        ("GPU", {"gpu_compute_capabilities": [(8, 0), (9, 0)]}, "mixed_bfloat16", "8.0, 9.0"),
        ("GPU", {"gpu_compute_capabilities": [(8, 0), (7, 5)]}, "float32", "7.5"),  # one old GPU slows all
        ("GPU", {"gpu_compute_capabilities": [(7, 0)]}, "float32", ">= 8.0"),
        ("GPU", {"gpu_compute_capabilities": [None]}, "float32", "unknown"),
        ("GPU", {}, "float32", "none"),
        ("CPU", {"cpu_flags": frozenset({"avx2", "avx512f", "avx512_bf16"})}, "mixed_bfloat16", "avx512_bf16"),
        ("CPU", {"cpu_flags": frozenset({"amx_bf16", "amx_tile"})}, "mixed_bfloat16", "amx_bf16"),
        ("CPU", {"cpu_flags": frozenset({"avx2", "avx512f", "avx512_vnni"})}, "float32", "emulated"),
        ("CPU", {"cpu_flags": frozenset({"avx512_bf16"}), "onednn": False}, "float32", "TF_ENABLE_ONEDNN_OPTS=0"),
    ],
)
def test_auto_picks_bfloat16_only_where_the_hardware_computes_it(kind, facts, policy, reason_has):
    choice = choose_precision(kind, **facts)
    assert (choice.policy, reason_has in choice.reason) == (policy, True), choice.reason
    assert choice.reason.startswith("auto: ")


def test_an_unknown_device_kind_is_an_error_naming_the_argument():
    with pytest.raises(ValueError, match="device_kind"):
        choose_precision("NPU")


def test_cpu_flags_come_from_the_flags_line_of_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"
                       "bugs\t\t: sysret_ss_attrs avx512_bf16_fake\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(cpuinfo)) == frozenset({"fpu", "sse2", "avx512f", "avx512_bf16"})
    assert cpu_flags(str(tmp_path / "absent")) == frozenset()


def test_the_default_strategy_computes_where_the_devices_are():
    expected = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    assert replica_device_kind(tf.distribute.get_strategy()) == expected
    explicit = resolve_precision("mixed_float16", tf.distribute.get_strategy())
    assert (explicit.policy, explicit.reason) == ("mixed_float16", "set explicitly")


def test_a_trainer_refuses_an_unresolved_auto(tmp_path):
    config = RunConfig(model_dir=str(tmp_path), train=TrainConfig(precision="auto"))
    with pytest.raises(ConfigError, match=r"TrainConfig.precision.*resolve_precision"):
        Trainer(config, tf.distribute.get_strategy())


@pytest.mark.skipif(os.environ.get("SIMCLR_TEST_DEVICE", "CPU").upper() == "GPU", reason="the oracle is the CPU's")
def test_the_default_precision_is_chosen_for_this_cpu_logged_and_recorded(tmp_path):
    with open("/proc/cpuinfo") as cpuinfo:  # An oracle independent of the parser: any bfloat16 flag anywhere.
        words = set(cpuinfo.read().split())
    expected = "mixed_bfloat16" if words & {"avx512_bf16", "amx_bf16"} else "float32"
    model_dir = str(tmp_path / "run")
    result = check_ok(run_cli(*TINY_FLAGS, "--precision=auto", f"--model_dir={model_dir}", "--train_steps=1",
                              "--export_hub_module=false"))
    assert f"precision: {expected} (auto: " in result.stdout
    with open(os.path.join(model_dir, "config.json")) as f:
        train = json.load(f)["train"]
    assert train["precision"] == expected
    assert train["precision_reason"].startswith("auto: ")
