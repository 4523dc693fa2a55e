"""The Colab notebook runs top to bottom: executed headlessly on the CPU, offline, with tiny parameters.

Its parameters cell keeps its defaults and gets tiny overrides appended (as papermill injects
parameters after it), so a parameter added to the notebook later cannot break this test.
"""

import importlib.util
import json
import os
import sys

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "simclr_colab_tpu.ipynb")
GENERATOR = os.path.join(REPO, "notebooks", "build_notebook.py")

# ResNet-18 at 1/8 width on 16 px Fashion-MNIST: the whole notebook in about a minute on 2 cores.
TINY_PARAMETERS = """
DATASET = "fashion_mnist_offline"
DATA_DIR = None
DOWNLOAD = False
CACHE_DATASET = False
IMAGE_SIZE = 16
RESNET_DEPTH = 18
WIDTH = 0.125
BATCH = 16
TRAIN_STEPS = 4
STEPS_PER_LOOP = 2
WARMUP_EPOCHS = 0
PRECISION = "float32"
MODEL_DIR = {model_dir!r}
EVAL_BATCH = 500
EVAL_STEPS = 2
LINEAR_EVAL_EPOCHS = 2
FINETUNE_STEPS = 2
FINETUNE_BATCH = 8
FINETUNE_EVAL_EXAMPLES = 64
PREVIEW_IMAGES = 2
"""


def load_generator():
    """notebooks/build_notebook.py as a module (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_notebook", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_json(path):
    with open(path) as f:
        return json.load(f)


def cells_by_id(notebook):
    return {cell.get("id"): cell for cell in notebook.cells}


def output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_committed_notebook_is_clean_and_built_from_the_generator():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has outputs"
    assert cells_by_id(notebook)["parameters"].metadata.get("tags") == ["parameters"]
    assert read_json(NOTEBOOK) == json.loads(nbformat.writes(load_generator().build())), (
        "notebooks/simclr_colab_tpu.ipynb differs from notebooks/build_notebook.py: edit the generator and run it")


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """A "python3" kernelspec running this interpreter, first on JUPYTER_PATH (which the
    kernel process inherits too): whatever kernels a user or CI machine has installed,
    the notebook runs in this venv. Nothing outside tmp_path is written."""
    kernel_dir = tmp_path / "jupyter" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (simclr_tf venv)", "language": "python"}
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def test_notebook_runs_top_to_bottom_on_cpu_offline(tmp_path, monkeypatch, python3_kernel):
    from nbclient import NotebookClient

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PYTHONPATH", REPO)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # ipykernel then picks the inline backend.
    monkeypatch.delenv("TF_CONFIG", raising=False)
    model_dir = str(tmp_path / "run")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = cells_by_id(notebook)
    cells["parameters"].source += "\n\n# Test overrides.\n" + TINY_PARAMETERS.format(model_dir=model_dir)

    # Raises CellExecutionError, with the failing cell's traceback, on any error.
    NotebookClient(notebook, timeout=600, kernel_name=python3_kernel,
                   resources={"metadata": {"path": REPO}}).execute()

    assert "already installed" in output_text(cells["install"])
    assert "default strategy (one device)" in output_text(cells["strategy"])
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in cells["config"].outputs)
    pretrain = output_text(cells["pretrain"])
    assert "pretrained to step 4/4" in pretrain
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in cells["pretrain"].outputs)
    with open(os.path.join(model_dir, "train_log.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [2, 4]
    assert "top-1" in output_text(cells["linear-eval"]) and "top-5" in output_text(cells["linear-eval"])
    assert "linear_eval" in read_json(os.path.join(model_dir, "result.json"))
    assert os.path.isfile(os.path.join(model_dir, "saved_model", "4", "saved_model.pb"))
    assert f"exported TF-Hub module {os.path.join(model_dir, 'saved_model', '4')}" in output_text(cells["export"])
    assert "accuracy" in output_text(cells["finetune"])
