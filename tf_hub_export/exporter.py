"""From an in-memory model, or a run's checkpoint, to a versioned SavedModel directory."""

from __future__ import annotations

import tensorflow as tf

from simclr_tf.models import SimCLRModel
from simclr_tf.run_dir import RunDir, step_of
from simclr_tf.training.checkpoints import model_from_run
from tf_hub_export.atomic import write_version
from tf_hub_export.module import SERVING_SIGNATURE, HubModule


def export(model: SimCLRModel, export_dir: str, step: int, *, include_projection_head: bool = True,
           freeze_batch_norm: bool = False, keep: int = 1) -> str:
    """Writes `model` as export_dir/<step>/ atomically, keeps the newest `keep`; returns the path.

    The module computes in the model's dtype policy and returns float32; after
    mixed-precision training, `export_checkpoint` gives a float32 module instead.
    """
    module = HubModule(model, include_projection_head=include_projection_head, freeze_batch_norm=freeze_batch_norm)

    def write(directory: str) -> None:
        tf.saved_model.save(module, directory, signatures={SERVING_SIGNATURE: module.serve})

    return write_version(export_dir, step, write, keep=keep)


def export_checkpoint(model_dir: str, *, checkpoint: str | None = None, export_dir: str | None = None,
                      include_projection_head: bool = True, freeze_batch_norm: bool = False,
                      keep: int | None = None) -> str:
    """Exports a run's checkpoint (default: its newest) to export_dir (default model_dir/saved_model)/<step>.

    `keep`: modules to keep in export_dir; default the run's ExportConfig.keep_hub_module_max.
    """
    run = RunDir.open(model_dir)
    model, path = model_from_run(run, checkpoint)
    keep = run.config.export.keep_hub_module_max if keep is None else keep
    return export(model, export_dir or run.export_dir, step_of(path),
                  include_projection_head=include_projection_head, freeze_batch_norm=freeze_batch_norm, keep=keep)
