"""Variants of one operator's ONNX model, written into a zoo directory with their manifest entries.

``build_variants(model.onnx, operator, ZOO_DIR)`` makes, from one fp32 ONNX model with a dynamic
batch axis:

==================  ==========================================================================
``fp32``            the model as given (copied; the reference every other variant is checked against)
``fp16``            ``onnxconverter_common.float16`` with fp32 inputs/outputs (``keep_io_types``)
``int8-dynamic``    ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations
                    quantized at run time)
``int8-static``     ``quantize_static`` in QDQ format, U8 activations / S8 per-channel weights,
                    MinMax ranges from calibration images or video frames (``--calibration DIR``)
``pruned-30/-60``   magnitude pruning: the smallest-|w| 30 % / 60 % of every Conv/Gemm/MatMul
                    weight tensor set to zero. Unstructured zeros do NOT make ONNX Runtime's
                    dense kernels faster: these variants run at fp32 speed; they only trade
                    accuracy for compressibility, and are kept so that is measured, not assumed
``channel-pruned-30``  structured pruning: 30 % of the output channels (lowest L1 norm) of every
                    Conv whose output only feeds other Convs (through channel-wise ops) removed,
                    with the consumers' input channels sliced to match. Smaller dense tensors:
                    this is the pruned variant that actually saves time. No fine-tuning is done,
                    so measure its accuracy (``jellybean zoo eval``) before relying on it
``trt-fp16/-int8``  native TensorRT engines, only where ``tensorrt`` imports (see ``tensorrt.py``)
==================  ==========================================================================

Every variant is checked (``onnx.checker`` and one inference at batch 1 and batch 2, whose
output shapes must equal the fp32 model's) before it is listed; a variant that a tool cannot
produce for this model is skipped with the reason logged and returned. Problems the user can fix
(a file that is not ONNX, a fixed batch dimension, unusable calibration data) stop the build.

Nothing is half-written into ZOO_DIR: variants are built in a temporary directory beside it
and moved in only when all of them succeeded, the manifest last and atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from jellybean.agents.backends import (
    OrtBackend,
    TensorRTBackend,
    TensorSpec,
    concrete_shape,
    random_inputs,
    tensorrt_available,
)
from jellybean.errors import JellyBeanError
from jellybean.spec.zoo import Variant, ZooOperator
from jellybean.zoo.manifest import (
    manifest_path,
    merge_operator,
    move_file,
    read_manifest,
    sha256_file,
    write_manifest,
    zoo_lock,
)

log = logging.getLogger("jellybean.zoo")

TASKS = ("detection", "reid", "classification", "generic")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")
TENSOR_SUFFIXES = (".npy",)
#: The kinds of variant ``build_variants`` can make (``include=`` picks among them; fp32 is always made).
VARIANT_KINDS = ("fp32", "fp16", "int8-dynamic", "int8-static", "pruned", "channel-pruned", "trt-fp16", "trt-int8")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

ProgressFn = Callable[[str, int, int], None]


# The input model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What ``inspect_model`` learned about the input model."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    sha256: str
    external_data: bool = False  # weights in separate files next to the .onnx


def _graph_specs(values: Iterable[Any]) -> tuple[TensorSpec, ...]:
    from onnx import helper

    specs = []
    for v in values:
        t = v.type.tensor_type
        dims = list(t.shape.dim) if t.HasField("shape") else []
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
        params = tuple(d.dim_param if d.HasField("dim_param") and d.dim_param else None for d in dims)
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        except (KeyError, TypeError, ValueError):
            dtype = np.dtype(np.float32)
        specs.append(TensorSpec(v.name, shape, dtype, params))
    return tuple(specs)


def inspect_model(path: str | os.PathLike) -> tuple[ModelInfo, Any]:
    """Load and check the input model; return what we know about it and the ModelProto.

    Errors (JellyBeanError, naming the file): missing/unreadable, not ONNX, fails the checker,
    an input without a dynamic batch (first) dimension.
    """
    import onnx

    path = Path(path)
    if not path.exists():
        raise JellyBeanError(f"{path}: file not found; check the path to the ONNX model")
    if not path.is_file():
        raise JellyBeanError(f"{path}: not a file; give an ONNX model file")
    try:
        from onnx.external_data_helper import uses_external_data

        bare = onnx.load(str(path), load_external_data=False)
        external = any(uses_external_data(t) for t in bare.graph.initializer)
        model = onnx.load(str(path)) if external else bare
    except PermissionError:
        raise JellyBeanError(f"{path}: cannot be read (permission denied); make it readable") from None
    except Exception as exc:  # protobuf DecodeError, external-data errors, ...
        raise JellyBeanError(
            f"{path}: not an ONNX model (cannot be parsed: {_first_line(exc)}); give a .onnx file exported "
            "with torch.onnx.export or another ONNX exporter"
        ) from None
    if not model.graph.node:
        raise JellyBeanError(f"{path}: not an ONNX model (no graph nodes); give a .onnx file with a graph")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise JellyBeanError(f"{path}: fails the ONNX checker ({_first_line(exc)}); re-export the model") from None
    init_names = {i.name for i in model.graph.initializer}
    inputs = _graph_specs(v for v in model.graph.input if v.name not in init_names)
    if not inputs:
        raise JellyBeanError(f"{path}: the model has no inputs; re-export it with its input tensors")
    for spec in inputs:
        if not spec.shape:
            raise JellyBeanError(
                f"{path}: input '{spec.name}' has no batch dimension (scalar or unknown rank); export the model "
                "with a dynamic batch axis, e.g. torch.onnx.export(..., dynamic_axes={'%s': {0: 'batch'}})" % spec.name
            )
        if spec.shape[0] is not None:
            raise JellyBeanError(
                f"{path}: input '{spec.name}' has a fixed batch dimension {_fmt(spec)}; the zoo batches inputs, so "
                f"export with a dynamic batch axis, e.g. torch.onnx.export(..., dynamic_axes={{'{spec.name}': "
                "{0: 'batch'}})"
            )
    outputs = _graph_specs(model.graph.output)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelInfo(path, inputs, outputs, opset, sha256_file(path), external), model


def _fmt(spec: TensorSpec) -> str:
    return "[" + ", ".join(
        str(d) if d is not None else (p or "?") for d, p in zip(spec.shape, spec.dim_params or (None,) * len(spec.shape))
    ) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# Calibration data -----------------------------------------------------------------------------


@dataclass
class CalibrationData:
    """Calibration samples for one image input, kept compact (uint8 images) until batched.

    Images and video frames are resized to the model's H x W, converted to RGB (or grey for a
    1-channel input) and scaled to 0..1 in NCHW float32 — the usual convention of detection and
    re-id exports. ``.npy`` files are taken as already-preprocessed tensors of the input's shape
    (C, H, W) or (N, C, H, W), for models that expect other preprocessing (mean/std, BGR, ...).
    """

    input_name: str
    shape: tuple[int, ...]  # one sample, without the batch dimension
    items: list[np.ndarray] = field(default_factory=list)  # uint8 (H, W, C) or float32 (C, H, W)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, i: int) -> np.ndarray:
        item = self.items[i]
        if item.dtype == np.uint8:
            return np.ascontiguousarray(item.transpose(2, 0, 1), dtype=np.float32) / 255.0
        return item.astype(np.float32, copy=False)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Float32 batches of ``batch_size`` (the last one may be smaller)."""
        for start in range(0, len(self.items), batch_size):
            yield np.stack([self.sample(i) for i in range(start, min(start + batch_size, len(self.items)))])

    def sha256(self) -> str:
        digest = hashlib.sha256(repr(self.shape).encode())
        for item in self.items:
            digest.update(np.ascontiguousarray(item).tobytes())
        return digest.hexdigest()


