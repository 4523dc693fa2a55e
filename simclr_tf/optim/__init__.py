"""Optimisation: LARS and the batch-scaled warmup + cosine learning-rate schedule (SimCLR, arXiv:2002.05709)."""

from simclr_tf.optim.lars import LARS
from simclr_tf.optim.schedule import scaled_learning_rate, steps_from_epochs, warmup_cosine_schedule

__all__ = ["LARS", "scaled_learning_rate", "steps_from_epochs", "warmup_cosine_schedule"]
