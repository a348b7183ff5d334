"""Image datasets: one entry point, :func:`load_dataset`, for every source.

Every dataset yields ``(image, label)`` with ``image`` a float32 tensor
[3, S, S] in [0, 1] (S = ``DataConfig.image_size``; images are resized to
S x S without keeping the aspect ratio, as the paper's "resize to 224x224") and
``label`` an int indexing the dataset's ``classes``. No normalisation and no
augmentation happen here: the backbone wrapper normalises, and the random
horizontal flip is applied to cached features (see :mod:`lvwlib.core.batches`).

Sources (the registry :data:`DATASETS`):

- offline class-folder sets ``imagenette``, ``imagewoof``, ``flowers17``
  (``../shared/datasets``, linked to ``data/<name>`` by ``make data``), checked
  against their ``MANIFEST.tsv`` (see :func:`verify_manifest`);
- the paper's sets through torchvision: ``stl10``, ``flowers102``, ``pets``,
  ``food101`` (downloaded only when ``DataConfig.download`` is true);
- ``stanford_dogs`` and ``awa2`` from their official archives' layouts;
- ``folder``: class folders of the user's own (``data.root``, or a directory
  path given as ``data.name``);
- ``synthetic``: a tiny generated set for tests.

Options applied to all of them, after loading: ``holdout_classes`` (removed
from train and test; their test images form ``DatasetBundle.heldout``), then
``max_per_class`` / ``max_test_per_class`` (seeded per-class subsampling that
keeps the sorted order).
"""

# One job per module:
#   errors      the exceptions
#   images      image decoding and the Dataset classes
#   bundle      DatasetBundle and its fingerprint (a cache key)
#   manifest    MANIFEST.tsv checks and the cached verdict
#   splits      seeded train/test splits, hold-out, subsampling
#   folders     class folders: the user's own and the offline sets
#   paper_sets  Stanford Dogs, AwA2 and the torchvision sets
#   synthetic   the generated test set
#   registry    DATASETS and load_dataset

from .bundle import DatasetBundle
from .errors import CorruptImageError, DatasetIntegrityError, DatasetNotFoundError
from .folders import HUMAN_NAMES_FILE, IMAGE_EXTENSIONS, scan_class_folders
from .images import (
    ImageFileDataset,
    LabelledImageDataset,
    TensorImageDataset,
    TorchvisionImageDataset,
    load_image,
    pil_to_tensor01,
    to_rgb,
)
from .manifest import MANIFEST_NAME, SKIP_HASH_ENV, ManifestEntry, read_manifest, verify_manifest
from .registry import DATASETS, DatasetSpec, describe_datasets, load_dataset
from .splits import carve_validation, split_per_class, subsample_per_class
from .synthetic import SYNTHETIC_CLASSES, make_synthetic

__all__ = [
    "CorruptImageError",
    "DATASETS",
    "DatasetBundle",
    "DatasetIntegrityError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "HUMAN_NAMES_FILE",
    "IMAGE_EXTENSIONS",
    "ImageFileDataset",
    "LabelledImageDataset",
    "MANIFEST_NAME",
    "ManifestEntry",
    "SKIP_HASH_ENV",
    "SYNTHETIC_CLASSES",
    "TensorImageDataset",
    "TorchvisionImageDataset",
    "describe_datasets",
    "load_dataset",
    "load_image",
    "make_synthetic",
    "pil_to_tensor01",
    "to_rgb",
    "read_manifest",
    "scan_class_folders",
    "carve_validation",
    "split_per_class",
    "subsample_per_class",
    "verify_manifest",
]
