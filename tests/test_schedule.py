"""Learning-rate scaling and the warmup + cosine schedule against closed forms."""

import math

import keras
import pytest

from simclr_tf.optim import scaled_learning_rate, steps_from_epochs, warmup_cosine_schedule


def test_scaled_learning_rate_by_hand():
    assert scaled_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8, rel=1e-12)
    assert scaled_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8, rel=1e-12)  # 0.075 * 64
    assert scaled_learning_rate(1.0, 512, "linear") == pytest.approx(2.0, rel=1e-12)
    assert scaled_learning_rate(0.5, 256, "sqrt") == pytest.approx(8.0, rel=1e-12)  # 0.5 * 16


def _lr(schedule, step):
    return float(schedule(step))


def test_warmup_cosine_matches_closed_form():
    base, batch, warmup, total = 0.3, 1024, 40, 240
    peak = 0.3 * 1024 / 256  # 1.2
    schedule = warmup_cosine_schedule(base, batch, "linear", warmup, total)

    def cosine(step):  # reference: CosineDecay(peak, total - warmup)(step - warmup)
        progress = min(step - warmup, total - warmup) / (total - warmup)
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))

    expected = {
        0: 0.0,
        10: peak * 10 / 40,
        20: peak / 2,
        39: peak * 39 / 40,
        40: peak,  # end of warmup = start of the cosine
        140: peak / 2,  # middle of the cosine phase
        190: cosine(190),
        239: cosine(239),
        240: 0.0,
        1000: 0.0,  # stays at 0 after the end
    }
    for step, lr in expected.items():
        assert _lr(schedule, step) == pytest.approx(lr, rel=1e-6, abs=1e-7), step


def test_zero_warmup_starts_at_peak():
    schedule = warmup_cosine_schedule(0.075, 4096, "sqrt", 0, 100)
    assert _lr(schedule, 0) == pytest.approx(4.8, rel=1e-6)
    assert _lr(schedule, 50) == pytest.approx(2.4, rel=1e-6)
    assert _lr(schedule, 25) == pytest.approx(4.8 * 0.5 * (1 + math.cos(math.pi / 4)), rel=1e-6)
    assert _lr(schedule, 100) == pytest.approx(0.0, abs=1e-7)


def test_a_run_shorter_than_its_warmup_stays_in_the_warmup_like_the_reference():
    # The original README's CIFAR-10 command with --train_steps=3: batch 512, 10 warmup epochs
    # of 50,000 images = 976 warmup steps. The reference: lr = step / 976 * 2.0 for step < 976.
    total, warmup = steps_from_epochs(50_000, 512, 1000, warmup_epochs=10, train_steps=3)
    schedule = warmup_cosine_schedule(1.0, 512, "linear", warmup, total)
    for step in range(total):
        assert _lr(schedule, step) == pytest.approx(2.0 * step / 976, rel=1e-6, abs=1e-9), step


def test_schedule_is_a_serialisable_keras_schedule():
    schedule = warmup_cosine_schedule(1.0, 512, "linear", 5, 50)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    revived = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    for step in (0, 3, 5, 27, 50):
        assert _lr(revived, step) == _lr(schedule, step)


def test_steps_from_epochs_like_the_reference():
    # ImageNet: 1,281,167 images, batch 4096, 100 epochs, 10 warmup epochs.
    # total = 1281167 * 100 // 4096 + 1 = 31278 + 1; warmup = round(12811670 // 4096) = 3127.
    assert steps_from_epochs(1_281_167, 4096, 100, warmup_epochs=10) == (31_279, 3_127)
    # CIFAR-10: 50,000 images, batch 512, 1000 epochs, 10 warmup epochs.
    assert steps_from_epochs(50_000, 512, 1000, warmup_epochs=10) == (97_657, 976)
    # Fractional warmup epochs: 0.5 * 50000 // 512 = 48.0.
    assert steps_from_epochs(50_000, 512, 1000, warmup_epochs=0.5) == (97_657, 48)
    # train_steps overrides the epochs, not the warmup.
    assert steps_from_epochs(50_000, 512, 1000, warmup_epochs=10, train_steps=2000) == (2000, 976)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: scaled_learning_rate(0.3, 4096, "cubic"), "scaling"),
        (lambda: scaled_learning_rate(0.0, 4096, "linear"), "base_learning_rate"),
        (lambda: scaled_learning_rate(0.3, 0, "sqrt"), "global_batch_size"),
        (lambda: warmup_cosine_schedule(0.3, 256, "linear", -1, 10), "warmup_steps"),
        (lambda: warmup_cosine_schedule(0.3, 256, "linear", 0, 0), "total_steps"),
        (lambda: warmup_cosine_schedule(0.3, 256, "sqr", 1, 10), "scaling"),
        (lambda: steps_from_epochs(0, 256, 10, warmup_epochs=1), "num_examples"),
        (lambda: steps_from_epochs(100, 0, 10, warmup_epochs=1), "global_batch_size"),
        (lambda: steps_from_epochs(100, 10, -1, warmup_epochs=1), "train_epochs"),
        (lambda: steps_from_epochs(100, 10, 10, warmup_epochs=-1), "warmup_epochs"),
        (lambda: steps_from_epochs(100, 10, 10, warmup_epochs=1, train_steps=-5), "train_steps"),
    ],
)
def test_invalid_arguments_are_named(call, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
