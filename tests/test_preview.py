import os
import subprocess
import sys

from PIL import Image

from simclr_tf.plots.grid import GAP, HEADER_HEIGHT


def run_preview(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "simclr_tf.preview", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_preview_writes_png_grid_of_expected_size(tmp_path):
    output = tmp_path / "grid.png"
    result = run_preview(f"--output={output}", "--num_images=3", "--num_views=4", "--cell_size=40",
                         "--augmentations=crop,flip,color_jitter,cutout")
    assert result.returncode == 0, result.stderr
    image = Image.open(output)
    assert image.size == (5 * (40 + GAP) + GAP, HEADER_HEIGHT + 3 * (40 + GAP) + GAP)
    # Real Fashion-MNIST content: not a blank canvas.
    assert len(set(image.convert("L").getdata())) > 20


def test_preview_reports_a_bad_folder_by_name(tmp_path):
    missing = tmp_path / "no_such_folder"
    result = run_preview(f"--dataset=folder:{missing}", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_preview_rejects_bad_augmentation_flag(tmp_path):
    result = run_preview("--augmentations=crop,solarize", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "solarize" in result.stderr
