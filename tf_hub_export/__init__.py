"""SavedModel / TF-Hub export of a SimCLR model: a module that tf.saved_model.load,
hub.KerasLayer (feature extraction and fine-tuning) and TF Serving load without simclr_tf.

    python -m tf_hub_export --model_dir=/tmp/r18 [--checkpoint=/tmp/r18/ckpt-500] [--export_dir=...]
    python -m tf_hub_export.verify /tmp/r18/saved_model/500 --model_dir=/tmp/r18

From Python (e.g. at the end of training): `export(model, export_dir, step)`.
"""

from tf_hub_export.exporter import export, export_checkpoint
from tf_hub_export.module import SERVING_INPUT, SERVING_SIGNATURE, HubModule

__all__ = ["SERVING_INPUT", "SERVING_SIGNATURE", "HubModule", "export", "export_checkpoint"]
