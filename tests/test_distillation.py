"""Distillation (--train_mode=distill): the loss against NumPy, the step's loss terms, and the CLI
with a frozen teacher (a run, or its exported module) on 1 and 4 replicas, resumed and exported."""

import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, error_line, run_cli, train_log
from simclr_tf.losses import distillation_cross_entropy, distillation_loss


def numpy_distillation(teacher, student, temperature):
    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return -(softmax(teacher / temperature) * np.log(softmax(student / temperature))).sum(axis=1)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 10.0])
def test_distillation_loss_equals_numpy_and_its_gradient_the_closed_form(temperature):
    rng = np.random.default_rng(0)
    teacher = rng.normal(0, 3, (6, 10)).astype(np.float64)
    student = tf.constant(rng.normal(0, 3, (6, 10)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(student)
        loss = distillation_loss(tf.constant(teacher, tf.float32), student, temperature)
    expected = numpy_distillation(teacher, student.numpy().astype(np.float64), temperature)
    assert float(loss) == pytest.approx(expected.mean(), rel=1e-5)
    np.testing.assert_allclose(distillation_cross_entropy(tf.constant(teacher, tf.float32), student, temperature),
                               expected, rtol=1e-5)
    # d/ds of mean_i -sum_y p_t log softmax(s / tau) = (softmax(s / tau) - p_t) / (tau * n).
    p_t = np.exp(teacher / temperature) / np.exp(teacher / temperature).sum(axis=1, keepdims=True)
    s = student.numpy().astype(np.float64) / temperature
    p_s = np.exp(s - s.max(axis=1, keepdims=True))
    p_s /= p_s.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tape.gradient(loss, student), (p_s - p_t) / (temperature * 6), rtol=1e-4, atol=1e-7)


def test_no_gradient_reaches_the_teacher_and_bad_arguments_are_named():
    teacher = tf.constant([[1.0, 2.0, 0.5]])
    with tf.GradientTape() as tape:
        tape.watch(teacher)
        loss = distillation_loss(teacher, tf.constant([[0.0, 1.0, 2.0]]), 1.0)
    assert tape.gradient(loss, teacher) is None
    with pytest.raises(ValueError, match="`temperature` must be > 0, got 0"):
        distillation_loss(teacher, teacher, 0)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(teacher, tf.zeros([1, 4]), 1.0)


# The teacher: a tiny pretraining run whose online linear head gives 10-class logits.
STEPS = 3
DISTILL = [*TINY_FLAGS, "--train_mode=distill", f"--train_steps={STEPS}", "--checkpoint_steps=3",
           "--nofused_batch_norm", "--warmup_epochs=0.002"]


def files_digest(directory):
    digest = {}
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                digest[os.path.relpath(os.path.join(root, name), directory)] = hashlib.sha256(f.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("teacher"))
    check_ok(run_cli(*TINY_FLAGS, "--train_steps=4", "--checkpoint_steps=4", f"--model_dir={model_dir}"))
    return model_dir


@pytest.fixture(scope="module")
def distilled(teacher, tmp_path_factory):
    before = files_digest(teacher)
    model_dir = str(tmp_path_factory.mktemp("student"))
    first = check_ok(run_cli(*DISTILL, f"--teacher={teacher}", "--distill_label_weight=0.25",
                             "--distill_temperature=2", f"--model_dir={model_dir}"))
    return dict(model_dir=model_dir, stdout=first.stdout, log=train_log(model_dir), teacher_before=before)


def test_a_distilled_run_trains_with_the_teacher_frozen_and_not_saved(teacher, distilled):
    assert f"teacher: {teacher}/ckpt-4 (ResNet-18 0.125x), frozen, 10 classes; distillation temperature 2, " \
           f"label weight 0.25" in distilled["stdout"]
    log = distilled["log"]
    assert [r["step"] for r in log] == [1, 2, 3]
    for record in log:
        # (1 - alpha) * distillation + alpha * cross-entropy + weight decay.
        expected = 0.75 * record["distill_loss"] + 0.25 * record["supervised_loss"] + record["weight_decay"]
        assert record["total_loss"] == pytest.approx(expected, rel=1e-5)
        assert 0 <= record["teacher_agreement"] <= 1
    assert len({r["distill_loss"] for r in log}) == STEPS
    assert files_digest(teacher) == distilled["teacher_before"]  # Byte for byte.
    student = tf.train.latest_checkpoint(distilled["model_dir"])
    assert student.endswith("ckpt-3")
    teacher_variables = {name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(teacher))}
    student_variables = {name for name, _ in tf.train.list_variables(student)}
    # Same architecture, so the same model variable names; the teacher adds nothing of its own.
    model_keys = {n for n in student_variables if n.startswith("model/")}
    assert model_keys == {n for n in teacher_variables if n.startswith("model/")}
    assert os.listdir(os.path.join(distilled["model_dir"], "saved_model")) == ["3"]


