"""Multi-label transfer (PASCAL VOC2007): the devkit's ground truth from tfds features, the prediction pass
over multi-label images, per-class logistic regression scored by mAP, and flags/transfer/voc2007.cfg."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_tf.data import DataSourceError, SourceConfig, build_source
from simclr_tf.evaluation.average_precision import voc07_mean_average_precision
from simclr_tf.evaluation.features import FrozenEncoder
from simclr_tf.evaluation.logistic import LogisticConfig
from simclr_tf.evaluation.multilabel_logistic import multilabel_logistic_eval, random_holdout
from simclr_tf.evaluation.predict import predict
from simclr_tf.evaluation.protocols import EvalTask, run_task
from simclr_tf.evaluation.task_flags import parse_task, task_from_flags

CLASSES = ["cat", "dog", "bird"]
# (classes of all objects, classes of the objects not marked difficult) of each image.
OBJECTS = [([0], [0]), ([0, 1], [1]), ([2], []), ([], []), ([1, 2], [1, 2])]
EXPECTED = np.array([[1, -1, -1], [0, 1, -1], [-1, -1, 0], [-1, -1, -1], [-1, 1, 1]])


class SimclrTestVoc(tfds.core.GeneratorBasedBuilder):
    """voc's classification features: image i (4x4, filled with i), `labels` and `labels_no_difficult`."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        classes = tfds.features.ClassLabel(names=CLASSES)
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(4, 4, 3)),
            "labels": tfds.features.Sequence(classes),
            "labels_no_difficult": tfds.features.Sequence(tfds.features.ClassLabel(names=CLASSES)),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, (labels, not_difficult) in enumerate(OBJECTS):
            yield i, {"image": np.full((4, 4, 3), i, np.uint8), "labels": labels, "labels_no_difficult": not_difficult}


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("tfds_voc"))
    tfds.builder("simclr_test_voc", data_dir=root).download_and_prepare()
    return root


def test_multi_label_source_gives_the_devkit_ground_truth(voc_dir):
    source = build_source(SourceConfig(dataset="simclr_test_voc", data_dir=voc_dir, multi_label=True))
    assert (source.num_examples, source.num_classes, source.multi_label) == (5, 3, True)
    examples = {int(image[0, 0, 0]): label.numpy() for _, image, label in source.make_dataset(None)}
    np.testing.assert_array_equal(np.stack([examples[i] for i in range(5)]), EXPECTED)


def test_without_multi_label_the_dataset_has_no_single_label(voc_dir):
    assert build_source(SourceConfig(dataset="simclr_test_voc", data_dir=voc_dir)).num_classes is None


def test_multi_label_needs_a_sequence_of_classes(tmp_path):
    with pytest.raises(DataSourceError, match="one label per image"):
        build_source(SourceConfig(dataset="fashion_mnist_offline", multi_label=True))
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataSourceError, match="no 'labels' sequence"):
            build_source(SourceConfig(dataset="cifar10", multi_label=True, download=True))


def test_prediction_keeps_every_image_and_its_classes_once(voc_dir, mirrored_strategy):
    # 4 replicas, global batch 4: 5 images are padded to 8 and the padding dropped.
    strategy = mirrored_strategy
    source = build_source(SourceConfig(dataset="simclr_test_voc", data_dir=voc_dir, multi_label=True))
    outputs, labels = predict(strategy, lambda images: {"fill": images[:, 0, 0, 0] * 255.0}, source,
                              image_size=4, global_batch_size=4)
    order = np.argsort(outputs["fill"])
    np.testing.assert_allclose(outputs["fill"][order], np.arange(5), atol=1e-3)
    np.testing.assert_array_equal(labels[order], EXPECTED)


