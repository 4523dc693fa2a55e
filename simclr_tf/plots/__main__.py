"""Pictures of a run, written from its model_dir; each command prints the path(s) it wrote.

    python -m simclr_tf.plots curves --model_dir=DIR [--output=PNG]
        Training curves from DIR/train_log.jsonl and DIR/result_<step>.json, 2x2 panels: loss
        (contrastive, total), contrastive accuracy, label accuracy (online linear head, kNN
        monitor if logged, supervised head / linear eval of checkpoints), learning rate.
        PNG: {curves_width}x{curves_height} px. Default DIR/plots/curves.png.

    python -m simclr_tf.plots augmentations --model_dir=DIR [--num_images=8 --num_views=2
            --cell_size=96 --seed=SEED --output=PNG]
        The run's own training views (its dataset, split and augmentation in DIR/config.json),
        as simclr_tf.preview draws them: rows = images, columns = original, view 1, ...
        PNG: (1 + num_views) * (cell_size + {gap}) + {gap} px wide,
        {header} + num_images * (cell_size + {gap}) + {gap} px high (defaults: {grid_width}x{grid_height}).
        Default DIR/plots/augmentations.png.

    python -m simclr_tf.plots embedding --model_dir=DIR [--checkpoint=CKPT --num_examples=2000
            --output=PNG]
        t-SNE (random_state {tsne_seed}) of the encoder features h (final_avg_pool) of the newest
        checkpoint (or --checkpoint) on the run's eval split, coloured by class.
        PNG: {embedding_width}x{embedding_height} px, plus the coordinates and labels as JSON beside it.
        Default DIR/plots/embedding.png and DIR/plots/embedding.json.

Problems (no model_dir, config.json, checkpoint or logged step) end with one "error: ..."
line on stderr and exit code 1.
"""

import sys

from absl import app, flags

from simclr_tf import cli_errors
from simclr_tf.data import build_source
from simclr_tf.errors import UserError
from simclr_tf.plots import check_model_dir, curves, default_output, embedding, grid
from simclr_tf.run_dir import RunDir
from simclr_tf.training.trainer import train_augment_config

__doc__ = (__doc__ or "").format(
    curves_width=curves.PNG_SIZE[0], curves_height=curves.PNG_SIZE[1],
    grid_width=grid.grid_size(8, 2, 96)[0], grid_height=grid.grid_size(8, 2, 96)[1],
    embedding_width=embedding.PNG_SIZE[0], embedding_height=embedding.PNG_SIZE[1],
    gap=grid.GAP, header=grid.HEADER_HEIGHT, tsne_seed=embedding.TSNE_RANDOM_STATE,
)

COMMANDS = ("curves", "augmentations", "embedding")

flags.DEFINE_string("model_dir", None, "A simclr_tf.run model_dir.")
flags.DEFINE_string("output", None, "PNG to write. Default: model_dir/plots/<command>.png.")
flags.DEFINE_string("checkpoint", None, "embedding: checkpoint prefix or directory. Default: model_dir's newest.")
flags.DEFINE_integer("num_examples", 2000, "embedding: at most this many examples of the eval split (its first ones).")
flags.DEFINE_integer("num_images", 8, "augmentations: rows, the first images of the training split.")
flags.DEFINE_integer("num_views", 2, "augmentations: augmented views per image.")
flags.DEFINE_integer("cell_size", 96, "augmentations: side of each grid cell, in pixels.")
flags.DEFINE_integer("seed", None,
                     "augmentations: view seed. Default: the run's --seed, i.e. the views it trained on in epoch 0.")
FLAGS = flags.FLAGS


def write_augmentations(model_dir: str, output: str, *, num_images: int, num_views: int, cell_size: int,
                        seed: int | None = None) -> str:
    """The augmentation grid of the run's training source and augmentation settings."""
    check_model_dir(model_dir)
    config = RunDir.open(model_dir).config
    augment_config, _ = train_augment_config(config)  # What the trainer draws (crop and flip when fine-tuning).
    source = build_source(config.source)
    seed = config.train.seed if seed is None else seed
    image = grid.augmentation_grid(source, augment_config, num_images, num_views, seed, cell_size)
    grid.save_png_atomically(image, output)
    return output


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        sys.exit(f"error: give one command: {', '.join(COMMANDS)} (got {argv[1:] or 'none'})")
    command = argv[1]
    for name in ("num_examples", "num_images", "num_views", "cell_size"):
        if getattr(FLAGS, name) < 1:
            sys.exit(f"error: --{name} must be >= 1, got {getattr(FLAGS, name)}")
    model_dir = FLAGS.model_dir
    try:
        check_model_dir(model_dir)
        output = FLAGS.output or default_output(model_dir, command)
        if command == "curves":
            written = [curves.write_curves(model_dir, output)]
        elif command == "augmentations":
            written = [write_augmentations(model_dir, output, num_images=FLAGS.num_images, num_views=FLAGS.num_views,
                                           cell_size=FLAGS.cell_size, seed=FLAGS.seed)]
        else:
            written = list(embedding.write_embedding(model_dir, output, checkpoint=FLAGS.checkpoint,
                                                     num_examples=FLAGS.num_examples))
    except UserError as error:  # PlotError, RunDirError, DataSourceError, CheckpointError
        cli_errors.exit_with(error)
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