def _spaced(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def load_calibration(
    directory: str | os.PathLike,
    spec: TensorSpec,
    *,
    dims: Mapping[str, int] | None = None,
    max_samples: int = 64,
    min_samples: int = 8,
    source: str | os.PathLike = "",
) -> CalibrationData:
    """Read calibration samples for input ``spec`` from ``directory`` (searched recursively).

    Accepts images (.jpg, .jpeg, .png, .bmp), videos (.avi, .mp4, .mkv, .mov: frames evenly
    spaced over each video) and .npy tensors. At most ``max_samples`` are kept (evenly spaced);
    fewer than ``min_samples`` is an error, as are unreadable files and tensors of the wrong shape.
    """
    import cv2

    directory = Path(directory)
    if not directory.exists():
        raise JellyBeanError(f"{directory}: calibration directory not found; check the path")
    if not directory.is_dir():
        raise JellyBeanError(f"{directory}: not a directory; give a directory of calibration images or videos")
    shape = concrete_shape(spec, 1, dims, source)[1:]
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    tensors = [p for p in files if p.suffix.lower() in TENSOR_SUFFIXES]
    if not (images or videos or tensors):
        raise JellyBeanError(
            f"{directory}: no calibration data found (no images {'/'.join(IMAGE_SUFFIXES)}, videos "
            f"{'/'.join(VIDEO_SUFFIXES)} or .npy tensors); add a few dozen representative frames"
        )
    if (images or videos) and (len(shape) != 3 or shape[0] not in (1, 3)):
        raise JellyBeanError(
            f"{directory}: calibration from images needs an NCHW image input with 1 or 3 channels, but input "
            f"'{spec.name}' of {source or 'the model'} is {_fmt(spec)}; give .npy tensors of shape {shape} instead"
        )
    data = CalibrationData(spec.name, tuple(shape))
    for p in tensors:
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise JellyBeanError(f"{p}: cannot be read as a .npy array ({_first_line(exc)}); remove or replace it") from None
        if tuple(arr.shape) == tuple(shape):
            arr = arr[None]
        elif not (arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape)):
            raise JellyBeanError(
                f"{p}: calibration tensor has shape {tuple(arr.shape)} but input '{spec.name}' needs "
                f"{tuple(shape)} or (N, {', '.join(map(str, shape))}); preprocess it to the model's input size"
            )
        if arr.dtype.kind not in "fiu":
            raise JellyBeanError(f"{p}: calibration tensor has dtype {arr.dtype}; save it as float32")
        data.items.extend(np.asarray(a, dtype=np.float32) for a in arr)
    if images or videos:
        channels, height, width = shape
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR

        def to_sample(img: np.ndarray) -> np.ndarray:
            if channels == 1 and img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            elif channels == 3 and img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            if img.shape[:2] != (height, width):
                interp = cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_LINEAR
                img = cv2.resize(img, (width, height), interpolation=interp)
            if channels == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            return np.ascontiguousarray(img.reshape(height, width, channels), dtype=np.uint8)

        for i in _spaced(len(images), max_samples):
            img = cv2.imread(str(images[i]), flag)
            if img is None or img.size == 0:
                raise JellyBeanError(f"{images[i]}: cannot be decoded as an image; remove it or replace it")
            data.items.append(to_sample(img))
        budget = max(0, max_samples - len(data.items))
        per_video = math.ceil(budget / len(videos)) if videos and budget else 0
        for p in videos if per_video else []:
            frames = _video_frames(p, per_video)
            data.items.extend(to_sample(f) for f in frames)
    if len(data.items) > max_samples:
        data.items = [data.items[i] for i in _spaced(len(data.items), max_samples)]
    found = f"{len(images)} image(s), {len(videos)} video(s), {len(tensors)} .npy file(s)"
    if len(data.items) < min_samples:
        raise JellyBeanError(
            f"{directory}: only {len(data.items)} calibration sample(s) ({found}); static int8 calibration needs at "
            f"least {min_samples} for stable activation ranges; add more images or frames"
        )
    data.origin = f"{len(data.items)} samples from {directory} ({found})"
    return data


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise JellyBeanError(f"{path}: cannot be opened as a video; remove it or convert it (MJPG .avi works)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        wanted = set(_spaced(total, count)) if total > 0 else set(range(0, 10 * count, 10))
        last = max(wanted)
        frames: list[np.ndarray] = []
        for index in range(last + 1):
            if not cap.grab():
                break
            if index in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise JellyBeanError(f"{path}: no frame could be decoded; remove the video or re-encode it")
    return frames


def calibration_reader(data: CalibrationData, batch_size: int = 8) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``data`` (rewindable)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(())
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {data.input_name: batch}

        def rewind(self) -> None:
            self._batches = data.batches(batch_size)

        def __len__(self) -> int:
            return math.ceil(len(data) / batch_size)

    return _Reader()


# Pruning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparsityStats:
    tensors: int
    weights: int
    zeros: int

    @property
    def fraction(self) -> float:
        return self.zeros / self.weights if self.weights else 0.0


def _copy_model(model: Any) -> Any:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def magnitude_prune(model: Any, sparsity: float, op_types: tuple[str, ...] = ("Conv", "Gemm", "MatMul")) -> tuple[Any, SparsityStats]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of every Conv/Gemm/MatMul
    weight initializer (input 1), per tensor. Biases are left alone. Returns a new model."""
    from onnx import numpy_helper

    if not 0 < sparsity < 1:
        raise JellyBeanError(f"sparsity must be between 0 and 1 (got {sparsity})")
    model = _copy_model(model)
    inits = {i.name: i for i in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type in op_types and len(node.input) > 1 and node.input[1] in inits and node.input[1] not in names:
            names.append(node.input[1])
    weights = zeros = done = 0
    for name in names:
        arr = numpy_helper.to_array(inits[name])
        if arr.dtype.kind != "f" or arr.ndim < 2:
            continue
        flat = arr.reshape(-1).copy()
        k = int(math.floor(sparsity * flat.size))
        if k:
            flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0
        inits[name].CopyFrom(numpy_helper.from_array(flat.reshape(arr.shape), name))
        weights += flat.size
        zeros += int(np.count_nonzero(flat == 0))
        done += 1
    return model, SparsityStats(done, weights, zeros)


# Channel-wise ops a pruned channel passes through unchanged (data input 0, other inputs constant).
_CHANNELWISE = {
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Identity", "Clip", "MaxPool", "AveragePool", "LpPool", "Mish", "Gelu",
    "ThresholdedRelu", "Dropout",
}
# Element-wise binary ops: channel-wise when every operand is in the region or a scalar constant.
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div"}


@dataclass(frozen=True)
class PrunedLayer:
    conv: str
    channels_before: int
    channels_after: int
    consumers: tuple[str, ...]


class _Graph:
    """Producer/consumer indexes over a ModelProto's main graph."""

    def __init__(self, model: Any) -> None:
        g = model.graph
        self.graph = g
        self.inits = {i.name: i for i in g.initializer}
        self.outputs = {o.name for o in g.output}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        self.uses: dict[str, int] = {}
        for node in g.node:
            for o in node.output:
                self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)
                    self.uses[i] = self.uses.get(i, 0) + 1
        # Subgraphs (If/Loop bodies) may read outer tensors: count those uses too, so they are never pruned.
        for node in g.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    for n in sub.node:
                        for i in n.input:
                            self.uses[i] = self.uses.get(i, 0) + 2

    def const(self, name: str) -> bool:
        return name == "" or name in self.inits or getattr(self.producer.get(name), "op_type", "") == "Constant"

    def scalar_const(self, name: str) -> bool:
        from onnx import numpy_helper

        if name in self.inits:
            return int(np.prod(self.inits[name].dims)) == 1
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t).size == 1
        return False

    def private_init(self, name: str) -> bool:
        """An initializer only this one node reads (safe to slice)."""
        return name in self.inits and self.uses.get(name, 0) == 1


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _label(node: Any) -> str:
    return node.name or f"{node.op_type}({node.output[0]})"


