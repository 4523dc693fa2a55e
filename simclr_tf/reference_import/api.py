"""Imports an original google-research/simclr TF2 model: as a model in memory, or as a run.

    model, config, num_classes, step = model_from_reference("gs://.../r50_1x_sk0/saved_model/")
    result = import_reference(".../ref_run/saved_model/3", "/tmp/imported")  # a simclr_tf.run model_dir
"""

from __future__ import annotations

import dataclasses

import keras

from simclr_tf.augment import AugmentConfig
from simclr_tf.config import ModelConfig, RunConfig, TrainConfig
from simclr_tf.errors import UserError
from simclr_tf.io_utils import is_remote
from simclr_tf.models import SimCLRModel
from simclr_tf.reference_import.compare import OutputDifference, output_differences, random_images
from simclr_tf.reference_import.infer import Architecture, infer_architecture
from simclr_tf.reference_import.mapping import assign, map_variables
from simclr_tf.reference_import.parse import parse_all
from simclr_tf.reference_import.read import SAVED_MODEL, ReferenceWeights, load_saved_model, read_reference
from simclr_tf.reference_import.write import check_model_dir, write_run
from simclr_tf.training.builders import build_model

DEFAULT_TOLERANCE = 1e-5


class OutputMismatchError(UserError, ValueError):
    """The imported model's outputs differ from the original SavedModel's beyond the tolerance."""

    def __init__(self, differences: dict[str, OutputDifference], tolerance: float):
        self.differences = differences
        bad = {name: d for name, d in differences.items() if not d.relative <= tolerance}
        worst = max(bad, key=lambda name: bad[name].relative)
        super().__init__(f"outputs {sorted(bad)} of the imported model differ from the original's by more than "
                         f"{tolerance:g} of their scale (worst: {worst}, relative {bad[worst].relative:.3g}, "
                         f"max abs {bad[worst].max_abs:.3g})")


@dataclasses.dataclass(frozen=True)
class LoadedReference:
    model: SimCLRModel
    architecture: Architecture
    weights: ReferenceWeights
    num_variables: int
    image_size: int


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """What import_reference wrote; `differences` is None unless the source was a SavedModel."""

    model_dir: str
    checkpoint: str
    source: str
    style: str
    architecture: Architecture
    step: int
    num_variables: int
    differences: dict[str, OutputDifference] | None


def default_image_size(config: ModelConfig) -> int:
    """32 px for the CIFAR stem (the original chooses it for image_size <= 32), else 224."""
    return 32 if config.cifar_stem else 224


def reference_architecture(src: str, *, batch_norm_decay: float = 0.9, ft_proj_selector: int = 0) -> Architecture:
    """The architecture of the original model at `src`, from its variables (nothing is built)."""
    weights = read_reference(src)
    entries, _ = parse_all(weights.arrays, weights.style == SAVED_MODEL)
    return infer_architecture(entries, weights.arrays, batch_norm_decay=batch_norm_decay,
                              ft_proj_selector=ft_proj_selector)


def load_reference(src: str, *, image_size: int | None = None, batch_norm_decay: float = 0.9,
                   train_mode: str = "pretrain", ft_proj_selector: int = 0) -> LoadedReference:
    """Reads `src`, infers its architecture, builds our model (float32, one device) and sets every weight."""
    weights = read_reference(src)
    entries, unknown = parse_all(weights.arrays, weights.style == SAVED_MODEL)
    architecture = infer_architecture(entries, weights.arrays, batch_norm_decay=batch_norm_decay,
                                      ft_proj_selector=ft_proj_selector)
    image_size = image_size or default_image_size(architecture.model)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        model = build_model(architecture.model, image_size=image_size, num_classes=architecture.num_classes,
                            train_mode=train_mode, num_replicas=1)
    finally:
        keras.config.set_dtype_policy(policy)
    placed = map_variables(entries, weights.arrays, model, unknown)
    assign(model, placed)
    return LoadedReference(model, architecture, weights, len(placed), image_size)


def model_from_reference(src: str, **options) -> tuple[SimCLRModel, ModelConfig, int | None, int]:
    """(model, its ModelConfig, number of classes or None, training step) of an original
    SimCLR SavedModel or checkpoint; `options` as load_reference's."""
    loaded = load_reference(src, **options)
    return loaded.model, loaded.architecture.model, loaded.architecture.num_classes, loaded.weights.step or 0


def verifies_by_default(src: str) -> bool:
    """The output comparison runs the original SavedModel's graph: by default only for local files."""
    return not is_remote(src)


def import_reference(src: str, model_dir: str, *, tolerance: float = DEFAULT_TOLERANCE, verify: bool | None = None,
                     compare_batch_size: int = 4, image_size: int | None = None, batch_norm_decay: float = 0.9,
                     train_mode: str = "pretrain", ft_proj_selector: int = 0) -> ImportResult:
    """Writes the original model at `src` to `model_dir` as a simclr_tf.run model_dir.

    The weights are read as data, never by running the SavedModel. With `verify` (default:
    for a local SavedModel, see `verifies_by_default`) the original module is then loaded
    and both models run on the same random images (inference mode); nothing is written if
    an output differs by more than `tolerance` x its largest magnitude (OutputMismatchError).
    """
    check_model_dir(model_dir)
    loaded = load_reference(src, image_size=image_size, batch_norm_decay=batch_norm_decay, train_mode=train_mode,
                            ft_proj_selector=ft_proj_selector)
    differences = None
    verify = verifies_by_default(src) if verify is None else verify
    if loaded.weights.style == SAVED_MODEL and verify:
        images = random_images(compare_batch_size, loaded.image_size)
        differences = output_differences(load_saved_model(loaded.weights.path), loaded.model, images)
        if any(not d.relative <= tolerance for d in differences.values()):
            raise OutputMismatchError(differences, tolerance)
    config = RunConfig(model_dir=model_dir, model=loaded.architecture.model,
                       augment=AugmentConfig.for_image_size(loaded.image_size),
                       train=TrainConfig(train_mode=train_mode))
    step = loaded.weights.step or 0
    checkpoint = write_run(loaded.model, config, step)
    return ImportResult(model_dir, checkpoint, loaded.weights.path, loaded.weights.style, loaded.architecture, step,
                        loaded.num_variables, differences)
