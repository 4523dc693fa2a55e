"""Writes notebooks/simclr_colab_tpu.ipynb from the cells below (clean: no outputs).

    python notebooks/build_notebook.py

Edit the notebook here, not in Jupyter: the .ipynb is this script's output, committed so
Colab can open it, and tests/test_notebook.py checks the two agree. Cell ids are fixed
names, so the test finds cells by id and rebuilding gives the same file.
"""

import os

import nbformat

NOTEBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_colab_tpu.ipynb")

TITLE = """\
# SimCLR on a Colab TPU with `simclr_tf`

SimCLR (Chen et al., 2020) learns image representations without labels: two random augmentations
(crop, flip, colour distortion, ...) of the same image are pulled together and pushed away from the
views of every other image in the batch (the NT-Xent contrastive loss). A linear classifier on the
frozen features then measures how good they are, and the encoder can be fine-tuned on labels.

This notebook pretrains a ResNet on CIFAR-10 with [`simclr_tf`](https://github.com/<org>/simclr_tf),
shows the augmentations and live training curves, runs the linear evaluation, exports a TF-Hub module
and fine-tunes it through `hub.KerasLayer`.

**Use a TPU:** *Runtime > Change runtime type > TPU* (a GPU or the CPU work too, only slower).
Then *Runtime > Run all*. The defaults (ResNet-18, 100 epochs) take roughly an hour on a TPU."""

INSTALL_NOTE = """\
## 1. Install

In Colab this clones the repository and installs it with its dependencies (TensorFlow 2.21, Keras 3,
tensorflow-datasets, tensorflow-hub, tf-keras). It is skipped when `simclr_tf` is already importable.
If pip replaced a package Colab had already imported, use *Runtime > Restart session* and run all
cells again (the install is then skipped). On a TPU VM, TensorFlow needs its TPU build
(`tensorflow-tpu` of the same version, with `libtpu`) if the runtime does not ship one."""

INSTALL = """\
import importlib.util
import subprocess
import sys

REPO_URL = "https://github.com/<org>/simclr_tf"  # Replace <org> with the repository's owner.
CLONE_DIR = "/content/simclr_tf"

if importlib.util.find_spec("simclr_tf") is None:
    subprocess.run(["git", "clone", "--depth=1", REPO_URL, CLONE_DIR], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE_DIR], check=True)
    sys.path.insert(0, CLONE_DIR)  # This kernel started before the editable install existed.
    print(f"installed simclr_tf from {REPO_URL}")
else:
    print("simclr_tf is already installed; skipping the install")"""

PARAMETERS_NOTE = """\
## 2. Parameters

Everything the run depends on is here (papermill can override this cell: it is tagged `parameters`).
The defaults are the paper's CIFAR-10 settings (Appendix B.9, as `flags/cifar10_resnet18_pretrain.cfg`)
with 100 instead of 1000 epochs.

**Storage on TPUs.** Colab's TPU runtime is a TPU VM: the TPU is attached to this machine, and
`MODEL_DIR` / `DATA_DIR` on local disk work. With a Cloud TPU *node* (a TPU in another machine, e.g.
`TPU_NAME="grpc://..."`), the TPU workers cannot read this machine's disk: checkpoints (`MODEL_DIR`)
and datasets (`DATA_DIR`) must then be in a `gs://` bucket the TPU can access.

`MODEL_DIR` is where checkpoints, `train_log.jsonl`, results and the TF-Hub module go. Running the
notebook again with the same `MODEL_DIR` resumes from its newest checkpoint (delete it to start over)."""