def _region(g: _Graph, conv: Any, channels: int) -> tuple[list[Any], list[Any]] | str:
    """Nodes between ``conv``'s output and the Convs that consume it, or why it cannot be pruned.

    Returns (channel-wise nodes to slice (BatchNormalization), consumer Convs)."""
    start = conv.output[0]
    region = {start}
    frontier = [start]
    seen: set[int] = set()
    pending: list[Any] = []
    slice_nodes: list[Any] = []
    consumers: list[Any] = []
    while True:
        while frontier:
            tensor = frontier.pop()
            if tensor in g.outputs:
                return "its output reaches a graph output"
            users = g.consumers.get(tensor, [])
            if not users:
                return "its output is unused"
            for node in users:
                if id(node) in seen:
                    continue
                op = node.op_type
                if op == "Conv":
                    if list(node.input).index(tensor) != 0 or tensor in node.input[1:]:
                        return f"feeds {_label(node)} as a weight"
                    if _attr(node, "group", 1) != 1:
                        return f"feeds grouped/depthwise {_label(node)}"
                    if len(node.input) < 2 or not g.private_init(node.input[1]):
                        return f"feeds {_label(node)} whose weights are not a private initializer"
                    if g.inits[node.input[1]].dims[1] != channels:
                        return f"feeds {_label(node)} with mismatched input channels"
                    seen.add(id(node))
                    consumers.append(node)
                    continue
                if op in _CHANNELWISE:
                    if node.input[0] != tensor or not all(g.const(i) for i in node.input[1:]):
                        return f"feeds {_label(node)} with a non-constant parameter"
                    if any(o and (g.consumers.get(o) or o in g.outputs) for o in node.output[1:]):
                        return f"feeds {_label(node)} whose second output is used"
                    seen.add(id(node))
                    region.add(node.output[0])
                    frontier.append(node.output[0])
                    continue
                if op == "BatchNormalization":
                    if node.input[0] != tensor or not all(g.private_init(i) for i in node.input[1:5]):
                        return f"feeds {_label(node)} whose parameters are shared or not initializers"
                    if len([o for o in node.output if o]) != 1:
                        return f"feeds {_label(node)} in training mode"
                    seen.add(id(node))
                    slice_nodes.append(node)
                    region.add(node.output[0])
                    frontier.append(node.output[0])
                    continue
                if op in _ELEMENTWISE:
                    pending.append(node)
                    seen.add(id(node))
                    continue
                return f"feeds {op} {_label(node)}" if op in ("Concat", "Add", "Reshape", "Flatten") else \
                    f"feeds {op} {_label(node)}, which is not channel-wise"
        # Element-wise nodes (e.g. SiLU's x * Sigmoid(x)) join once all their operands are in the region.
        progressed = False
        for node in list(pending):
            if all(i in region or g.scalar_const(i) for i in node.input):
                pending.remove(node)
                region.add(node.output[0])
                frontier.append(node.output[0])
                progressed = True
        if not progressed:
            break
    if pending:
        node = pending[0]
        return f"feeds {node.op_type} {_label(node)} together with a tensor from outside (residual/skip connection)"
    if not consumers:
        return "does not feed another Conv"
    return slice_nodes, consumers


