"""Import of the original google-research/simclr TF2 models (SavedModels, checkpoints).

read (SRC -> variables) -> parse (names -> network positions) -> infer (ModelConfig)
-> mapping (onto our model's variables) -> compare (outputs vs the SavedModel) -> write
(a simclr_tf.run model_dir). CLI: python -m simclr_tf.reference_import SRC --model_dir=DIR.
"""

from simclr_tf.reference_import.api import (
    DEFAULT_TOLERANCE,
    ImportResult,
    LoadedReference,
    OutputMismatchError,
    import_reference,
    load_reference,
    model_from_reference,
    reference_architecture,
)
from simclr_tf.reference_import.compare import OutputDifference, output_differences
from simclr_tf.reference_import.infer import Architecture, ArchitectureError
from simclr_tf.reference_import.mapping import MappingError
from simclr_tf.reference_import.read import ReferenceSourceError, is_reference, read_reference
from simclr_tf.reference_import.write import ModelDirError

__all__ = [
    "DEFAULT_TOLERANCE",
    "Architecture",
    "ArchitectureError",
    "ImportResult",
    "LoadedReference",
    "MappingError",
    "ModelDirError",
    "OutputDifference",
    "OutputMismatchError",
    "ReferenceSourceError",
    "import_reference",
    "is_reference",
    "load_reference",
    "model_from_reference",
    "output_differences",
    "read_reference",
    "reference_architecture",
]
