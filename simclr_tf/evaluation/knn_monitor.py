"""A kNN monitor for pretraining: every N steps, the weighted-kNN accuracy (Wu et al. 2018) of the
current encoder, with train-split features as the bank and eval-split features as queries.

A cheap, label-using quality signal that needs no classifier training; the labels never
reach the encoder. Costs one inference pass over the capped bank and query sets.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from simclr_tf.config import RunConfig
from simclr_tf.data import build_source
from simclr_tf.errors import ConfigError
from simclr_tf.evaluation.features import encoder_features
from simclr_tf.evaluation.knn import KNNConfig, knn_eval
from simclr_tf.models import SimCLRModel


class KNNMonitor:
    """`monitor(step)` -> {"knn_top1": ..., "knn_top5": ...}, every `every_n_steps` steps.

    A `training.trainer.Monitor`: the trainer calls it between loops of steps and leaves
    its time out of the training rate.
    """

    def __init__(self, config: RunConfig, strategy: tf.distribute.Strategy, model: SimCLRModel):
        evaluation = config.eval
        self.every_n_steps = evaluation.knn_every_n_steps
        self.strategy = strategy
        self.model = model
        self.config = config
        self.batch_size = evaluation.eval_batch_size
        self.knn = KNNConfig(k=evaluation.knn_k, temperature=evaluation.knn_temperature)
        self.bank = build_source(config.source)
        self.queries = build_source(dataclasses.replace(config.source, split=evaluation.eval_split))
        for field, source in (("SourceConfig.split", self.bank), ("EvalConfig.eval_split", self.queries)):
            if not source.num_classes:
                raise ConfigError("EvalConfig.knn_every_n_steps", f"needs labels, but {field} of {source.name} has "
                                                                  f"none for the kNN monitor")
        if self.batch_size % strategy.num_replicas_in_sync:
            raise ConfigError("EvalConfig.eval_batch_size",
                              f"is not divisible by the {strategy.num_replicas_in_sync} replicas", value=self.batch_size)
        self.bank_steps = math.ceil(evaluation.knn_bank_examples / self.batch_size)
        self.query_steps = math.ceil(evaluation.knn_query_examples / self.batch_size)

    def __call__(self, step: int) -> dict[str, float]:
        del step  # The features of the model as it is now.
        common = dict(image_size=self.config.augment.image_size, global_batch_size=self.batch_size)
        bank, bank_labels = encoder_features(self.strategy, self.model, self.bank, max_steps=self.bank_steps, **common)
        queries, query_labels = encoder_features(self.strategy, self.model, self.queries, max_steps=self.query_steps,
                                                 **common)
        result = knn_eval(bank, bank_labels, queries, query_labels, self.bank.num_classes, self.knn)
        return {"knn_top1": result.top1, "knn_top5": result.top5}
