"""Learning-rate scaling with batch size, and SimCLR's linear-warmup + cosine schedule.

SimCLR (arXiv:2002.05709); google-research/simclr tf2/model.py (`WarmUpAndCosineDecay`,
`get_train_steps`). ImageNet defaults: 0.3 x batch/256 (linear) or
0.075 x sqrt(batch) (sqrt); both give 4.8 at batch 4096.
"""

from __future__ import annotations

import math

import keras

SCALINGS = ("linear", "sqrt")


def scaled_learning_rate(base_learning_rate: float, global_batch_size: int, scaling: str) -> float:
    """base x batch/256 ("linear") or base x sqrt(batch) ("sqrt")."""
    if not base_learning_rate > 0:
        raise ValueError(f"`base_learning_rate` must be > 0, got {base_learning_rate!r}.")
    if not global_batch_size > 0:
        raise ValueError(f"`global_batch_size` must be > 0, got {global_batch_size!r}.")
    if scaling == "linear":
        return base_learning_rate * global_batch_size / 256.0
    if scaling == "sqrt":
        return base_learning_rate * math.sqrt(global_batch_size)
    raise ValueError(f"`scaling` must be one of {SCALINGS}, got {scaling!r}.")


def warmup_cosine_schedule(
    base_learning_rate: float,
    global_batch_size: int,
    scaling: str,
    warmup_steps: int,
    total_steps: int,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup 0 -> scaled lr over `warmup_steps`, then cosine decay to 0 at `total_steps`.

    lr(step) = S * step / W                                   for step < W
             = S * 0.5 * (1 + cos(pi * (step - W) / (T - W)))  for W <= step <= T
             = 0                                               for step > T
    with S = scaled_learning_rate(...). This is exactly Keras's `CosineDecay`
    with initial_learning_rate=0, warmup_target=S (checked in
    tests/test_schedule.py), and equals the reference `WarmUpAndCosineDecay`.
    The result is a plain Keras schedule, so it serialises with the optimizer. With
    T <= W the learning rate never leaves the warmup (S * step / W throughout), like the
    reference's.
    """
    peak = scaled_learning_rate(base_learning_rate, global_batch_size, scaling)
    if not warmup_steps >= 0:
        raise ValueError(f"`warmup_steps` must be >= 0, got {warmup_steps!r}.")
    if not total_steps > 0:
        raise ValueError(f"`total_steps` must be > 0, got {total_steps!r}.")
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        # total_steps <= warmup_steps: the run ends inside the warmup, as the reference's
        # schedule does then (its cosine part is never reached).
        decay_steps=max(1, int(total_steps - warmup_steps)),
        alpha=0.0,
        warmup_target=float(peak),
        warmup_steps=int(warmup_steps),
        name="warmup_cosine",
    )


def steps_from_epochs(
    num_examples: int,
    global_batch_size: int,
    train_epochs: int,
    *,
    warmup_epochs: float,
    train_steps: int = 0,
) -> tuple[int, int]:
    """(total_steps, warmup_steps) exactly as the reference computes them.

    total_steps = train_steps or num_examples * train_epochs // batch + 1
    warmup_steps = int(round(warmup_epochs * num_examples // batch))
    A nonzero `train_steps` overrides the epochs; warmup always follows
    `warmup_epochs` (as in the reference).
    """
    if not num_examples > 0:
        raise ValueError(f"`num_examples` must be > 0, got {num_examples!r}.")
    if not global_batch_size > 0:
        raise ValueError(f"`global_batch_size` must be > 0, got {global_batch_size!r}.")
    if not train_epochs >= 0:
        raise ValueError(f"`train_epochs` must be >= 0, got {train_epochs!r}.")
    if not train_steps >= 0:
        raise ValueError(f"`train_steps` must be >= 0, got {train_steps!r}.")
    if not warmup_epochs >= 0:
        raise ValueError(f"`warmup_epochs` must be >= 0, got {warmup_epochs!r}.")
    total_steps = int(train_steps or num_examples * train_epochs // global_batch_size + 1)
    warmup_steps = int(round(warmup_epochs * num_examples // global_batch_size))
    return total_steps, warmup_steps
