"""Evaluate a frozen encoder: linear classifier and/or kNN on a labelled dataset.

    python -m simclr_tf.evaluation --model_dir=/tmp/r18                      # the run's dataset
    python -m simclr_tf.evaluation --model_dir=/tmp/r18 --protocols=linear,knn --feature_cache_dir=/tmp/f
    python -m simclr_tf.evaluation --module=/tmp/r18/saved_model/500 --image_size=32 --dataset=cifar10
    python -m simclr_tf.evaluation --model_dir=/tmp/r18 --classifier=lbfgs --dataset=dtd --image_size=224

Prints one line per protocol and writes the results as JSON (--results; default
model_dir/eval_<task>.json, or ./eval_<task>.json for a module).
"""

import os

from absl import app, flags

from simclr_tf import cli_errors, flag_defs
from simclr_tf.data import DataSourceError
from simclr_tf.errors import UserError
from simclr_tf.evaluation.features import load_encoder
from simclr_tf.evaluation.protocols import run_task
from simclr_tf.evaluation.task_flags import define_task_flags, task_from_flags
from simclr_tf.io_utils import write_json_atomically

flags.DEFINE_string("model_dir", None, "A simclr_tf.run model_dir: evaluate its newest checkpoint (or --checkpoint).")
flags.DEFINE_string("checkpoint", None, "Checkpoint of --model_dir to evaluate (ckpt-<step> prefix).")
flags.DEFINE_string("module", None, "An exported SavedModel / TF-Hub module directory to evaluate instead.")
flags.DEFINE_string("feature_cache_dir", None, "Cache features here: classifier sweeps then skip the encoder.")
flags.DEFINE_string("results", None, "Where the JSON results go.")
define_task_flags(flags.FLAGS)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    flag_defs.quiet_logging(FLAGS)

    try:
        encoder, run_dataset = load_encoder(FLAGS.model_dir, FLAGS.checkpoint, FLAGS.module, FLAGS.image_size)
        task = task_from_flags(FLAGS, default_dataset=run_dataset)
        print(f"evaluating {encoder.describe} on {task.name}: {', '.join(task.protocols)}", flush=True)
        result = run_task(encoder, task, cache_dir=FLAGS.feature_cache_dir,
                          printer=lambda line: print(line, flush=True))
    except UserError as error:  # FlagError, DataSourceError, RunDirError, CheckpointError too.
        prefix = f"--dataset={FLAGS.dataset}: " if isinstance(error, DataSourceError) and FLAGS.dataset else ""
        cli_errors.exit_with(error, prefix=prefix)
    safe_name = task.name.replace("/", "_").replace(":", "_")
    path = FLAGS.results or os.path.join(FLAGS.model_dir or ".", f"eval_{safe_name}.json")
    write_json_atomically(path, result)
    print(f"results: {path}")


if __name__ == "__main__":
    app.run(main)