def channel_prune(model: Any, fraction: float) -> tuple[Any, list[PrunedLayer], list[tuple[str, str]]]:
    """Remove ``fraction`` of the output channels (lowest L1 norm) of every qualifying Conv.

    A Conv qualifies when it is not grouped, its weights (and bias) are initializers only it
    reads, and its output reaches only other (non-grouped) Convs, through channel-wise ops
    (activations, pooling, BatchNormalization, Clip, element-wise ops among themselves or with
    scalar constants such as SiLU's ``x * Sigmoid(x)``). Convs whose output reaches Concat, Add
    with another branch, Reshape/Flatten, a graph output or anything else are skipped, with the
    reason. Returns (new model, pruned layers, skipped (layer, reason)).
    """
    import onnx
    from onnx import numpy_helper

    if not 0 < fraction < 1:
        raise JellyBeanError(f"channel fraction must be between 0 and 1 (got {fraction})")
    model = _copy_model(model)
    pruned: list[PrunedLayer] = []
    skipped: list[tuple[str, str]] = []
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:
        g = _Graph(model)  # indexes over the current tensors (earlier layers were sliced)
        label = _label(conv)
        if _attr(conv, "group", 1) != 1:
            skipped.append((label, "grouped/depthwise convolution"))
            continue
        if len(conv.input) < 2 or not g.private_init(conv.input[1]):
            skipped.append((label, "weights are not an initializer only this layer reads"))
            continue
        if len(conv.input) > 2 and conv.input[2] and not g.private_init(conv.input[2]):
            skipped.append((label, "bias is not an initializer only this layer reads"))
            continue
        weight = numpy_helper.to_array(g.inits[conv.input[1]])
        channels = weight.shape[0]
        remove = int(round(fraction * channels))
        if remove < 1 or channels - remove < 1:
            skipped.append((label, f"{channels} output channel(s) is too few to remove {fraction:.0%}"))
            continue
        found = _region(g, conv, channels)
        if isinstance(found, str):
            skipped.append((label, found))
            continue
        bns, consumers = found
        norms = np.abs(weight.reshape(channels, -1)).sum(axis=1)
        keep = np.sort(np.argsort(-norms, kind="stable")[: channels - remove])

        def put(name: str, arr: np.ndarray) -> None:
            g.inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            for v in model.graph.input:  # old exporters also list initializers as inputs
                if v.name == name:
                    dims = v.type.tensor_type.shape.dim
                    for d, n in zip(dims, arr.shape):
                        d.dim_value = int(n)

        put(conv.input[1], weight[keep])
        if len(conv.input) > 2 and conv.input[2]:
            put(conv.input[2], numpy_helper.to_array(g.inits[conv.input[2]])[keep])
        for bn in bns:
            for name in bn.input[1:5]:
                put(name, numpy_helper.to_array(g.inits[name])[keep])
        for c in consumers:
            put(c.input[1], numpy_helper.to_array(g.inits[c.input[1]])[:, keep])
        pruned.append(PrunedLayer(label, channels, int(len(keep)), tuple(_label(c) for c in consumers)))
    if pruned:
        del model.graph.value_info[:]  # stale channel counts; shape inference recomputes them
        model = onnx.shape_inference.infer_shapes(model)
    return model, pruned, skipped


