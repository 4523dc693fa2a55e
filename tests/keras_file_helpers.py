"""Loading a .keras file as a user without simclr_tf does: in a subprocess where importing it fails."""

import json

import numpy as np

from export_helpers import start

# argv: the .keras file, images.npy, labels.npy. Prints one JSON line: the outputs' names, the
# inference outputs (saved to an .npz beside the images), the fit losses, and whether simclr_tf
# was imported (it cannot be: sys.modules blocks it).
KERAS_USER_SCRIPT = """
import json, sys
sys.modules["simclr_tf"] = None  # `import simclr_tf` raises ImportError from here on.
import numpy as np
import keras

path, images_path, labels_path = sys.argv[1:4]
images, labels = np.load(images_path), np.load(labels_path)
model = keras.saving.load_model(path)  # safe_mode=True, the default
outputs = model(images, training=False)
np.savez(images_path + ".outputs.npz", **{name: np.asarray(value) for name, value in outputs.items()})
model.compile(optimizer=keras.optimizers.SGD(0.05),
              loss={"logits_sup": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
history = model.fit(images, {"logits_sup": labels}, epochs=5, batch_size=len(images), verbose=0)
print(json.dumps({"outputs": sorted(outputs), "losses": history.history["loss"],
                  "simclr_tf_imported": any(name.startswith("simclr_tf.") for name in sys.modules)}))
"""


def load_without_simclr_tf(path: str, images: np.ndarray, labels: np.ndarray, tmp_path) -> tuple[dict, dict]:
    """(report, inference outputs) of the .keras file at `path`, loaded in a process without simclr_tf."""
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    user = start("-c", KERAS_USER_SCRIPT, path, str(tmp_path / "images.npy"), str(tmp_path / "labels.npy"),
                 cwd=str(tmp_path), PYTHONPATH="")
    stdout, stderr = user.communicate(timeout=600)
    assert user.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    with np.load(tmp_path / "images.npy.outputs.npz") as outputs:
        return report, dict(outputs)
