"""Import of the original google-research/simclr TF2 models (simclr_tf.reference_import).

The oracle is the original code's own SavedModel (../shared/fixtures/reference_tf2_r18_cifar,
see its README): our imported model must compute the same named outputs, and the
SavedModel and the checkpoint of that run (two naming schemes) must import to the same
weights.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import REPO, error_line
from export_helpers import run_module, tree
from simclr_tf.models import OUTPUT_NAMES
from simclr_tf.models.fused_batch_norm import FusedBatchNormalization
from simclr_tf.reference_import import (
    MappingError,
    ModelDirError,
    import_reference,
    load_reference,
)
from simclr_tf.reference_import.compare import difference, random_images
from simclr_tf.reference_import.mapping import map_variables
from simclr_tf.reference_import.parse import parse_all
from simclr_tf.reference_import.read import ReferenceSourceError
from simclr_tf.run_dir import RunDir
from simclr_tf.training.checkpoints import model_from_run

FIXTURE = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "reference_tf2_r18_cifar")
SAVED_MODEL = os.path.join(FIXTURE, "saved_model")  # holds 3/, the newest step
CHECKPOINT = os.path.join(FIXTURE, "ckpt-3")
SOURCES = {"saved_model": SAVED_MODEL, "checkpoint": CHECKPOINT}
TOLERANCE = 1e-5  # of each output's largest magnitude
# Batch statistics: the original's SyncBatchNormalization (global_bn) computes the variance as
# E[x^2] - E[x]^2, as imported runs do (ModelConfig.one_pass_batch_norm). Our default one-device
# BN computes it in two passes, and the float32 rounding of the two differs by this much.
TWO_PASS_TOLERANCE = 1e-4

pytestmark = pytest.mark.skipif(not os.path.isdir(FIXTURE), reason=f"fixture of the original code absent: {FIXTURE}")


def within(differences: dict[str, float], tolerance: float) -> bool:
    return all(value <= tolerance for value in differences.values())  # NaN is not within


def relative_differences(ours: dict, theirs: dict) -> dict[str, float]:
    assert set(theirs) == set(OUTPUT_NAMES) and set(OUTPUT_NAMES) <= set(ours)
    return {name: difference(np.asarray(ours[name]), np.asarray(theirs[name])).relative for name in OUTPUT_NAMES}


def outputs(model, images, training):
    return {name: np.asarray(value) for name, value in model(images, training=training).items()}


def original_outputs(module, images, training):
    return {name: np.asarray(value) for name, value in module(images, trainable=training).items()}


def moving_statistics(model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy() for v in model.variables if "moving_" in v.path}


@pytest.fixture(scope="module")
def images():
    return random_images(16, 32, seed=1)


@pytest.fixture(scope="module")
def original(images):
    """The original module's outputs (inference, then batch statistics) and its BN moving
    statistics after that one training-mode call, by variable name."""
    module = tf.saved_model.load(os.path.join(SAVED_MODEL, "3"))
    inference = original_outputs(module, images, False)
    batch_statistics = original_outputs(module, images, True)
    updated = {v.name: v.numpy() for v in tf.train.TrackableView(module).descendants()
               if isinstance(v, tf.Variable) and "moving_" in v.name}
    return inference, batch_statistics, updated


@pytest.fixture(scope="module", params=list(SOURCES))
def imported(request, images):
    """What our model imported from one source computes: inference outputs, the moving
    statistics as imported, batch-statistics outputs (as imported: the original's one-pass
    arithmetic; then our default two-pass BN) and the moving statistics after the first
    training-mode call."""
    loaded = load_reference(SOURCES[request.param])
    model = loaded.model
    assert loaded.architecture.model.one_pass_batch_norm
    imported_statistics = moving_statistics(model)
    inference = outputs(model, images, False)
    one_pass = outputs(model, images, True)
    updated = moving_statistics(model)
    for layer in model._flatten_layers():
        if isinstance(layer, FusedBatchNormalization):
            layer.synchronized = False  # Our default one-device BN: two passes.
    two_pass = outputs(model, images, True)
    return dict(source=request.param, loaded=loaded, inference=inference, imported_statistics=imported_statistics,
                two_pass=two_pass, one_pass=one_pass, updated=updated)


def test_architecture_and_step_are_inferred_from_the_variables(imported):
    loaded = imported["loaded"]
    config = loaded.architecture.model
    assert (config.resnet_depth, config.width_multiplier, config.cifar_stem) == (18, 1.0, True)
    assert (config.sk_ratio, config.se_ratio) == (0.0, 0.0)
    assert (config.proj_head_mode, config.num_proj_layers, config.proj_out_dim) == ("nonlinear", 3, 128)
    assert loaded.architecture.num_classes == 10
    assert loaded.weights.step == 3
    assert loaded.num_variables == len(loaded.model.variables) == 121


def test_every_output_equals_the_original_in_inference_mode(imported, original):
    differences = relative_differences(imported["inference"], original[0])
    assert within(differences, TOLERANCE), differences


def test_every_output_equals_the_original_with_batch_statistics(imported, original):
    one_pass = relative_differences(imported["one_pass"], original[1])
    assert within(one_pass, TOLERANCE), one_pass
    two_pass = relative_differences(imported["two_pass"], original[1])
    assert within(two_pass, TWO_PASS_TOLERANCE), two_pass


def test_batch_norm_moving_statistics_are_the_originals_variable_by_variable(imported, original):
    statistics = imported["imported_statistics"]
    # Independent of the mapping: names written out by hand, from both formats.
    block = "simclr/resnet/block_group2/block1"
    by_hand = {
        f"{block}/shortcut_batch_normalization/moving_mean": (
            "model/resnet_model/block_groups/1/layers/0/shortcut_layers/1/bn/moving_mean",
            "resnet/block_group2/residual_block_2/batch_norm_relu_6/sync_batch_normalization_6/moving_mean:0"),
        f"{block}/last_batch_normalization/moving_variance": (
            "model/resnet_model/block_groups/1/layers/0/conv2d_bn_layers/3/bn/moving_variance",
            "resnet/block_group2/residual_block_2/batch_norm_relu_8/sync_batch_normalization_8/moving_variance:0"),
        "simclr/projection_head/nl_2_batch_normalization/moving_mean": (
            "model/_projection_head/linear_layers/2/bn_relu/bn/moving_mean",
            "projection_head/nl_2/batch_norm_relu_23/sync_batch_normalization_23/moving_mean:0"),
    }
    reader = tf.train.load_checkpoint(CHECKPOINT)
    for ours, (key, name) in by_hand.items():
        np.testing.assert_array_equal(statistics[ours], reader.get_tensor(f"{key}/.ATTRIBUTES/VARIABLE_VALUE"))
        if imported["source"] == "saved_model":
            np.testing.assert_array_equal(statistics[ours], imported["loaded"].weights.arrays[name])
    # After one training-mode call on the same images, every moving statistic moved as the original's.
    theirs_by_ours = {ours: original[2][name] for ours, (name, _) in mapped_names(imported).items() if "moving_" in ours}
    assert set(theirs_by_ours) == set(imported["updated"]) and len(theirs_by_ours) == 48  # 24 BN layers
    for path, value in imported["updated"].items():
        np.testing.assert_allclose(value, theirs_by_ours[path], rtol=1e-5, atol=1e-6, err_msg=path)
        assert not np.array_equal(value, statistics[path]), path


def mapped_names(imported) -> dict:
    """{our path: (SavedModel variable name, array)}: the SavedModel import's mapping."""
    loaded = load_reference(SAVED_MODEL) if imported["source"] != "saved_model" else imported["loaded"]
    entries, unknown = parse_all(loaded.weights.arrays, True)
    return map_variables(entries, loaded.weights.arrays, loaded.model, unknown)


