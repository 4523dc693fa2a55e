"""python -m simclr_tf.import_reference SRC --model_dir=DIR: another name for python -m simclr_tf.reference_import."""

from absl import app

from simclr_tf.reference_import.__main__ import main

if __name__ == "__main__":
    app.run(main)