PARAMETERS = """\
# Data: a tensorflow-datasets name ("cifar10", "stl10", ...), "folder:/path/to/images", or
# "fashion_mnist_offline" (Debian's Fashion-MNIST files, no network: what the tests use).
DATASET = "cifar10"
TRAIN_SPLIT = "train"
EVAL_SPLIT = "test"
DATA_DIR = None  # tfds data_dir (None: ~/tensorflow_datasets). With a TPU node: gs://...
DOWNLOAD = True  # Let tfds download and prepare DATASET when it is missing.
CACHE_DATASET = True  # Keep decoded images in memory (CIFAR-10: about 150 MB).

# Pretraining.
IMAGE_SIZE = 32  # <= 32 px: CIFAR stem (3x3, no max-pool), colour strength 0.5, no blur.
RESNET_DEPTH = 18
WIDTH = 1.0  # Width multiplier.
BATCH = 512  # Global batch, split over the TPU cores / GPUs.
EPOCHS = 100
TRAIN_STEPS = 0  # > 0: train this many steps instead of EPOCHS.
LEARNING_RATE = 1.0  # LARS, scaled by BATCH / 256.
WARMUP_EPOCHS = 10
WEIGHT_DECAY = 1e-4
TEMPERATURE = 0.5
STEPS_PER_LOOP = 0  # Steps per tf.function call = per point of the curves; 0: one epoch.
PRECISION = "auto"  # "auto": mixed_bfloat16 where the TPU, GPU or CPU computes it natively, else float32.
SEED = 0

MODEL_DIR = "/content/simclr_cifar10"  # With a TPU node: gs://your-bucket/simclr_cifar10.
TPU_NAME = None  # None: the TPU of this runtime; or a Cloud TPU name / grpc:// address.

# Evaluation and fine-tuning.
EVAL_BATCH = 256
EVAL_STEPS = 0  # Batches for the online linear head's evaluation; 0: the whole EVAL_SPLIT.
LINEAR_EVAL_EPOCHS = 100  # Linear classifier on the frozen encoder's features.
FINETUNE_STEPS = 500
FINETUNE_BATCH = 128  # Must be even per replica on CPU (see the fine-tuning section).
FINETUNE_LEARNING_RATE = 0.05
FINETUNE_EVAL_EXAMPLES = 0  # 0: the whole EVAL_SPLIT.
PREVIEW_IMAGES = 8  # Rows of the augmentation grid."""

SETUP = """\
import dataclasses
import json
import os
import time

import keras
import tensorflow as tf

# TensorFlow's INFO lines (checkpoint sharding, ...) would drown the progress lines.
tf.get_logger().setLevel("WARNING")
print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}")"""

STRATEGY_NOTE = """\
## 3. Devices

A TPU if this runtime has one (`TPUStrategy` over its cores), else `MirroredStrategy` over several
GPUs, else one GPU or the CPU. The batch is split over the replicas."""

STRATEGY = """\
import glob

from simclr_tf.config import StrategyConfig
from simclr_tf.precision import resolve_precision
from simclr_tf.strategy import build_strategy, describe


def tpu_names_to_try():
    \"\"\"TPU_NAME if given; else the runtime's TPU (TPU_NAME / COLAB_TPU_ADDR), and "local"
    when a TPU VM's devices are present.\"\"\"
    if TPU_NAME:
        return [TPU_NAME]
    has_tpu_devices = bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))
    return [None, "local"] if has_tpu_devices else [None]


strategy = None
for name in tpu_names_to_try():
    try:
        strategy_config = StrategyConfig(use_tpu=True, tpu_name=name)
        strategy = build_strategy(strategy_config)
        break
    except (ValueError, tf.errors.NotFoundError) as error:  # build_strategy's StrategyError is a ValueError.
        print(f"no TPU: {str(error).splitlines()[0][:200]}")
if strategy is None:
    strategy_config = StrategyConfig()
    strategy = build_strategy(strategy_config)  # MirroredStrategy over several GPUs, else the default.

precision_choice = resolve_precision(PRECISION, strategy)
precision = precision_choice.policy
keras.mixed_precision.set_global_policy(precision)
print(f"strategy: {describe(strategy)}; precision {precision} ({precision_choice.reason})")
print("GPUs:", [d.name for d in tf.config.list_logical_devices("GPU")] or "none")"""