def test_saved_model_and_checkpoint_import_to_the_same_weights():
    from_saved_model, from_checkpoint = load_reference(os.path.join(SAVED_MODEL, "3")), load_reference(CHECKPOINT)
    ours = {v.path: v.numpy() for v in from_checkpoint.model.variables}
    for variable in from_saved_model.model.variables:
        np.testing.assert_array_equal(variable.numpy(), ours[variable.path], err_msg=variable.path)


def test_the_written_run_opens_and_computes_the_same_outputs(tmp_path, images, original):
    model_dir = str(tmp_path / "imported")
    result = import_reference(CHECKPOINT, model_dir)
    assert result.differences is None and result.step == 3 and result.checkpoint == os.path.join(model_dir, "ckpt-3")
    assert sorted(os.listdir(tmp_path)) == ["imported"]  # no staging directory left behind
    run = RunDir.open(model_dir)
    assert run.config.model == result.architecture.model and run.config.augment.image_size == 32
    model, checkpoint = model_from_run(run)
    assert checkpoint == result.checkpoint
    differences = relative_differences(outputs(model, images, False), original[0])
    assert within(differences, TOLERANCE), differences
    # The run keeps the original's BN arithmetic: batch statistics as the original computes them.
    assert run.config.model.one_pass_batch_norm
    differences = relative_differences(outputs(model, images, True), original[1])
    assert within(differences, TOLERANCE), differences


