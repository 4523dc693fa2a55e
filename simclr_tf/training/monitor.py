"""A kNN monitor for pretraining: every N steps, the weighted-kNN accuracy (Wu et al. 2018) of the
current encoder, with train-split features as the bank and eval-split features as queries.

A cheap, label-using quality signal that needs no classifier training; the labels never
reach the encoder. Costs one inference pass over the capped bank and query sets.
"""

from __future__ import annotations

import dataclasses
import math
import time

import tensorflow as tf

from simclr_tf.config import RunConfig
from simclr_tf.data import build_source
from simclr_tf.evaluation.knn import KNNConfig, knn_eval
from simclr_tf.models import SimCLRModel
from simclr_tf.training.evaluate import encoder_features


class KNNMonitor:
    """`monitor(step)` -> {"knn_top1": ..., "knn_top5": ..., "knn_seconds": ...}."""

    def __init__(self, config: RunConfig, strategy: tf.distribute.Strategy, model: SimCLRModel):
        evaluation = config.eval
        self.strategy = strategy
        self.model = model
        self.config = config
        self.batch_size = evaluation.eval_batch_size
        self.knn = KNNConfig(k=evaluation.knn_k, temperature=evaluation.knn_temperature)
        self.bank = build_source(config.source)
        self.queries = build_source(dataclasses.replace(config.source, split=evaluation.eval_split))
        for flag, source in (("--train_split", self.bank), ("--eval_split", self.queries)):
            if not source.num_classes:
                raise ValueError(f"--knn_every_n_steps: {flag} of {source.name} has no labels for the kNN monitor")
        if self.batch_size % strategy.num_replicas_in_sync:
            raise ValueError(f"--eval_batch_size={self.batch_size} is not divisible by the "
                             f"{strategy.num_replicas_in_sync} replicas")
        self.bank_steps = math.ceil(evaluation.knn_bank_examples / self.batch_size)
        self.query_steps = math.ceil(evaluation.knn_query_examples / self.batch_size)

    def __call__(self, step: int) -> dict[str, float]:
        started = time.monotonic()
        bank, bank_labels = encoder_features(self.strategy, self.model, self.bank, self.config, self.bank_steps)
        queries, query_labels = encoder_features(self.strategy, self.model, self.queries, self.config, self.query_steps)
        result = knn_eval(bank, bank_labels, queries, query_labels, self.bank.num_classes, self.knn)
        return {"knn_top1": result.top1, "knn_top5": result.top5, "knn_seconds": time.monotonic() - started}