CONFIG_NOTE = """\
## 4. The run's configuration and its augmentations

One frozen `RunConfig`, validated when it is built, written to `MODEL_DIR/config.json` (the export
reads it back), exactly as `python -m simclr_tf.run` does. Below it, a few training images (left)
next to two random views each, as pretraining draws them."""

CONFIG = """\
from IPython.display import display

from simclr_tf.augment import AugmentConfig
from simclr_tf.config import EvalConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig
from simclr_tf.data import SourceConfig, build_source
from simclr_tf.plots.grid import image_grid
from simclr_tf.preview_views import preview_rows

source_config = SourceConfig(dataset=DATASET, split=TRAIN_SPLIT, data_dir=DATA_DIR, download=DOWNLOAD)
augment_config = AugmentConfig.for_image_size(IMAGE_SIZE)  # The paper's settings for this size.
config = RunConfig(
    model_dir=MODEL_DIR,
    mode="train_then_eval",
    source=source_config,
    augment=augment_config,
    model=ModelConfig(resnet_depth=RESNET_DEPTH, width_multiplier=WIDTH, cifar_stem=IMAGE_SIZE <= 32,
                      num_proj_layers=2),
    optimizer=OptimizerConfig(optimizer="lars", learning_rate=LEARNING_RATE, warmup_epochs=WARMUP_EPOCHS,
                              weight_decay=WEIGHT_DECAY),
    train=TrainConfig(train_batch_size=BATCH, train_epochs=EPOCHS, train_steps=TRAIN_STEPS,
                      temperature=TEMPERATURE, steps_per_loop=STEPS_PER_LOOP, cache_dataset=CACHE_DATASET,
                      precision=precision, seed=SEED),
    eval=EvalConfig(eval_split=EVAL_SPLIT, eval_batch_size=EVAL_BATCH, eval_steps=EVAL_STEPS,
                    linear_eval=True, linear_eval_epochs=LINEAR_EVAL_EPOCHS),
    strategy=strategy_config,
)
tf.io.gfile.makedirs(MODEL_DIR)
config.write(os.path.join(MODEL_DIR, "config.json"))
print(f"wrote {MODEL_DIR}/config.json")

train_source = build_source(source_config)  # With DOWNLOAD, tfds downloads and prepares DATASET once.
print(f"{train_source.name}:{TRAIN_SPLIT}: {train_source.num_examples} images, {train_source.num_classes} classes")
rows = preview_rows(train_source, augment_config, num_images=PREVIEW_IMAGES, num_views=2, seed=SEED)
display(image_grid(rows, ["original", "view 1", "view 2"], cell_size=96))"""

PRETRAIN_NOTE = """\
## 5. Pretraining, with live curves

`Trainer.train()` runs the SimCLR loop: two views per image, the ResNet encoder, the projection head,
NT-Xent over the global batch, LARS with warmup and cosine decay, a checkpoint every epoch. An online
linear head learns on `stop_gradient` of the features as a running accuracy estimate. After each loop
of steps the trainer appends a record to `MODEL_DIR/train_log.jsonl`; the printer below redraws the
curves from it (at most every few seconds, so drawing does not slow training).
TensorBoard works too: `%load_ext tensorboard` then `%tensorboard --logdir {MODEL_DIR}`."""

