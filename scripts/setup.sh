#!/usr/bin/env bash
# Installs everything simclr_tf needs on a fresh Debian machine with Python 3:
# the offline Fashion-MNIST files (apt), a virtualenv in .venv, the package and its tests' tools.
# Safe to re-run: each step is skipped or is a no-op once done.
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION_MNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FASHION_MNIST" ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q dataset-fashion-mnist
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt -e ".[test]"
echo "setup: done ($(.venv/bin/python -c 'import tensorflow as tf, keras; print("TensorFlow", tf.__version__, "Keras", keras.__version__)' 2>/dev/null))"
