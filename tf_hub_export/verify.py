"""python -m tf_hub_export.verify PATH [--model_dir=DIR [--checkpoint=CKPT]] [--image_size=N]

Loads an exported module with tf.saved_model.load and with hub.KerasLayer, runs one batch,
prints the output table (name, shape, dtype), and with a model_dir compares every output
against the checkpoint's in-memory model (training=False). Exits 1 on any failure.
"""

import sys

import numpy as np
from absl import app, flags

flags.DEFINE_string("model_dir", None, "The run the module came from, to compare outputs against its checkpoint.")
flags.DEFINE_string("checkpoint", None, "Checkpoint to compare against; default: the step in PATH's name, else the newest.")
flags.DEFINE_integer("image_size", None, "Side of the test images; default: the run's image_size, else 32.")
flags.DEFINE_integer("batch_size", 4, "Test images.")
flags.DEFINE_float("tolerance", 1e-5, "Largest allowed absolute difference to the in-memory model.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m tf_hub_export.verify PATH [--model_dir=DIR]")
    path = argv[1]
    import os

    import tensorflow as tf
    import tensorflow_hub as hub

    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        sys.exit(f"error: {path}: not a loadable SavedModel ({' '.join(str(error).split())[:300]})")

    reference, image_size = None, FLAGS.image_size
    if FLAGS.model_dir:
        from tf_hub_export.exporter import model_from_checkpoint

        step = os.path.basename(os.path.normpath(path))
        checkpoint = FLAGS.checkpoint or (os.path.join(FLAGS.model_dir, f"ckpt-{step}") if step.isdigit() else None)
        reference, checkpoint, run_config = model_from_checkpoint(FLAGS.model_dir, checkpoint)
        image_size = image_size or run_config["augment"]["image_size"]
    image_size = image_size or 32
    images = np.random.default_rng(0).uniform(size=(FLAGS.batch_size, image_size, image_size, 3)).astype(np.float32)

    outputs = loaded(images, training=False)
    serving = loaded.signatures["serving_default"](images=tf.constant(images))
    layer_output = hub.KerasLayer(path, trainable=False, output_key="final_avg_pool")(images)
    failures = []
    print(f"{'output':<20} {'shape':<24} dtype")
    from tf_hub_export.module import OUTPUT_NAMES

    outputs = {name: outputs[name] for name in OUTPUT_NAMES if name in outputs}
    for name, value in outputs.items():
        print(f"{name:<20} {str(tuple(value.shape)):<24} {value.dtype.name}")
        if not np.allclose(serving[name].numpy(), value.numpy(), atol=FLAGS.tolerance):
            failures.append(f"serving_default's {name} differs from __call__'s")
    if not np.allclose(layer_output.numpy(), outputs["final_avg_pool"].numpy(), atol=FLAGS.tolerance):
        failures.append("hub.KerasLayer's final_avg_pool differs from __call__'s")
    if reference is not None:
        expected = reference(images, training=False)
        worst = max(float(np.max(np.abs(np.asarray(expected[name], np.float32) - value.numpy().astype(np.float32))))
                    for name, value in outputs.items())
        print(f"max abs difference to {checkpoint}: {worst:.3g}")
        if worst > FLAGS.tolerance:
            failures.append(f"outputs differ from the checkpoint's model by {worst:.3g} > {FLAGS.tolerance}")
    if failures:
        sys.exit("error: " + "; ".join(failures))
    print(f"ok: {path} loads with tf.saved_model.load and hub.KerasLayer")


if __name__ == "__main__":
    app.run(main)