PRETRAIN = """\
import matplotlib.pyplot as plt
from IPython.display import clear_output

from simclr_tf.training.trainer import Trainer


class LiveCurves:
    \"\"\"A Trainer printer: keeps the header and newest progress line, and redraws loss,
    contrastive accuracy and learning rate from train_log.jsonl at most every `every_seconds`.\"\"\"

    PANELS = (("contrast_loss", "contrastive loss"), ("contrast_acc", "accuracy on training batches"),
              ("learning_rate", "learning rate"))

    def __init__(self, log_path, every_seconds=5.0):
        self.log_path = log_path
        self.every_seconds = every_seconds
        self.last_draw = -float("inf")
        self.messages = []  # Lines that are not progress lines (the run's header, ...).
        self.progress = None

    def __call__(self, line):
        if not line.startswith("step "):
            self.messages.append(line)
            print(line)
            return
        self.progress = line
        if time.monotonic() - self.last_draw >= self.every_seconds:
            self.draw()

    def records(self):
        if not tf.io.gfile.exists(self.log_path):
            return []
        with tf.io.gfile.GFile(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def draw(self):
        records = self.records()
        clear_output(wait=True)
        if records:
            fig, axes = plt.subplots(1, len(self.PANELS), figsize=(13, 3))
            steps = [r["step"] for r in records]
            for ax, (key, title) in zip(axes, self.PANELS):
                ax.plot(steps, [r.get(key, float("nan")) for r in records], marker=".")
                if key == "contrast_acc" and "supervised_acc" in records[-1]:
                    ax.plot(steps, [r.get("supervised_acc", float("nan")) for r in records], marker=".")
                    ax.legend(["contrastive", "online linear head"], fontsize=8)
                ax.set_title(title)
                ax.set_xlabel("step")
            fig.tight_layout()
            display(fig)
            plt.close(fig)
        print("\\n".join(self.messages + [self.progress or ""]))
        self.last_draw = time.monotonic()


# Same initial weights for a seed, whatever the number of replicas (as simclr_tf.run does).
keras.utils.set_random_seed(SEED)
curves = LiveCurves(os.path.join(MODEL_DIR, "train_log.jsonl"))
trainer = Trainer(config, strategy, printer=curves)
summary = trainer.train()
curves.draw()  # The final state, whatever the throttling skipped.
print(f"pretrained to step {summary['step']}/{summary['total_steps']} in {summary['seconds']:.0f} s "
      f"({summary.get('images_per_second', 0.0):.0f} img/s); checkpoint {trainer.manager.latest_checkpoint}")"""

LINEAR_EVAL_NOTE = """\
## 6. Linear evaluation

The paper's protocol: freeze the encoder, extract features `h` (`final_avg_pool`) of the training and
test images (eval preprocessing, no augmentation), train a linear classifier on the training features,
report its top-1 / top-5 accuracy on the test split. The online head's accuracy is printed first."""

LINEAR_EVAL = """\
from simclr_tf.evaluation.checkpoint_eval import evaluate

result = evaluate(config, strategy, printer=print)
linear = result["linear_eval"]
print(f"linear evaluation on {DATASET}:{EVAL_SPLIT} at step {result['global_step']}: "
      f"top-1 {linear['top1']:.2%}, top-5 {linear['top5']:.2%}")"""

EXPORT_NOTE = """\
## 7. Export a TF-Hub module

`tf_hub_export.export_checkpoint` rebuilds the model in float32 from the newest checkpoint and writes
a SavedModel to `MODEL_DIR/saved_model/<step>/`. It needs TensorFlow only to load (not `simclr_tf`):
`module(images, training=False)` returns a dict of named outputs (`final_avg_pool` is `h`), and the
`serving_default` signature serves it. Images are float32 RGB in [0, 1]."""

EXPORT = """\
from tf_hub_export import export_checkpoint

hub_path = export_checkpoint(MODEL_DIR)
print(f"exported TF-Hub module {hub_path}")"""

FINETUNE_NOTE = """\
## 8. Fine-tune the module through `hub.KerasLayer`

The exported encoder, every weight trainable, under a new linear layer, in a `tf_keras` (Keras 2)
model as `hub.KerasLayer` requires. Inputs are eval-preprocessed images: float32 in [0, 1].

**Known issue:** TensorFlow 2.21's oneDNN kernels on CPU crash (abort, double free or segfault) in the
gradient of the 1x1 stride-2 shortcut convolutions when the batch is odd; the per-replica fine-tuning
batch must therefore be even. GPUs and TPUs are not affected."""

