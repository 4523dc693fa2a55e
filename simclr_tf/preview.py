"""Writes a PNG grid of augmented views: rows = images, columns = original, view 1, view 2, ...

    python -m simclr_tf.preview --output=preview.png
    python -m simclr_tf.preview --dataset=folder:/photos --image_size=224 --num_views=4
    python -m simclr_tf.preview --augmentations=crop,cutout --image_size=32 --output=cutout.png
"""

from absl import app, flags

from simclr_tf import cli_errors, flag_defs
from simclr_tf.data import DataSourceError, build_source
from simclr_tf.errors import UserError
from simclr_tf.plots.grid import augmentation_grid, save_png_atomically

flag_defs.define_source_flags()
flag_defs.define_augment_flags()
flags.DEFINE_integer("num_images", 8, "Rows: how many images of the split to show (its first ones).")
flags.DEFINE_integer("num_views", 2, "Augmented views per image.")
flags.DEFINE_integer("seed", 0, "Augmentation seed; the same seed draws the same views.")
flags.DEFINE_integer("cell_size", 96, "Side of each grid cell in the PNG, in pixels.")
flags.DEFINE_string("output", "preview.png", "Where to write the PNG.")
flags.FLAGS.set_default("image_size", 32)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("num_images", "num_views", "cell_size"):
        if getattr(FLAGS, name) < 1:
            raise app.UsageError(f"--{name} must be >= 1, got {getattr(FLAGS, name)}")
    try:
        augment_config = flag_defs.augment_config_from_flags(FLAGS)
        source = build_source(flag_defs.source_config_from_flags(FLAGS, FLAGS.train_split))
        grid = augmentation_grid(source, augment_config, FLAGS.num_images, FLAGS.num_views, FLAGS.seed, FLAGS.cell_size)
    except DataSourceError as error:
        cli_errors.exit_with(error, prefix=f"--dataset={FLAGS.dataset}: ")
    except UserError as error:
        cli_errors.exit_with(error)
    save_png_atomically(grid, FLAGS.output)
    num_rows = min(FLAGS.num_images, source.num_examples)
    print(f"wrote {FLAGS.output}: {num_rows} images of {source.name} x ({FLAGS.num_views} views + original), "
          f"ops {','.join(augment_config.ops)}, image_size {augment_config.image_size}")


if __name__ == "__main__":
    app.run(main)