# Building ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    variant: str
    reason: str


@dataclass(frozen=True)
class BuildResult:
    operator: ZooOperator
    manifest: Path
    skipped: tuple[Skipped, ...]
    #: Max |output - fp32 output| / max |fp32 output| on seeded random input at batch 2, per variant.
    deviation: dict[str, float]
    calibration: str = ""


@dataclass
class _Built:
    name: str
    filename: str
    precision: str
    description: str


class _Skip(Exception):
    """A variant this model or machine cannot have; the build goes on without it."""


@dataclass
class _Context:
    info: ModelInfo
    model: Any
    out: Path  # staging directory of this operator's files
    work: Path  # scratch space (preprocessed model, ...)
    dims: dict[str, int]
    calibration: CalibrationData | None
    threads: int | None
    channel_fraction: float
    engine_cache: Path | None
    max_batch: int
    _pre: Path | None = None

    def preprocessed(self) -> Path:
        """The input model after ORT's quantization pre-processing (shape inference, optimization)."""
        if self._pre is None:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            target = (self.work / "preprocessed.onnx").resolve()
            source = str(Path(self.info.path).resolve())
            # ORT's symbolic shape inference saves a debug model (with external data) into the
            # current directory when it gives up: keep that inside the build's work directory.
            with contextlib.chdir(self.work):
                try:
                    quant_pre_process(source, str(target))
                except Exception as exc:  # symbolic shape inference cannot handle every graph
                    log.warning("quantization pre-processing with symbolic shapes failed (%s); retrying without",
                                _first_line(exc))
                    quant_pre_process(source, str(target), skip_symbolic_shape=True)
            self._pre = target
        return self._pre


def _save(model: Any, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))


def _make_fp32(ctx: _Context) -> _Built:
    target = ctx.out / "fp32.onnx"
    if ctx.info.external_data:  # weights in side files: save one self-contained file
        _save(ctx.model, target)
    else:
        shutil.copyfile(ctx.info.path, target)
    return _Built("fp32", target.name, "fp32", "the model as given")


def _make_fp16(ctx: _Context) -> _Built:
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(_copy_model(ctx.model), keep_io_types=True)
    _save(model, ctx.out / "fp16.onnx")
    return _Built("fp16", "fp16.onnx", "fp16",
                  "fp16 weights and activations (onnxconverter_common), fp32 inputs/outputs; fast on GPUs, "
                  "CPUs without fp16 units emulate it")


def _make_int8_dynamic(ctx: _Context) -> _Built:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = ctx.out / "int8-dynamic.onnx"
    last: Exception | None = None
    for weight_type in (QuantType.QInt8, QuantType.QUInt8):  # older ORT builds lack s8 ConvInteger
        quantize_dynamic(str(ctx.preprocessed()), str(target), weight_type=weight_type)
        try:
            ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            break
        except Exception as exc:
            last = exc
    else:
        raise _Skip(f"onnxruntime cannot run the dynamically quantized model ({_first_line(last or Exception())})")
    return _Built("int8-dynamic", target.name, "int8",
                  f"dynamic quantization (onnxruntime quantize_dynamic): {weight_type.name} weights, "
                  "activations quantized per batch at run time")


