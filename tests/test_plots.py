"""`python -m simclr_tf.plots` on a real short run, as users call it, and the curves' reading of run records."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_helpers import REPO, TINY_FLAGS, check_ok, environment, error_line, run_cli
from simclr_tf.plots import curves, embedding, grid
from simclr_tf.run_dir import CheckpointError

NUM_EXAMPLES = 100  # t-SNE of 100 points takes about a second.


def run_plots(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Each `python -m simclr_tf.plots <args>`, as users run it; started together, since most
    of each one's time is importing TensorFlow and the cores are few."""
    started = [(args, subprocess.Popen([sys.executable, "-m", "simclr_tf.plots", *args], cwd=REPO, env=environment(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
               for args in commands]
    results = []
    for args, process in started:
        stdout, stderr = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """6 steps of pretraining with the online linear head, checkpoints at 3 and 6, then eval."""
    directory = str(tmp_path_factory.mktemp("run"))
    check_ok(run_cli(*TINY_FLAGS, f"--model_dir={directory}", "--train_steps=6", "--mode=train_then_eval",
                     "--noexport_hub_module"))
    return directory


@pytest.fixture(scope="module")
def plotted(model_dir, tmp_path_factory):
    """{command: result} of each command on the run, run together."""
    views = str(tmp_path_factory.mktemp("views") / "views.png")
    commands = {
        "curves": ["curves", f"--model_dir={model_dir}"],
        "augmentations": ["augmentations", f"--model_dir={model_dir}", f"--output={views}",
                          "--num_images=3", "--num_views=4", "--cell_size=40"],
        "embedding": ["embedding", f"--model_dir={model_dir}", f"--num_examples={NUM_EXAMPLES}"],
    }
    return dict(zip(commands, run_plots(*commands.values())))


def check_png(path: str, size: tuple[int, int]) -> None:
    assert os.path.getsize(path) > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    assert len(colours) > 50, f"{path} looks blank: {len(colours)} colours"


def test_curves_default_output(model_dir, plotted):
    path = os.path.join(model_dir, "plots", "curves.png")
    assert check_ok(plotted["curves"]).stdout.strip() == f"wrote {path}"
    check_png(path, curves.PNG_SIZE)
    assert curves.PNG_SIZE == (1200, 900)
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")]
    # What the real run recorded is what the curves read.
    records, results = curves.read_train_log(model_dir), curves.read_results(model_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    panels = panel_lines(curves.curves_figure(records, results))
    assert len(panels["loss"]["contrastive loss"]) == 6 and len(panels["learning rate"]["learning rate"]) == 6
    assert len(panels["label accuracy (top-1)"]["online linear head (train batches)"]) == 6
    assert panels["label accuracy (top-1)"]["supervised head, eval split"] == [results[-1]["label_top_1_accuracy"]]


def test_augmentations_use_the_runs_settings(model_dir, plotted):
    output = next(arg for arg in plotted["augmentations"].args if arg.startswith("--output=")).removeprefix("--output=")
    assert check_ok(plotted["augmentations"]).stdout.strip() == f"wrote {output}"
    check_png(output, grid.grid_size(3, 4, 40))
    pitch = 40 + grid.GAP
    assert grid.grid_size(3, 4, 40) == (5 * pitch + grid.GAP, grid.HEADER_HEIGHT + 3 * pitch + grid.GAP)
    with open(os.path.join(model_dir, "config.json")) as f:
        image_size = json.load(f)["augment"]["image_size"]
    # Cells are the run's 16 px images scaled up by nearest neighbour: at most 16 distinct rows and columns.
    top = grid.HEADER_HEIGHT + grid.GAP
    cell = np.asarray(Image.open(output).convert("L"))[top:top + 40, grid.GAP:grid.GAP + 40]
    assert image_size == 16
    assert len({row.tobytes() for row in cell}) <= 16 and len({column.tobytes() for column in cell.T}) <= 16


def test_embedding_png_and_json(model_dir, plotted):
    png = os.path.join(model_dir, "plots", "embedding.png")
    json_path = os.path.join(model_dir, "plots", "embedding.json")
    assert check_ok(plotted["embedding"]).stdout.split() == ["wrote", png, "wrote", json_path]
    check_png(png, embedding.PNG_SIZE)
    with open(json_path) as f:
        written = json.load(f)
    coordinates = np.asarray(written["coordinates"])
    labels = np.asarray(written["labels"])
    assert coordinates.shape == (NUM_EXAMPLES, 2) and written["num_examples"] == NUM_EXAMPLES
    assert np.all(np.isfinite(coordinates)) and coordinates.std(axis=0).min() > 0
    assert labels.shape == (NUM_EXAMPLES,) and labels.min() >= 0 and labels.max() < len(written["class_names"]) == 10
    assert len(set(labels.tolist())) > 3  # the first 100 test images hold most classes
    assert written["checkpoint"].endswith("ckpt-6") and written["split"] == "test"
    assert written["tsne"]["random_state"] == embedding.TSNE_RANDOM_STATE


def test_embedding_names_a_missing_checkpoint(model_dir, tmp_path):
    # In process (the CLI turns every user error into one "error:" line, as the tests below show).
    missing = os.path.join(model_dir, "ckpt-99")
    with pytest.raises(CheckpointError, match=f"checkpoint {missing}: no such checkpoint"):
        embedding.write_embedding(model_dir, str(tmp_path / "e.png"), checkpoint=missing, num_examples=10)
    assert not (tmp_path / "e.png").exists()


def test_missing_model_dir_is_one_error_line(tmp_path):
    missing = str(tmp_path / "no_such_run")
    commands = ("curves", "augmentations", "embedding")
    for result in run_plots(*([command, f"--model_dir={missing}"] for command in commands)):
        assert result.returncode == 1, result.args
        assert error_line(result) == f"error: --model_dir={missing}: no such directory"
        assert "Traceback" not in result.stderr
    assert not os.path.exists(missing)


def test_model_dir_without_config_or_log(tmp_path):
    empty, unlogged = tmp_path / "empty", tmp_path / "unlogged"
    empty.mkdir()
    unlogged.mkdir()
    (unlogged / "train_log.jsonl").write_text("")
    results = run_plots(["embedding", f"--model_dir={empty}"], ["augmentations", f"--model_dir={empty}"],
                        ["curves", f"--model_dir={empty}"], ["curves", f"--model_dir={unlogged}"])
    expected = [f"--model_dir={empty}: no config.json", f"--model_dir={empty}: no config.json",
                f"--model_dir={empty}: no train_log.jsonl", f"{unlogged / 'train_log.jsonl'}: empty"]
    for result, message in zip(results, expected):
        assert result.returncode == 1 and error_line(result).startswith(f"error: {message}"), result.args
        assert "Traceback" not in result.stderr
    assert not (unlogged / "plots").exists()


# --- reading a run's records (in process: no TensorFlow needed) ---

def write_records(directory, records, results=()):
    lines = [json.dumps(record) for record in records]
    (directory / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    for result in results:
        (directory / f"result_{result['global_step']}.json").write_text(json.dumps(result))


def panel_lines(figure) -> dict[str, dict[str, list]]:
    """{panel title: {legend label: y values}}, and "texts" for a panel's notes."""
    panels = {}
    for axes in figure.axes:
        lines = {line.get_label(): list(line.get_ydata()) for line in axes.get_lines()}
        lines["texts"] = [text.get_text() for text in axes.texts]
        panels[axes.get_title()] = lines
    return panels


def test_curves_plot_knn_and_linear_eval_when_present(tmp_path):
    records = [{"step": s, "total_loss": 5.0 - s, "contrast_loss": 4.0 - s, "contrast_acc": 0.1 * s,
                "learning_rate": 0.3, **({"knn_top1": 0.2 * s} if s % 2 == 0 else {})} for s in (1, 2, 3, 4)]
    results = [{"global_step": 4, "label_top_1_accuracy": 0.5, "linear_eval": {"top1": 0.7},
                "linear_eval_random_encoder": {"top1": 0.3}}]
    write_records(tmp_path, records, results)
    panels = panel_lines(curves.curves_figure(curves.read_train_log(str(tmp_path)), curves.read_results(str(tmp_path))))
    assert panels["loss"]["contrastive loss"] == [3.0, 2.0, 1.0, 0.0]
    assert panels["loss"]["total loss"] == [4.0, 3.0, 2.0, 1.0]
    label = panels["label accuracy (top-1)"]
    assert label["kNN monitor top-1"] == [0.4, 0.8]
    assert label["linear eval, eval split"] == [0.7] and label["linear eval, random encoder"] == [0.3]
    assert label["supervised head, eval split"] == [0.5]
    assert "online linear head (train batches)" not in label and label["texts"] == []
    assert panels["learning rate"]["learning rate"] == [0.3] * 4


def test_curves_say_no_data_for_empty_panels(tmp_path):
    write_records(tmp_path, [{"step": 1, "learning_rate": 0.1}, {"step": 2, "learning_rate": 0.05}])
    figure = curves.curves_figure(curves.read_train_log(str(tmp_path)), curves.read_results(str(tmp_path)))
    panels = panel_lines(figure)
    for title in ("loss", "contrastive accuracy", "label accuracy (top-1)"):
        assert panels[title]["texts"] == ["no data"], title
    assert panels["learning rate"]["texts"] == []
    output = str(tmp_path / "plots" / "curves.png")
    assert curves.write_curves(str(tmp_path), output) == output
    check_png(output, curves.PNG_SIZE)


def test_train_log_of_a_resumed_run_keeps_the_later_record_of_a_step(tmp_path):
    # Steps 3-4 logged, preempted, resumed from the checkpoint at 2; the run is writing a line.
    write_records(tmp_path, [{"step": 3, "total_loss": 9.0}, {"step": 4, "total_loss": 9.0},
                             {"step": 3, "total_loss": 1.0}, {"step": 2, "total_loss": 2.0}])
    with open(tmp_path / "train_log.jsonl", "a") as f:
        f.write('{"step": 5, "total_lo')
    records = curves.read_train_log(str(tmp_path))
    assert [(r["step"], r["total_loss"]) for r in records] == [(2, 2.0), (3, 1.0), (4, 9.0)]
    assert curves.series(records, "total_loss") == ([2, 3, 4], [2.0, 1.0, 9.0])
    assert not any(math.isnan(v) for v in curves.series(records, "total_loss")[1])