def _multi_label_features(num_images: int, seed: int, noise: float):
    """Class c is present iff feature c > 0 (|feature| >= 0.5); feature 3 is noise. Some presences are marked
    difficult."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=[num_images, 4]).astype(np.float32)
    features[:, :3] += 0.5 * np.sign(features[:, :3])
    truth = np.where(features[:, :3] > 0, 1, -1)
    truth[rng.random(truth.shape) < 0.1] = 0
    features[:, :3] += noise * rng.normal(size=[num_images, 3])
    return features, truth


FAST = LogisticConfig(l2_values=(1e-4, 1e-2, 1.0, 100.0), validation_fraction=0.25, seed=0)


def test_separable_classes_reach_map_one_and_shuffled_ones_chance():
    train, train_truth = _multi_label_features(300, seed=0, noise=0.0)
    test, test_truth = _multi_label_features(200, seed=1, noise=0.0)
    result = multilabel_logistic_eval(train, train_truth, test, test_truth, FAST)
    assert result["map"] == pytest.approx(1.0, abs=1e-9)
    assert result["per_class_ap"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-9)
    assert [entry["l2"] for entry in result["sweep"]] == [100.0, 1.0, 1e-2, 1e-4]
    # Every strength ranks separable classes perfectly; ties go to the most regularised.
    assert (result["l2"], result["validation_map"]) == (100.0, pytest.approx(1.0))

    shuffled = multilabel_logistic_eval(train, np.random.default_rng(2).permutation(train_truth), test, test_truth,
                                        FAST)
    assert shuffled["map"] < 0.75  # Chance mAP here is the positive rate, ~0.5.


def test_scores_rank_each_class_by_its_own_feature():
    # With noise the classes are not separable; the eval mAP must equal the devkit mAP of the fitted
    # ranking, which for a monotone classifier on one informative feature is the mAP of that feature.
    train, train_truth = _multi_label_features(400, seed=3, noise=0.5)
    test, test_truth = _multi_label_features(300, seed=4, noise=0.5)
    result = multilabel_logistic_eval(train, train_truth, test, test_truth, FAST)
    oracle, _ = voc07_mean_average_precision(test[:, :3], test_truth)
    assert abs(result["map"] - oracle) < 0.03
    assert result["map"] > 0.8


def test_random_holdout_is_seeded_and_disjoint():
    fit, held = random_holdout(10, 0.2, seed=5)
    assert held.size == 2 and np.intersect1d(fit, held).size == 0 and np.union1d(fit, held).size == 10
    np.testing.assert_array_equal(held, random_holdout(10, 0.2, seed=5)[1])
    with pytest.raises(ValueError, match="at least 2"):
        random_holdout(1, 0.2, seed=0)


def test_multi_label_task_accepts_only_the_lbfgs_linear_protocol():
    source = SourceConfig(dataset="voc/2007", multi_label=True)
    with pytest.raises(ValueError, match="protocols must be"):
        EvalTask(name="voc", train_source=source, eval_source=source, protocols=("linear", "knn"), classifier="lbfgs")
    with pytest.raises(ValueError, match="classifier 'lbfgs'"):
        EvalTask(name="voc", train_source=source, eval_source=source, classifier="adam")


def test_voc2007_task_file_runs_on_mock_voc():
    # The flagfile as shipped, with a smaller grid and image; tfds's mock of voc/2007 gives random images
    # and objects with its real features (20 classes, `labels`, `labels_no_difficult`).
    values = parse_task("flags/transfer/voc2007.cfg", ["--l2_grid_size=3", "--eval_batch_size=8"], image_size=16)
    task = task_from_flags(values)
    # mock_data leaves builders unprepared; download=True reaches its no-op download_and_prepare.
    task = dataclasses.replace(task, train_source=dataclasses.replace(task.train_source, download=True),
                               eval_source=dataclasses.replace(task.eval_source, download=True))
    projection = tf.constant(np.random.default_rng(0).normal(size=[3, 8]), tf.float32)
    encoder = FrozenEncoder(
        describe="pooled colour", identity="pooled colour", image_size=16,
        outputs=lambda images: {"final_avg_pool": tf.reduce_mean(images, axis=[1, 2]) @ projection},
        output_names=("final_avg_pool",))
    with tfds.testing.mock_data(num_examples=40):
        result = run_task(encoder, task, printer=lambda line: None)
    assert result["num_classes"] == 20 and result["num_train"] == 40 and result["num_eval"] == 40
    linear = result["linear"]
    assert 0 < linear["map"] <= 1 and len(linear["per_class_ap"]) == 20 and len(linear["sweep"]) == 3
