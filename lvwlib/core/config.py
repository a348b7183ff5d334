"""Configuration dataclasses: one per concern, each field with a one-line comment.

Every run saves the full :class:`RunConfig` next to its results and inside every
checkpoint. Caches are keyed by the subset of fields their content depends on
(see :mod:`lvwlib.store.cache`), never by the whole config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field

# Value constraints read by the schema check at load (lvwlib.experiment.schema, pydantic); plain
# dataclass construction in code does not check them.
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Percentile = Annotated[float, Field(ge=0.0, le=100.0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


@dataclass(frozen=True)
class DataConfig:
    name: str = "imagenette"  # registry name (imagenette, stl10, ...) or a path to class folders
    root: str | None = None  # where the dataset lives; None: $LVW_DATA, then ./data
    image_size: Positive = 224  # square side the images are resized to (paper: 224; STL10 native 96)
    max_per_class: Positive | None = None  # cap on training images per class (quick runs); None: all
    max_test_per_class: Positive | None = None  # cap on test images per class; None: all
    holdout_classes: tuple[str, ...] = ()  # class folder names kept out of training (unseen analysis)
    split_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2  # test fraction for a single-folder dataset of the user's own
    val_fraction: Fraction = 0.15  # share of each class's training images held out for validation (tuning only)
    max_val_per_class: Positive | None = None  # cap on validation images per class; None: all
    download: bool = False  # torchvision sets: download when missing (needs internet)
    seed: int = 0  # seed of the per-class subsampling and of single-folder splits


@dataclass(frozen=True)
class BackboneConfig:
    name: Literal["efficientnet_lite0", "resnet34", "tiny"] = "efficientnet_lite0"  # efficientnet_lite0 | resnet34 | tiny (tests)
    weights: str = "imagenet"  # imagenet | none | path to a local state_dict file
    tail: str = "head"  # trainable tail: see lvwlib.backbones.split.TAIL_SPLITS for each backbone
    runtime: str = "onnx"  # trunk features computed by: onnx (ONNX Runtime, ~3x faster) | eager (PyTorch)
    # what the convolutions see beyond the image edge: zeros (their zero padding, the weights' own) |
    # reflect (every padded conv of the backbone reflect-pads) | context (the image reflect-padded by one
    # output cell per side before the trunk, the inner grid kept); lvwlib.backbones.border, issue 15
    border: Literal["zeros", "reflect", "context"] = "zeros"


@dataclass(frozen=True)
class BaseConfig:
    epochs: NonNegative = 6  # fine-tuning epochs of tail + linear classifier
    lr_tail: float = 1e-4  # Adam lr of the backbone tail
    lr_head: float = 1e-3  # Adam lr of the linear classifier
    batch_size: Positive = 64  # images per step
    cam_target: Literal["predicted", "label"] = "predicted"  # Grad-CAM target class: predicted (pytorch-grad-cam default) | label
    seed: int = 0  # seed of initialisation and data order


@dataclass(frozen=True)
class LVWConfig:
    words_per_class: Positive = 5  # M = words_per_class * C visual words
    feature_dim: Positive = 128  # D: channels of the add-on output and of each word
    topk_align: Positive = 10  # k: words whose maps are max-pooled for the alignment loss
    align_size: Positive = 224  # side the activation and Grad-CAM maps are compared at (paper: image size)
    alpha_cluster: float = 0.8  # cluster loss coefficient
    beta_align: float = 10.0  # attention alignment coefficient; 0 = LVW without alignment
    gamma_l1: float = 1e-4  # L1 on the last layer in the last-layer stage
    separation: float = 0.0  # ProtoPNet separation coefficient (-0.08 there); 0 for LVW
    class_specific: bool = False  # ProtoPNet: class-specific cluster/separation/push/L1 mask
    warm_epochs: NonNegative = 2  # warm-up: add-on and words only
    joint_epochs: NonNegative = 20  # joint epochs (after warm-up)
    push_every: NonNegative = 10  # push (projection) every N joint epochs, and after the last one
    last_layer_epochs: NonNegative = 20  # passes of the last-layer stage after each push
    lr_tail: float = 1e-4  # joint lr of the backbone tail
    lr_words: float = 3e-3  # lr of add-on layers and words
    lr_last: float = 1e-3  # lr of the last layer in its own stage
    # Adam (L2) weight decay of the tail and add-on in warm-up and joint training; the words and the
    # last layer get none. 0 here; ProtoPNet's code: 1e-3 (its main.py builds these optimisers)
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    lr_decay_every: NonNegative = 0  # step decay period in joint epochs (0: none)
    lr_decay: float = 0.1  # step decay factor
    lr_floor: float = 1e-6  # lower bound of any decayed lr (the reference code has none)
    batch_size: Positive = 64  # images per step
    tail_init: Literal["imagenet", "base"] = "imagenet"  # imagenet | base: start the tail from the fine-tuned base model
    # uniform: words uniform in [0, 1) (the paper) | patches: each class's words start on latent
    # patches of that class's training images (seeded); chosen per dataset on validation
    # (docs/choices.md): with 10-65 images per class and ~25 epochs the uniform words of a
    # 22-102-class set never all reach the data.
    word_init: Literal["uniform", "patches"] = "uniform"
    seed: int = 0  # seed of initialisation and data order


@dataclass(frozen=True)
class EvalConfig:
    quantile: Percentile = 50.0  # q: percentile threshold of the high-attention masks
    top_m: Positive = 10  # m: most activated words whose maps form A^k
    quantiles: tuple[Percentile, ...] = (50.0, 60.0, 70.0, 80.0, 90.0)  # sweep of Figure 3(b-f)
    eval_size: Positive = 224  # side the maps are compared at (paper: image size)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    lvw: LVWConfig = field(default_factory=LVWConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cache_dir: str = "cache"  # where features, maps and models are cached
    device: str = "auto"  # torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast of forward passes on CUDA (ignored on the CPU)
    num_workers: NonNegative = 1  # DataLoader workers decoding images for the trunk (1: decoding overlaps the trunk on 2 cores)
    streaming: Literal["auto", "on", "off"] = "auto"  # stream images through the backbone, no feature cache (methods that stream only): auto (when tail: all) | on | off


@dataclass(frozen=True)
class UnseenCase:
    """One case of Figure 5: classes of a dataset held out of training (notebook 09)."""

    dataset: str  # registry name or path to class folders
    classes: tuple[str, ...]  # class folder names held out of the base model, its Grad-CAM and every method


# Figure 5 as in the paper (AwA2's stand-in; a relative of each, dog and cow, stays in training), then
# the Imagewoof case: English foxhound and Australian terrier (relatives of beagle, Border terrier).
DEFAULT_UNSEEN = (UnseenCase("animals22", ("wolf", "bison")), UnseenCase("imagewoof", ("n02089973", "n02096294")))


@dataclass(frozen=True)
class AnalysesConfig:
    """Settings of the paper's analyses (Figures 2-5): the params yaml's ``analyses:`` section.

    An analysis whose dataset is not among the datasets of a run is skipped (and says so).
    """

    figure2_dataset: str = "food101_10"  # Figure 2's dataset in the report (every run dataset gets its own copy)
    k_dataset: str = "imagewoof"  # Figure 3(a): the k sweep (Stanford Dogs stand-in)
    k_values: tuple[Positive, ...] = (1, 3, 5, 10, 20, 50)  # k of the alignment loss swept in Figure 3(a)
    words_dataset: str = "imagenette"  # Figure 4 and the word gallery (STL10 stand-in)
    unseen: tuple[UnseenCase, ...] = DEFAULT_UNSEEN  # Figure 5: one case per (dataset, held-out classes)
    unseen_dataset: str | None = None  # older single-case form: when set, the only case (with unseen_classes)
    unseen_classes: tuple[str, ...] = ()  # held-out classes of unseen_dataset (older form)

    def unseen_cases(self) -> tuple[UnseenCase, ...]:
        """The cases of Figure 5: ``unseen``, or the one case of the older keys when they are set."""
        if self.unseen_dataset is not None:
            return (UnseenCase(self.unseen_dataset, tuple(self.unseen_classes)),)
        return tuple(self.unseen)
    # Notebook 11, deletion / insertion with the whole model re-run: test images per dataset and
    # seed (classes in turn, seeded order), equal steps over the pixels, the subset's seed.
    faithfulness_images: Positive = 8
    faithfulness_steps: Positive = 5
    faithfulness_seed: int = 0


# How the cells of a run are executed (lvwlib.experiment.runner); every engine runs the same cells.
EXECUTORS = ("inline", "local", "submitit-local", "slurm", "torchrun")


@dataclass(frozen=True)
class CellsConfig:
    """How cells are run; the params yaml's ``cells:`` section, overridden by command-line flags.

    None of these fields enters a cache key: the engine never changes a result.
    """

    executor: str = "local"  # inline (this process) | local (process pool) | submitit-local | slurm | torchrun
    workers: int = 0  # cells running at once; 0 = this machine's cores // threads
    threads: int = 1  # torch threads per cell process (2x1 beat 1x2 on 2 cores: benchmarks/bench_cells.py)
    folder: str = "logs/cells"  # submitit / torchrun job folder (pickled cells, per-job logs)
    poll_s: float = 1.0  # seconds between polls of submitit and torchrun jobs
    timeout_min: int = 240  # submitit / Slurm time limit of one cell
    partition: str | None = None  # Slurm partition (None: the cluster's default)
    gpus_per_node: int = 0  # Slurm GPUs per cell (the pipeline itself runs on CPU)
    cpus_per_task: int = 0  # Slurm CPUs per cell; 0 = threads
    mem_gb: float | None = None  # Slurm memory per cell (None: the cluster's default)
    slurm_additional: dict[str, Any] = field(default_factory=dict)  # verbatim sbatch options, e.g. {account: x, qos: y}
    nproc_per_node: int = 1  # torchrun: processes (one per GPU) of a cell whose method trains under DDP

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"cells.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 0 or self.threads < 1:
            raise ValueError(f"cells.workers must be >= 0 and cells.threads >= 1, got {self.workers}, {self.threads}")
        if self.nproc_per_node < 1:
            raise ValueError(f"cells.nproc_per_node must be >= 1, got {self.nproc_per_node}")

    @property
    def max_workers(self) -> int:
        """Cells at once: 1 inline; else ``workers``, or the usable cores divided by ``threads`` when 0."""
        if self.executor == "inline":
            return 1
        if self.workers:
            return self.workers
        return max(1, usable_cores() // self.threads)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one: taskset, Slurm)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists, for yaml/json)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def from_dict(cls: type, values: dict[str, Any] | None) -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; unknown keys are errors."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        f = known[name]
        sub = _dataclass_type(f)
        if sub is not None and isinstance(value, dict):
            kwargs[name] = from_dict(sub, value)
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _dataclass_type(f: dataclasses.Field) -> type | None:
    mapping = {
        "DataConfig": DataConfig,
        "BackboneConfig": BackboneConfig,
        "BaseConfig": BaseConfig,
        "LVWConfig": LVWConfig,
        "EvalConfig": EvalConfig,
    }
    return mapping.get(str(f.type).replace("'", ""))


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that accepts nested dicts for sub-configs."""
    values = {}
    for name, value in changes.items():
        current = getattr(cfg, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            values[name] = replace(current, **value)
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(cfg, **values)


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a yaml parameter file from ``params/`` into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    with path.open() as fh:
        values = yaml.safe_load(fh) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(values).__name__}")
    return values
