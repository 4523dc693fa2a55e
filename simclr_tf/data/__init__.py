"""Image sources: (index, image, label) datasets from tfds, a folder or Fashion-MNIST IDX files."""

from simclr_tf.data.build import build_source
from simclr_tf.data.source import (
    DataSourceError,
    Source,
    SourceConfig,
)
from simclr_tf.data.subset import (
    read_labels,
    read_subset_ids,
    select_subset,
    subset_source,
    write_subset_ids,
)

__all__ = [
    "DataSourceError", "Source", "SourceConfig", "build_source",
    "read_labels", "read_subset_ids", "select_subset", "subset_source", "write_subset_ids",
]
