"""Trunk features of every image and its flip, fast: decoding in DataLoader workers,
the frozen trunk in ONNX Runtime (or eager PyTorch).

    images [B, 3, S, S] in [0, 1] --(+ flips, one batch of 2B)--> trunk --> [B, 2, Ct, h, w] float16

Runtimes (:attr:`lvwlib.core.config.BackboneConfig.runtime`):

* ``onnx``: the trunk exported once with ``torch.onnx.export`` (the torch.export based
  exporter; batch dimension dynamic, image side fixed) and cached as
  ``<cache_dir>/trunk_onnx/<key>.onnx``, keyed by the backbone config, the image side and
  the torch version; run by ONNX Runtime's CPU provider with as many intra-op threads as
  torch uses. About 3x less CPU per image than eager PyTorch on this 2-core CPU (see
  ``docs/choices.md``); trunk outputs agree with eager to ~5e-5 (max abs, EfficientNet-Lite0
  at 224 px, real images), below the float16 rounding of the cache.
* ``eager``: the trunk in PyTorch, channels_last, under ``inference_mode``.

When onnxruntime (or the exporter's onnx, onnxscript) is not installed, ``onnx`` falls back
to ``eager`` with a warning.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lvwlib.core.config import BackboneConfig, to_dict
from lvwlib.store.cache import StaleCacheError, cache_key
from lvwlib.store.records import atomic_path, write_json

__all__ = [
    "RUNTIMES",
    "EagerTrunk",
    "OnnxTrunk",
    "check_runtime",
    "compute_trunk_features",
    "export_trunk_onnx",
    "make_trunk_runner",
    "onnx_available",
    "trunk_onnx_inputs",
    "trunk_onnx_path",
]

RUNTIMES: tuple[str, ...] = ("onnx", "eager")

# A trunk runner: images [B, 3, S, S] float32 in [0, 1] -> trunk features [B, Ct, h, w] float32.
TrunkRunner = Callable[[torch.Tensor], torch.Tensor]


def check_runtime(runtime: str) -> str:
    """``runtime`` itself when it is one of :data:`RUNTIMES`; ValueError naming them otherwise."""
    if runtime not in RUNTIMES:
        raise ValueError(
            f"unknown trunk runtime {runtime!r} (backbone.runtime); valid: {', '.join(RUNTIMES)}"
        )
    return runtime


ONNX_PACKAGES: tuple[str, ...] = ("onnxruntime", "onnx", "onnxscript")  # runtime + exporter


def onnx_available() -> bool:
    """Whether onnxruntime and the exporter's packages (onnx, onnxscript) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)


class EagerTrunk:
    """The trunk in PyTorch: channels_last memory format and ``inference_mode``.

    channels_last lets oneDNN run the depthwise and 1x1 convolutions without layout
    conversions (~1.7x faster than NCHW on this CPU); the output is made contiguous NCHW.
    """

    def __init__(self, trunk: nn.Module) -> None:
        # a copy: converting the weights' layout must not change the caller's module
        self.trunk = copy.deepcopy(trunk).eval().to(memory_format=torch.channels_last)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] float32 -> [B, Ct, h, w] float32 (contiguous NCHW)."""
        with torch.inference_mode():
            out = self.trunk(images.contiguous(memory_format=torch.channels_last))
        return out.contiguous()


class OnnxTrunk:
    """The trunk as an ONNX model run by ONNX Runtime (CPU).

    Args:
        path: the ``.onnx`` file (input ``images`` [B, 3, S, S], output [B, Ct, h, w]).
        threads: intra-op threads; None: ``torch.get_num_threads()``, so the two runtimes
            use the same cores. Inter-op parallelism stays off (a sequential graph).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no per-node placement warnings
        # Idle threads sleep instead of spinning: on a shared 2-core machine spinning burned
        # ~1.8x the CPU per image (measured under load) for no gain in throughput.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] float32 -> [B, Ct, h, w] float32."""
        x = images.detach().to(torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(out)


# --------------------------------------------------------------------------- export


def trunk_onnx_inputs(backbone: BackboneConfig, image_size: int) -> dict[str, Any]:
    """What an exported trunk depends on: backbone name/weights/tail, image side, torch version."""
    # runtime is not an input of the model file itself; the torch version is (the exporter).
    cfg = {k: v for k, v in to_dict(backbone).items() if k != "runtime"}
    return {"backbone": cfg, "image_size": int(image_size), "torch": torch.__version__}


def trunk_onnx_path(cache_dir: str | Path, backbone: BackboneConfig, image_size: int) -> Path:
    """``<cache_dir>/trunk_onnx/<key>.onnx``: where the exported trunk of ``backbone`` lives.

    The key covers the backbone config (name, weights, tail), the image side and the torch
    version; ``<key>.json`` beside the file records them.
    """

    key = cache_key(trunk_onnx_inputs(backbone, image_size))
    return Path(cache_dir) / "trunk_onnx" / f"{key}.onnx"


def export_trunk_onnx(trunk: nn.Module, image_size: int, path: str | Path) -> Path:
    """Export ``trunk`` ([B, 3, S, S] -> [B, Ct, h, w]) to ``path`` atomically.

    The batch dimension is dynamic, the image side fixed at ``image_size`` (so TF "same"
    padding of EfficientNet-Lite0 folds into constants).
    """
    trunk = trunk.eval()
    example = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    # The exporter prints progress lines and warns about its own internals; keep it quiet.
    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            trunk,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["features"],
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
            external_data=False,  # one file: the atomic rename moves all of it
            verbose=False,
        )
    return Path(path)


