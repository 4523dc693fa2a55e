"""simclr_tf: SimCLR contrastive self-supervised learning in TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up INFO lines (oneDNN, missing CUDA) bury our progress output;
# set TF_CPP_MIN_LOG_LEVEL yourself before importing to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