def test_the_weights_are_read_as_data_and_the_saved_model_runs_only_to_verify(tmp_path, monkeypatch):
    """A SavedModel of unknown origin may hold ops that read or write files: loading it runs its graph."""
    from simclr_tf.reference_import.api import verifies_by_default

    loads = []
    monkeypatch.setattr(tf.saved_model, "load", lambda path, *args, **kwargs: loads.append(path) or 1 / 0)
    loaded = load_reference(SAVED_MODEL)
    assert loaded.num_variables == 121 and loaded.weights.step == 3 and loads == []
    result = import_reference(SAVED_MODEL, str(tmp_path / "unverified"), verify=False)
    assert result.differences is None and loads == []
    with pytest.raises(ReferenceSourceError, match="cannot be loaded as a SavedModel .ZeroDivisionError."):
        # The comparison (the default for a local path) loads it.
        import_reference(SAVED_MODEL, str(tmp_path / "verified"))
    assert loads == [os.path.join(SAVED_MODEL, "3")]
    assert verifies_by_default(SAVED_MODEL) and not verifies_by_default("gs://simclr-checkpoints-tf2/x/saved_model")


def test_a_directory_that_holds_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = tree(str(tmp_path))
    with pytest.raises(ModelDirError, match="already holds a run"):
        import_reference(CHECKPOINT, str(tmp_path))
    assert tree(str(tmp_path)) == before


def write_checkpoint(arrays: dict[str, np.ndarray], prefix: str) -> str:
    """A checkpoint whose object paths are the keys of `arrays` (nested dicts of tf.Variables)."""
    root: dict = {}
    for key, array in arrays.items():
        *path, leaf = key.split("/")
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = tf.Variable(array)
    return tf.train.Checkpoint(**root, global_step=tf.Variable(3, dtype=tf.int64)).write(prefix)


@pytest.fixture(scope="module")
def checkpoint_arrays():
    return dict(load_reference(CHECKPOINT).weights.arrays)


def test_a_checkpoint_written_from_the_arrays_imports(tmp_path, checkpoint_arrays):
    loaded = load_reference(write_checkpoint(checkpoint_arrays, str(tmp_path / "ckpt-3")))
    assert loaded.num_variables == 121 and loaded.weights.step == 3


def test_a_missing_variable_fails_naming_ours_left_unfilled(tmp_path, checkpoint_arrays):
    arrays = dict(checkpoint_arrays)
    del arrays["model/resnet_model/block_groups/1/layers/0/conv2d_bn_layers/3/bn/moving_variance"]
    with pytest.raises(MappingError, match="1 of our variable.s. left unfilled: "
                                           "simclr/resnet/block_group2/block1/last_batch_normalization/moving_variance$"):
        load_reference(write_checkpoint(arrays, str(tmp_path / "ckpt-3")))


def test_a_wrong_shape_fails_naming_the_variable_and_both_shapes(tmp_path, checkpoint_arrays):
    key = "model/resnet_model/block_groups/2/layers/1/conv2d_bn_layers/2/conv2d/kernel"
    arrays = dict(checkpoint_arrays, **{key: np.zeros((3, 3, 256, 255), np.float32)})
    with pytest.raises(MappingError, match=f"1 shape mismatch.es.: {key} .3, 3, 256, 255. vs ours "
                                           "simclr/resnet/block_group3/block2/conv_2/conv2d/kernel .3, 3, 256, 256.$"):
        load_reference(write_checkpoint(arrays, str(tmp_path / "ckpt-3")))


def test_an_extra_variable_fails_as_not_placed(tmp_path, checkpoint_arrays):
    arrays = dict(checkpoint_arrays, **{"model/resnet_model/dropblock/kernel": np.zeros((3,), np.float32)})
    with pytest.raises(MappingError, match="1 original variable.s. not placed on ours: model/resnet_model/dropblock/"
                                           "kernel$"):
        load_reference(write_checkpoint(arrays, str(tmp_path / "ckpt-3")))