def _ensure_onnx(trunk: nn.Module, path: Path, inputs: dict[str, Any] | None, image_size: int) -> Path:
    """Reuse ``path`` when its recorded inputs match; export it otherwise."""
    meta = path.with_suffix(".json")
    if path.is_file() and inputs is None:
        return path
    if path.is_file() and meta.is_file():
        if json.loads(meta.read_text()) == json.loads(json.dumps(inputs, default=str)):
            return path

        raise StaleCacheError(
            f"exported trunk {path} was made from another config; delete it to re-export"
        )
    export_trunk_onnx(trunk, image_size, path)
    if inputs is not None:
        write_json(meta, inputs)
    return path


def make_trunk_runner(
    trunk: nn.Module,
    runtime: str,
    image_size: int,
    onnx_path: str | Path | None = None,
    onnx_inputs: dict[str, Any] | None = None,
    threads: int | None = None,
) -> TrunkRunner:
    """A callable running ``trunk`` with ``runtime`` (see :data:`RUNTIMES`).

    Args:
        trunk: frozen module, images [B, 3, S, S] in [0, 1] -> [B, Ct, h, w].
        runtime: ``onnx`` or ``eager``.
        image_size: S, the side the ONNX model is exported for.
        onnx_path: where the exported trunk is cached (see :func:`trunk_onnx_path`);
            None: a temporary file, exported on every call and deleted once loaded.
        onnx_inputs: recorded beside ``onnx_path``; a file recorded with other inputs is
            refused (:class:`lvwlib.store.cache.StaleCacheError`).
        threads: ONNX Runtime intra-op threads; None: ``torch.get_num_threads()``.
    Raises:
        ValueError: unknown runtime.
    """
    check_runtime(runtime)
    if runtime == "onnx" and not onnx_available():
        warnings.warn(
            "backbone.runtime is 'onnx' but onnxruntime, onnx or onnxscript is not installed: "
            "computing trunk features in eager PyTorch instead (slower; "
            "`pip install onnxruntime onnx onnxscript`)",
            RuntimeWarning,
            stacklevel=2,
        )
        runtime = "eager"
    if runtime == "eager":
        return EagerTrunk(trunk)
    if onnx_path is None:
        # the session holds the model in memory, so the file can go right after loading
        with tempfile.TemporaryDirectory(prefix="lvw_trunk_") as folder:
            return OnnxTrunk(export_trunk_onnx(trunk, image_size, Path(folder) / "trunk.onnx"), threads)
    return OnnxTrunk(_ensure_onnx(trunk, Path(onnx_path), onnx_inputs, image_size), threads)


# --------------------------------------------------------------------------- features


def _image_size(dataset: Dataset) -> int:
    size = getattr(dataset, "image_size", None)
    return int(size) if size is not None else int(dataset[0][0].shape[-1])


def compute_trunk_features(
    trunk: nn.Module,
    dataset: Dataset,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "trunk features",
    progress: bool = True,
    runtime: str = "eager",
    onnx_path: str | Path | None = None,
    onnx_inputs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Trunk features of every image and of its horizontal flip.

    Images are decoded in ``num_workers`` DataLoader worker processes (0: in this
    process), so decoding overlaps the trunk; each batch of B images and their B flips
    goes through the trunk as one batch of 2B.

    Args:
        trunk: frozen module, images [B, 3, S, S] in [0, 1] -> [B, Ct, h, w].
        dataset: yields (image [3, S, S], label).
        runtime, onnx_path, onnx_inputs: see :func:`make_trunk_runner`.
    Returns:
        [N, 2, Ct, h, w] float16: index 0 the image, 1 its flip. The flip is applied
        to the image, not the features: a conv trunk is not flip-equivariant.
    """
    run = make_trunk_runner(trunk, runtime, _image_size(dataset), onnx_path, onnx_inputs)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    chunks = []
    for images, _ in tqdm(loader, desc=desc, disable=not progress):
        n = len(images)
        out = run(torch.cat([images, torch.flip(images, dims=[3])])).to(torch.float16)
        chunks.append(torch.stack([out[:n], out[n:]], dim=1))
    return torch.cat(chunks)
