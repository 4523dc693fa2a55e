"""SavedModel / TF-Hub export of a SimCLR encoder: a module `hub.KerasLayer` loads and fine-tunes.

    python -m tf_hub_export --model_dir=/tmp/r18 [--checkpoint=...] [--export_dir=...]
    python -m tf_hub_export.verify /tmp/r18/saved_model/97657 --model_dir=/tmp/r18
"""

from tf_hub_export.exporter import export, export_checkpoint, model_from_checkpoint
from tf_hub_export.module import OUTPUT_NAMES, SERVING_INPUT, HubModule

__all__ = ["OUTPUT_NAMES", "SERVING_INPUT", "HubModule", "export", "export_checkpoint", "model_from_checkpoint"]
