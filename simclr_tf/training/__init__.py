"""Pretraining and fine-tuning under tf.distribute: model/optimizer builders, the replica step,
the multi-step loop with checkpoints and progress, and rebuilding a model from a run's checkpoint."""