def test_cli_imports_compares_and_refuses(tmp_path):
    model_dir = str(tmp_path / "imported")
    strict = run_module("simclr_tf.reference_import", SAVED_MODEL, f"--model_dir={model_dir}", "--tolerance=1e-12")
    assert strict.returncode == 1, strict.stderr[-3000:]
    assert error_line(strict).startswith("error: outputs [") and "Traceback" not in strict.stderr
    assert "> tolerance" in strict.stdout and not os.path.exists(model_dir)

    result = run_module("simclr_tf.reference_import", SAVED_MODEL, f"--model_dir={model_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "architecture: ResNet-18 1x (CIFAR stem" in result.stdout and "mapped 121 variables" in result.stdout
    for name in OUTPUT_NAMES:
        assert f"\n{name} " in result.stdout, name
    assert f"wrote {model_dir} ({model_dir}/ckpt-3)" in result.stdout
    assert RunDir.open(model_dir).latest_checkpoint() == os.path.join(model_dir, "ckpt-3")

    unverified = run_module("simclr_tf.reference_import", SAVED_MODEL, f"--model_dir={tmp_path / 'unverified'}",
                            "--noverify")
    assert unverified.returncode == 0, unverified.stderr[-3000:]
    assert "mapped 121 variables" in unverified.stdout and "relative" not in unverified.stdout

    again = run_module("simclr_tf.import_reference", CHECKPOINT, f"--model_dir={model_dir}")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert error_line(again).startswith(f"error: --model_dir={model_dir}: already holds a run")


def test_the_original_module_evaluates_as_a_module_and_equals_its_imported_run(tmp_path):
    # Its __call__ is (inputs, trainable), ours (images, training): evaluation calls both positionally.
    from simclr_tf.data import SourceConfig, build_source
    from simclr_tf.evaluation.features import encode, encoder_from_checkpoint, encoder_from_module

    import_reference(SAVED_MODEL, str(tmp_path / "imported"))
    source = build_source(SourceConfig(split="test"))
    module = encoder_from_module(os.path.join(SAVED_MODEL, "3"), 32)
    assert set(module.output_names) == set(OUTPUT_NAMES)
    module_features, labels = encode(module, source, max_examples=32, batch_size=16)
    run_features, run_labels = encode(encoder_from_checkpoint(RunDir.open(str(tmp_path / "imported"))), source,
                                      max_examples=32, batch_size=16)
    np.testing.assert_array_equal(labels, run_labels)
    assert difference(run_features, module_features).relative <= TOLERANCE


FINETUNE = ["--train_mode=finetune", "--resnet_depth=18", "--width_multiplier=1", "--image_size=32",
            "--num_proj_layers=3", "--train_batch_size=8", "--train_steps=2", "--checkpoint_steps=2",
            "--steps_per_loop=1", "--warmup_epochs=0", "--optimizer=momentum", "--learning_rate=0.01",
            "--noexport_hub_module", "--shuffle_buffer=1"]


def test_fine_tuning_from_the_original_savedmodel_imports_it_and_keeps_its_matching_head(tmp_path):
    from simclr_tf.training.builders import build_model
    from simclr_tf.training.checkpoints import restore_pretrained

    model_dir = tmp_path / "ft"
    result = run_module("simclr_tf.run", *FINETUNE, f"--checkpoint={SAVED_MODEL}", f"--model_dir={model_dir}",
                        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = model_dir / "imported_checkpoint"
    assert f"imported the original SimCLR model {SAVED_MODEL} (ResNet-18 1x" in result.stdout
    assert f"initialised from {imported}" in result.stdout
    # Ten classes in the fixture's head and in Fashion-MNIST: fine-tuning starts from that head.
    run = RunDir.open(str(imported))
    model = build_model(run.config.model, image_size=32, num_classes=10, train_mode="finetune", num_replicas=1)
    restore_pretrained(model, str(imported), zero_init_logits_layer=False)
    reference, _ = model_from_run(run)
    for ours, theirs in zip(model.supervised_head.variables, reference.supervised_head.variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    wrong = run_module("simclr_tf.run", *FINETUNE, "--resnet_depth=34", f"--checkpoint={SAVED_MODEL}",
                       f"--model_dir={tmp_path / 'other'}")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert error_line(wrong) == (f"error: --checkpoint={SAVED_MODEL}: is another architecture (resnet_depth: the "
                                 f"checkpoint has 18, this run asks for 34); set those flags to the checkpoint's")