def _make_int8_static(ctx: _Context) -> _Built:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if ctx.calibration is None:
        raise _Skip("no calibration data; pass --calibration DIR with images or videos to build it")
    target = ctx.out / "int8-static.onnx"
    quantize_static(
        str(ctx.preprocessed()), str(target), calibration_reader(ctx.calibration),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return _Built("int8-static", target.name, "int8",
                  f"static QDQ quantization (onnxruntime quantize_static): u8 activations, per-channel s8 weights, "
                  f"MinMax ranges from {ctx.calibration.origin}")


def _make_pruned(sparsity: float) -> Callable[[_Context], _Built]:
    name = f"pruned-{round(sparsity * 100)}"

    def make(ctx: _Context) -> _Built:
        model, stats = magnitude_prune(ctx.model, sparsity)
        if not stats.tensors:
            raise _Skip("the model has no Conv/Gemm/MatMul weight initializers to prune")
        _save(model, ctx.out / f"{name}.onnx")
        return _Built(name, f"{name}.onnx", "fp32",
                      f"magnitude pruning: smallest-|w| {sparsity:.0%} of each of {stats.tensors} Conv/Gemm/MatMul "
                      f"weight tensors zeroed ({stats.fraction:.1%} of those weights are zero), no fine-tuning. "
                      "Unstructured sparsity does not speed up ONNX Runtime's dense kernels: expect fp32 latency")

    make.__name__ = name
    return make


def _make_channel_pruned(ctx: _Context) -> _Built:
    name = f"channel-pruned-{round(ctx.channel_fraction * 100)}"
    model, layers, skipped = channel_prune(ctx.model, ctx.channel_fraction)
    for layer, why in skipped:
        log.info("channel pruning: %s skipped: %s", layer, why)
    if not layers:
        reasons = "; ".join(f"{layer} {why}" for layer, why in skipped[:4]) or "the model has no Conv layers"
        raise _Skip(f"no Conv layer qualifies for channel pruning ({reasons})")
    _save(model, ctx.out / f"{name}.onnx")
    summary = ", ".join(f"{p.conv} {p.channels_before}->{p.channels_after}" for p in layers[:6])
    more = f" and {len(layers) - 6} more" if len(layers) > 6 else ""
    return _Built(name, f"{name}.onnx", "fp32",
                  f"structured pruning: {ctx.channel_fraction:.0%} of output channels (lowest L1 norm) removed from "
                  f"{len(layers)} of {len(layers) + len(skipped)} Conv layers ({summary}{more}); dense and smaller, "
                  "so faster on every backend; no fine-tuning — measure its accuracy")


def _make_trt(precision: str) -> Callable[[_Context], _Built]:
    name = f"trt-{precision}"

    def make(ctx: _Context) -> _Built:
        from jellybean.zoo.tensorrt import build_engine

        if precision == "int8" and ctx.calibration is None:
            raise _Skip("no calibration data; pass --calibration DIR to build the TensorRT int8 engine")
        shapes = {s.name: (None, *concrete_shape(s, 1, ctx.dims, ctx.info.path)[1:]) for s in ctx.info.inputs}
        calib = None
        if precision == "int8" and ctx.calibration is not None:
            calib = np.concatenate(list(ctx.calibration.batches(64)))
        built = build_engine(
            ctx.info.path, ctx.out / f"{name}.engine", precision, input_shapes=shapes,
            model_sha256=ctx.info.sha256, calibration=calib, max_batch=ctx.max_batch, cache_dir=ctx.engine_cache,
        )
        d = built.device
        return _Built(name, f"{name}.engine", precision,
                      f"TensorRT {d.tensorrt_version} {precision} engine for {d.name} ({d.sm}), batch 1..{ctx.max_batch}; "
                      "loads only on that GPU model and TensorRT version")

    make.__name__ = name
    return make


def _compare(name: str, ref: dict[int, dict[str, np.ndarray]], got: dict[int, dict[str, np.ndarray]]) -> float:
    worst = 0.0
    for batch, outs in ref.items():
        for out, value in outs.items():
            if out not in got[batch]:
                raise _Skip(f"validation: output '{out}' is missing")
            if got[batch][out].shape != value.shape:
                raise _Skip(f"validation: output '{out}' at batch {batch} has shape {got[batch][out].shape}, "
                            f"fp32 gives {value.shape}")
            if value.dtype.kind == "f" and value.size:
                scale = float(np.max(np.abs(value))) or 1.0
                diff = float(np.max(np.abs(got[batch][out].astype(np.float64) - value.astype(np.float64))))
                worst = max(worst, diff / scale) if math.isfinite(diff) else math.inf
    return worst


def _run(path: Path, feeds: dict[int, dict[str, np.ndarray]], threads: int | None) -> dict[int, dict[str, np.ndarray]]:
    backend = TensorRTBackend() if path.suffix == ".engine" else OrtBackend(intra_op_threads=threads)
    with backend.load(path):
        return {b: backend.infer(feed) for b, feed in feeds.items()}


def _validate_onnx(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise _Skip(f"validation: fails the ONNX checker ({_first_line(exc)})") from None


def build_variants(
    model_path: str | os.PathLike,
    operator: str,
    out_dir: str | os.PathLike,
    calibration_dir: str | os.PathLike | None = None,
    *,
    task: str = "generic",
    include: Iterable[str] | None = None,
    sparsities: tuple[float, ...] = (0.3, 0.6),
    channel_fraction: float = 0.3,
    tensorrt: bool | None = None,
    dims: Mapping[str, int] | None = None,
    calibration_samples: int = 64,
    min_calibration_samples: int = 8,
    max_batch: int = 8,
    intra_op_threads: int | None = None,
    engine_cache: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    family: str | None = None,
) -> BuildResult:
    """Build the variants of ``operator`` from ``model_path`` into the zoo ``out_dir``.

    ``include`` limits the kinds built (see ``VARIANT_KINDS``; fp32 is always built).
    ``tensorrt``: None builds TensorRT engines when ``tensorrt`` imports, True requires it
    (NotSupportedError otherwise), False never builds them. ``dims`` sizes dynamic non-batch
    dimensions by name. ``family`` prefixes the variant names (``w050-int8-static``) so that the
    variants of several base models of one operator (two widths, two backbones) sit side by side:
    a rebuild then replaces only that family's variants. Returns the operator's manifest entry, the skipped variants with their
    reasons and each variant's deviation from fp32. Raises JellyBeanError, leaving ``out_dir``
    as it was, when the input model or the calibration data is unusable.
    """
    out_dir = Path(out_dir)
    dims = dict(dims or {})
    if not _NAME.match(operator):
        raise JellyBeanError(f"--operator: '{operator}' is not a usable name; use letters, digits, '.', '_' and '-'")
    if family is not None and not _NAME.match(family):
        raise JellyBeanError(f"--family: '{family}' is not a usable name; use letters, digits, '.', '_' and '-'")
    prefix = f"{family}-" if family else ""
    if task not in TASKS:
        raise JellyBeanError(f"--task: unknown task '{task}'; use one of: {', '.join(TASKS)}")
    kinds = set(VARIANT_KINDS if include is None else include) | {"fp32"}
    unknown = sorted(kinds - set(VARIANT_KINDS))
    if unknown:
        raise JellyBeanError(f"unknown variant kind(s) {', '.join(unknown)}; choose from {', '.join(VARIANT_KINDS)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise JellyBeanError(f"{out_dir}: exists and is not a directory; give a directory for the zoo")
    if tensorrt is True:
        from jellybean.zoo.tensorrt import require_tensorrt

        require_tensorrt()
    with_trt = tensorrt is True or (tensorrt is None and tensorrt_available())
    if not with_trt:
        kinds -= {"trt-fp16", "trt-int8"}

    steps: list[tuple[str, Callable[[_Context], _Built]]] = [("fp32", _make_fp32)]
    if "fp16" in kinds:
        steps.append(("fp16", _make_fp16))
    if "int8-dynamic" in kinds:
        steps.append(("int8-dynamic", _make_int8_dynamic))
    if "int8-static" in kinds:
        steps.append(("int8-static", _make_int8_static))
    if "pruned" in kinds:
        steps += [(f"pruned-{round(s * 100)}", _make_pruned(s)) for s in sparsities]
    if "channel-pruned" in kinds:
        steps.append((f"channel-pruned-{round(channel_fraction * 100)}", _make_channel_pruned))
    for precision in ("fp16", "int8"):
        if f"trt-{precision}" in kinds:
            steps.append((f"trt-{precision}", _make_trt(precision)))
    total = len(steps) + 2
    tick = progress or (lambda _d, _c, _t: None)

    tick("checking the model", 0, total)
    info, model = inspect_model(model_path)
    calibration = None
    if calibration_dir is not None:
        if len(info.inputs) != 1:
            raise JellyBeanError(
                f"{info.path}: calibration data feeds one input, but the model has {len(info.inputs)} "
                f"({', '.join(s.name for s in info.inputs)}); static int8 calibration needs a single-input model"
            )
        calibration = load_calibration(calibration_dir, info.inputs[0], dims=dims, max_samples=calibration_samples,
                                       min_samples=min_calibration_samples, source=info.path)
    feeds = {b: random_inputs(info.inputs, b, dims, seed=b, source=info.path) for b in (1, 2)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        op_dir = staging / operator
        work = staging / ".work"
        op_dir.mkdir()
        work.mkdir()
        ctx = _Context(info, model, op_dir, work, dims, calibration, intra_op_threads, channel_fraction,
                       Path(engine_cache) if engine_cache else None, max_batch)
        built: list[_Built] = []
        skipped: list[Skipped] = []
        deviation: dict[str, float] = {}
        reference: dict[int, dict[str, np.ndarray]] = {}
        for done, (name, make) in enumerate(steps, start=1):
            tick(f"building {name}", done, total)
            try:
                item = make(ctx)
                path = op_dir / item.filename
                if path.suffix == ".onnx":
                    _validate_onnx(path)
                try:
                    outputs = _run(path, feeds, intra_op_threads)
                except JellyBeanError as exc:
                    if name == "fp32":
                        raise
                    raise _Skip(f"validation: {exc}") from None
                if name == "fp32":
                    reference = outputs
                deviation[name] = _compare(name, reference, outputs)
                built.append(item)
            except _Skip as why:
                _drop(op_dir, name)
                skipped.append(Skipped(name, str(why)))
                log.warning("variant %s of %s skipped: %s", name, operator, why)
            except JellyBeanError as exc:
                # Engines are optional unless asked for: no GPU, no fast int8, ... skip them.
                if tensorrt is not None or not name.startswith("trt-"):
                    raise
                _drop(op_dir, name)
                skipped.append(Skipped(name, str(exc)))
                log.warning("variant %s of %s skipped: %s", name, operator, exc)
            except Exception as exc:  # a converter / quantizer that cannot handle this graph
                if name == "fp32":
                    raise JellyBeanError(f"{info.path}: cannot be prepared ({_first_line(exc)})") from None
                _drop(op_dir, name)
                skipped.append(Skipped(name, f"{type(exc).__name__}: {_first_line(exc)}"))
                log.warning("variant %s of %s skipped: %s: %s", name, operator, type(exc).__name__, exc)

        output_kb = sum(
            v[0].nbytes for v in reference[1].values() if getattr(v, "ndim", 0) >= 1
        ) / 1024.0 if reference else None
        variants = []
        for item in built:
            path = op_dir / item.filename
            if prefix:
                path = path.rename(op_dir / f"{prefix}{item.filename}")
            size_mb = path.stat().st_size / 2**20
            variants.append(Variant(
                name=f"{prefix}{item.name}",
                model=f"{operator}/{path.name}",
                precision=item.precision,
                memory_mb=max(0.1, math.ceil(size_mb * 10) / 10),
                output_kb=round(output_kb, 3) if output_kb else None,
                sha256=sha256_file(path),
                description=item.description,
            ))
        entry = ZooOperator(name=operator, task=task, variants=tuple(variants))
        deviation = {f"{prefix}{name}": d for name, d in deviation.items()}
        skipped = [Skipped(f"{prefix}{s.variant}", s.reason) for s in skipped]
        tick("writing the zoo", total - 1, total)
        manifest = _commit(staging, op_dir, out_dir, entry, family)
        tick("done", total, total)
        return BuildResult(entry, manifest, tuple(skipped), deviation, calibration.origin if calibration else "")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _drop(op_dir: Path, name: str) -> None:
    for p in op_dir.glob(f"{name}.*"):
        with contextlib.suppress(OSError):
            p.unlink()


def _commit(staging: Path, op_dir: Path, out_dir: Path, entry: ZooOperator, family: str | None = None) -> Path:
    """Move the built files into ``out_dir/<operator>/`` and write the manifest, or change nothing.

    Files the new build replaces are moved aside first and put back if anything fails. Files of
    the operator's previous build that the new manifest no longer lists are removed afterwards.
    """
    created_root = not out_dir.exists()
    out_dir.mkdir(exist_ok=True)
    target_dir = out_dir / entry.name
    created_dir = False
    moved: list[Path] = []  # new files now in place
    backups: list[tuple[Path, Path]] = []  # (backup, original location)
    backup_dir = staging / ".replaced"
    try:
        with zoo_lock(out_dir):
            old = read_manifest(out_dir)
            new = merge_operator(old, entry, zoo_name=out_dir.name, family=family)
            if not target_dir.exists():
                target_dir.mkdir()
                created_dir = True
            backup_dir.mkdir(exist_ok=True)
            for src in sorted(op_dir.iterdir()):
                dst = target_dir / src.name
                if dst.exists():
                    keep = backup_dir / src.name
                    os.replace(dst, keep)
                    backups.append((keep, dst))
                move_file(src, dst)
                moved.append(dst)
            write_manifest(out_dir, new)
    except BaseException:
        for dst in moved:
            with contextlib.suppress(OSError):
                dst.unlink()
        for keep, dst in backups:
            with contextlib.suppress(OSError):
                os.replace(keep, dst)
        if created_dir:
            with contextlib.suppress(OSError):
                target_dir.rmdir()
        if created_root:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    # The manifest is in place: remove the previous build's files it no longer lists.
    listed = {(out_dir / v.model).resolve() for op in new.operators for v in op.variants if v.model}
    previous = old.operator(entry.name) if old is not None else None
    for v in previous.variants if previous is not None else ():
        if not v.model:
            continue
        path = (out_dir / v.model).resolve()
        if path not in listed and path.parent == target_dir.resolve() and path.exists():
            with contextlib.suppress(OSError):
                path.unlink()
    return manifest_path(out_dir)