FINETUNE = """\
import tensorflow_hub as hub
import tf_keras

from simclr_tf.augment import preprocess_for_eval, to_unit_float

replicas = strategy.num_replicas_in_sync
assert FINETUNE_BATCH % (2 * replicas) == 0, (
    f"FINETUNE_BATCH={FINETUNE_BATCH} must be an even number per replica ({replicas} replicas): TensorFlow 2.21's "
    f"oneDNN convolution gradients crash on CPU with odd batches; use a multiple of {2 * replicas}")


def labelled_images(split):
    \"\"\"(source, dataset of (image float32 [0, 1], label)) of a split, eval-preprocessed.\"\"\"
    source = build_source(dataclasses.replace(source_config, split=split))
    images = source.make_dataset(None).map(
        lambda index, image, label: (preprocess_for_eval(to_unit_float(image), IMAGE_SIZE), label),
        num_parallel_calls=tf.data.AUTOTUNE)
    return source, images


train_labelled, train_images = labelled_images(TRAIN_SPLIT)
eval_labelled, eval_images = labelled_images(EVAL_SPLIT)
train_images = (train_images.shuffle(10_000, seed=SEED).repeat()
                .batch(FINETUNE_BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
if FINETUNE_EVAL_EXAMPLES:
    eval_images = eval_images.take(FINETUNE_EVAL_EXAMPLES)
eval_images = eval_images.batch(EVAL_BATCH).prefetch(tf.data.AUTOTUNE)

with strategy.scope():
    encoder = hub.KerasLayer(hub_path, trainable=True, output_key="final_avg_pool")
    classifier = tf_keras.Sequential([
        tf_keras.layers.InputLayer(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
        encoder,
        tf_keras.layers.Dense(train_labelled.num_classes),
    ])
    classifier.compile(
        optimizer=tf_keras.optimizers.SGD(FINETUNE_LEARNING_RATE, momentum=0.9),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
classifier.fit(train_images, steps_per_epoch=FINETUNE_STEPS, epochs=1, verbose=2)
_, accuracy = classifier.evaluate(eval_images, verbose=0)
print(f"fine-tuned for {FINETUNE_STEPS} steps of {FINETUNE_BATCH} images: accuracy {accuracy:.2%} "
      f"on {eval_labelled.name}:{EVAL_SPLIT}")"""

NEXT = """\
## Next

- Train longer (`EPOCHS = 1000` is the paper's CIFAR-10 setting) or wider (`WIDTH = 2.0`, `RESNET_DEPTH = 50`).
- The same run from a shell: `python -m simclr_tf.run --flagfile=flags/cifar10_resnet18_pretrain.cfg --model_dir=...`.
- Load the module anywhere with `tf.saved_model.load(hub_path)` or `hub.KerasLayer(hub_path)`; see the README."""


def build() -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [
        ("title", md(TITLE)),
        ("install-note", md(INSTALL_NOTE)),
        ("install", code(INSTALL)),
        ("parameters-note", md(PARAMETERS_NOTE)),
        ("parameters", code(PARAMETERS, metadata={"tags": ["parameters"]})),
        ("setup", code(SETUP)),
        ("strategy-note", md(STRATEGY_NOTE)),
        ("strategy", code(STRATEGY)),
        ("config-note", md(CONFIG_NOTE)),
        ("config", code(CONFIG)),
        ("pretrain-note", md(PRETRAIN_NOTE)),
        ("pretrain", code(PRETRAIN)),
        ("linear-eval-note", md(LINEAR_EVAL_NOTE)),
        ("linear-eval", code(LINEAR_EVAL)),
        ("export-note", md(EXPORT_NOTE)),
        ("export", code(EXPORT)),
        ("finetune-note", md(FINETUNE_NOTE)),
        ("finetune", code(FINETUNE)),
        ("next", md(NEXT)),
    ]
    for cell_id, cell in cells:
        cell.id = cell_id
    notebook = nbformat.v4.new_notebook(
        cells=[cell for _, cell in cells],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "accelerator": "TPU",
            "colab": {"provenance": []},
        },
    )
    nbformat.validate(notebook)
    return notebook


if __name__ == "__main__":
    nbformat.write(build(), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
