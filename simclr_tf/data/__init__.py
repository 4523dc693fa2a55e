"""Image sources: (index, image, label) datasets from tfds, a folder or Fashion-MNIST IDX files."""

from simclr_tf.data.source import (
    DataSourceError,
    Source,
    SourceConfig,
    build_source,
)

__all__ = ["DataSourceError", "Source", "SourceConfig", "build_source"]