def test_four_mirrored_replicas_give_the_one_replica_distillation_losses(teacher, distilled, tmp_path):
    check_ok(run_cli(*DISTILL, f"--teacher={teacher}", "--distill_label_weight=0.25", "--distill_temperature=2",
                     f"--model_dir={tmp_path}", "--cpu_replicas=4", "--noexport_hub_module"))
    log, expected = train_log(str(tmp_path)), distilled["log"]
    for name in ("distill_loss", "supervised_loss", "total_loss"):
        np.testing.assert_allclose([r[name] for r in log], [r[name] for r in expected], rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_an_exported_module_teaches_the_same_as_its_run(teacher, distilled, tmp_path):
    exported = os.path.join(teacher, "saved_model", "4")
    assert os.path.isdir(exported)
    check_ok(run_cli(*DISTILL, f"--teacher={exported}", "--distill_label_weight=0.25", "--distill_temperature=2",
                     "--train_steps=1", f"--model_dir={tmp_path}", "--noexport_hub_module"))
    assert train_log(str(tmp_path))[0]["distill_loss"] == pytest.approx(distilled["log"][0]["distill_loss"], rel=1e-5)


def test_a_distilled_run_resumes(teacher, distilled, tmp_path):
    flags = [*DISTILL, f"--teacher={teacher}", "--noexport_hub_module", "--checkpoint_steps=2"]
    check_ok(run_cli(*flags, "--train_steps=2", f"--model_dir={tmp_path}"))
    resumed = check_ok(run_cli(*flags, "--train_steps=4", f"--model_dir={tmp_path}"))
    assert "resumed from" in resumed.stdout and [r["step"] for r in train_log(str(tmp_path))] == [1, 2, 3, 4]
    other = run_cli(*flags, "--train_steps=4", f"--model_dir={tmp_path}", f"--teacher={tmp_path}")
    assert other.returncode == 1 and "teacher: model_dir has" in error_line(other)


@pytest.mark.parametrize("flags, expected", [
    (["--train_mode=distill"], "--teacher must name the teacher when --train_mode='distill', got None"),
    (["--teacher=/tmp/x"], "--teacher is only used by --train_mode='distill', got '/tmp/x'"),
    (["--train_mode=distill", "--teacher={tmp}"], "--teacher={tmp}: is neither a simclr_tf.run model_dir"),
    (["--train_mode=distill", "--teacher=/tmp/t", "--distill_temperature=0"], "--distill_temperature must be > 0"),
])
def test_bad_distillation_flags_are_named(flags, expected, tmp_path):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    result = run_cli(*TINY_FLAGS, "--train_steps=1", f"--model_dir={tmp_path}/run", *flags)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert expected.replace("{tmp}", str(tmp_path)) in error_line(result)


def test_only_labelled_images_add_the_cross_entropy():
    # SimCLRv2 eq. 3 on a batch where images 1 and 3 are unlabelled (-1): alpha x the labelled images'
    # cross-entropy (each weighing 1/batch) + (1 - alpha) x distillation on every image, against NumPy.
    from simclr_tf.training.step import StepConfig, metrics_from_sums, per_example_terms

    rng = np.random.default_rng(1)
    student, teacher = rng.normal(0, 2, (4, 5)), rng.normal(0, 2, (4, 5))
    labels = np.array([2, -1, 0, -1])
    config = StepConfig(train_mode="distill", temperature=0.5, hidden_norm=True, weight_decay=0.0,
                        optimizer_name="momentum", supervised=True, distill_temperature=2.0, distill_label_weight=0.3)
    losses, sums = per_example_terms({"logits_sup": tf.constant(student, tf.float32)}, tf.constant(labels), 1, config,
                                     tf.constant(teacher, tf.float32))
    log_softmax = student - np.log(np.exp(student).sum(axis=1, keepdims=True))
    cross_entropy = np.array([-log_softmax[i, label] if label >= 0 else 0.0 for i, label in enumerate(labels)])
    expected = 0.3 * cross_entropy + 0.7 * numpy_distillation(teacher, student, 2.0)
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    metrics = metrics_from_sums(sums, tf.constant(4.0))
    assert float(metrics["supervised_loss"]) == pytest.approx(cross_entropy.sum() / 2, rel=1e-5)  # Over the labelled.
    correct = [np.argmax(student[i]) == labels[i] for i in (0, 2)]
    assert float(metrics["supervised_acc"]) == pytest.approx(np.mean(correct))
    assert float(metrics["distill_loss"]) == pytest.approx(numpy_distillation(teacher, student, 2.0).mean(), rel=1e-5)
    assert "labelled_views" not in metrics


def test_keep_labels_of_keeps_every_image_and_only_the_chosen_labels():
    from simclr_tf.data import SourceConfig, build_source
    from simclr_tf.data.subset import keep_labels_of

    source = build_source(SourceConfig(dataset="fashion_mnist_offline", split="test"))
    kept = keep_labels_of(source, np.array([3, 7]))
    assert kept.num_examples == source.num_examples == 10000
    original = {int(i): int(label) for i, _, label in source.make_dataset(None).take(10)}
    masked = {int(i): int(label) for i, _, label in kept.make_dataset(None).take(10)}
    assert masked == {i: (original[i] if i in (3, 7) else -1) for i in range(10)}


def test_distillation_with_a_label_fraction_uses_every_image(teacher, tmp_path):
    result = check_ok(run_cli(*DISTILL, f"--teacher={teacher}", "--distill_label_weight=0.5", "--label_fraction=0.01",
                              f"--model_dir={tmp_path}", "--train_steps=1", "--noexport_hub_module"))
    assert "labelled images: 600 of 60000 (0.01 of each class, seed 0) add the cross-entropy" in result.stdout
    assert "steps 0/1" in result.stdout and "60000 examples" in result.stdout
    refused = run_cli(*DISTILL, f"--teacher={teacher}", "--label_fraction=0.01", f"--model_dir={tmp_path}/alpha0")
    assert refused.returncode == 1 and "--distill_label_weight > 0" in error_line(refused)
