"""Inference backends behind one interface: ONNX Runtime and native TensorRT engines.

Every backend loads one model file, runs ``infer({input name: array}) -> {output name: array}``
and releases what it holds on ``close()``; backends are context managers. Heavy libraries
(onnxruntime, tensorrt, the CUDA runtime) are imported when a backend loads a model, never at
import time of this module.

``open_backend(path)`` picks the backend from the file type and what is installed:

- ``.onnx``  -> :class:`OrtBackend`, with the best execution provider ORT offers here
  (TensorRT EP > CUDA EP > CPU EP) unless one is asked for;
- ``.engine`` / ``.plan`` -> :class:`TensorRTBackend` (needs the ``tensorrt`` package and a GPU).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jellybean.errors import JellyBeanError, NotSupportedError

# ONNX Runtime execution providers, best first.
PROVIDER_ORDER: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
PROVIDER_ALIASES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan")
ONNX_SUFFIXES: tuple[str, ...] = (".onnx",)

# ONNX tensor element types as ORT names them -> numpy dtypes.
_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, shape (None for a dynamic dimension) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    #: The symbolic name of each dynamic dimension where the model gives one (``batch``, ``height``).
    dim_params: tuple[str | None, ...] = ()

    @property
    def batch_dynamic(self) -> bool:
        """True when the first dimension (the batch) is dynamic."""
        return bool(self.shape) and self.shape[0] is None


class Backend(ABC):
    """The interface every inference backend implements."""

    #: What runs the model, e.g. ``CPUExecutionProvider`` or ``TensorRT 10.3``.
    provider: str = ""
    #: The model file this backend has loaded, once loaded.
    path: Path | None = None
    #: Set by ``load``.
    _inputs: tuple[TensorSpec, ...] = ()
    _outputs: tuple[TensorSpec, ...] = ()

    @abstractmethod
    def load(self, path: str | os.PathLike) -> "Backend":
        """Load a model file; return ``self``. Raises JellyBeanError naming the file on failure."""

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs."""
        return self._inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """The model's outputs (shapes as declared; dynamic dims are None)."""
        return self._outputs

    @abstractmethod
    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once on ``inputs`` (every input by name); return every output by name."""

    @abstractmethod
    def close(self) -> None:
        """Release the session / engine and any device memory. Safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Shared helpers -------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if self.path is None:
            raise JellyBeanError(f"{type(self).__name__}: no model loaded; call load(path) first")

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every declared input present, no unknown ones, ranks right; dtypes cast within their kind."""
        specs = {s.name: s for s in self.input_specs}
        missing = [n for n in specs if n not in inputs]
        if missing:
            raise JellyBeanError(
                f"{self.path}: missing input(s) {', '.join(repr(m) for m in missing)}; "
                f"the model takes {', '.join(repr(n) for n in specs)}"
            )
        unknown = [n for n in inputs if n not in specs]
        if unknown:
            raise JellyBeanError(
                f"{self.path}: unknown input(s) {', '.join(repr(u) for u in unknown)}; "
                f"the model takes {', '.join(repr(n) for n in specs)}"
            )
        out: dict[str, np.ndarray] = {}
        for name, spec in specs.items():
            arr = np.asarray(inputs[name])
            if len(arr.shape) != len(spec.shape):
                raise JellyBeanError(
                    f"{self.path}: input '{name}' has shape {arr.shape} but the model expects rank "
                    f"{len(spec.shape)} {_shape_str(spec.shape)}; reshape the input"
                )
            for i, (got, want) in enumerate(zip(arr.shape, spec.shape)):
                if want is not None and got != want:
                    raise JellyBeanError(
                        f"{self.path}: input '{name}' has shape {arr.shape} but the model expects "
                        f"{_shape_str(spec.shape)} (dimension {i} must be {want}); resize the input"
                    )
            if arr.dtype != spec.dtype:
                if arr.dtype.kind != spec.dtype.kind and not (arr.dtype.kind in "iu" and spec.dtype.kind in "iu"):
                    raise JellyBeanError(
                        f"{self.path}: input '{name}' is {arr.dtype} but the model expects {spec.dtype}; "
                        "convert the input"
                    )
                arr = arr.astype(spec.dtype)
            out[name] = np.ascontiguousarray(arr)
        return out


def _shape_str(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _check_file(path: Path, suffixes: tuple[str, ...], what: str) -> None:
    if not path.exists():
        raise JellyBeanError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise JellyBeanError(f"{path}: is a directory; give {what} file")
    if not os.access(path, os.R_OK):
        raise JellyBeanError(f"{path}: cannot be read (permission denied); make it readable")
    if path.suffix.lower() not in suffixes:
        raise JellyBeanError(
            f"{path}: not {what} file (suffix '{path.suffix}'); give a file ending in {' or '.join(suffixes)}"
        )


def concrete_shape(spec: TensorSpec, batch: int, dims: Mapping[str, int] | None = None,
                   source: str | os.PathLike = "") -> tuple[int, ...]:
    """``spec``'s shape with the batch (first) dimension set to ``batch`` and other dynamic
    dimensions taken from ``dims`` by their symbolic name (or by ``<input>:<axis>``)."""
    dims = dims or {}
    out: list[int] = []
    for axis, d in enumerate(spec.shape):
        if d is not None:
            if axis == 0 and d != batch:
                raise JellyBeanError(
                    f"{source}: input '{spec.name}' has a fixed batch dimension of {d}, so batch {batch} cannot run; "
                    "export the model with a dynamic batch axis"
                )
            out.append(d)
        elif axis == 0:
            out.append(batch)
        else:
            param = spec.dim_params[axis] if axis < len(spec.dim_params) else None
            value = dims.get(param) if param else None
            value = value if value is not None else dims.get(f"{spec.name}:{axis}")
            if value is None:
                label = f"'{param}'" if param else f"{spec.name}:{axis}"
                raise JellyBeanError(
                    f"{source}: input '{spec.name}' {_shape_str(spec.shape)} has a dynamic dimension {label} at axis "
                    f"{axis}; give its size (--dim {param or f'{spec.name}:{axis}'}=N) or export with a fixed size"
                )
            out.append(int(value))
    return tuple(out)


def random_inputs(specs: tuple[TensorSpec, ...] | list[TensorSpec], batch: int,
                  dims: Mapping[str, int] | None = None, seed: int = 0,
                  source: str | os.PathLike = "") -> dict[str, np.ndarray]:
    """Seeded random inputs of the model's shapes: floats uniform in [0, 1), integers in [0, 10)."""
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec, batch, dims, source)
        if spec.dtype.kind == "f":
            feed[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feed[spec.name] = rng.random(shape) < 0.5
        else:
            feed[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
    return feed


# ONNX Runtime --------------------------------------------------------------------------------


def resolve_provider(name: str, available: list[str] | tuple[str, ...]) -> str:
    """Map a short (``cpu``, ``cuda``, ``tensorrt``) or full provider name to an available one."""
    full = PROVIDER_ALIASES.get(name.lower(), name)
    if full not in available:
        raise NotSupportedError(
            f"execution provider '{name}' is not available in this onnxruntime build "
            f"(available: {', '.join(available)}); install onnxruntime-gpu for CUDA/TensorRT or pick another"
        )
    return full


def best_provider(available: list[str] | tuple[str, ...]) -> str:
    """The first of TensorRT EP > CUDA EP > CPU EP that ``available`` lists."""
    for name in PROVIDER_ORDER:
        if name in available:
            return name
    if available:
        return available[0]
    raise NotSupportedError("onnxruntime reports no execution providers; reinstall onnxruntime")


def default_threads() -> int:
    """Cores this process may run on (respects CPU affinity / container limits when visible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OrtBackend(Backend):
    """ONNX Runtime session on the best available (or an explicit) execution provider.

    ``provider`` may be ``None`` (best of TensorRT EP > CUDA EP > CPU EP), a short name
    (``cpu``, ``cuda``, ``tensorrt``) or an ORT provider name. The CPU EP is always appended as
    the fallback for nodes the chosen provider cannot run. ``intra_op_threads`` fixes the size
    of ORT's intra-op thread pool (default: the cores this process may use), so that timings
    are reproducible.
    """

    def __init__(
        self,
        provider: str | None = None,
        *,
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        graph_optimization: str = "all",
        log_severity: int = 3,
    ) -> None:
        self.requested_provider = provider
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.graph_optimization = graph_optimization
        self.log_severity = log_severity
        self.provider = ""
        self.path = None
        self._session: Any = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def load(self, path: str | os.PathLike) -> "OrtBackend":
        import onnxruntime as ort

        path = Path(path)
        _check_file(path, ONNX_SUFFIXES, "an ONNX model")
        available = ort.get_available_providers()
        chosen = (
            resolve_provider(self.requested_provider, available)
            if self.requested_provider
            else best_provider(available)
        )
        # The chosen provider first, then the weaker ones available (nodes it cannot run fall back to them).
        rank = PROVIDER_ORDER.index(chosen) if chosen in PROVIDER_ORDER else -1
        providers = [chosen] + [p for p in PROVIDER_ORDER[rank + 1:] if p in available and p != chosen]
        if "CPUExecutionProvider" not in providers:
            providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads or default_threads()
        options.inter_op_num_threads = max(1, self.inter_op_threads)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = self.log_severity
        options.graph_optimization_level = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            raise JellyBeanError(
                f"{path}: onnxruntime cannot load this model ({_first_line(exc)}); "
                "check that it is a valid ONNX model (onnx.checker.check_model)"
            ) from None
        self.close()
        self._session = session
        self.path = path
        # What ORT actually enabled: it silently drops a GPU provider whose libraries are missing.
        self.provider = session.get_providers()[0]
        self._inputs = tuple(_ort_spec(i) for i in session.get_inputs())
        self._outputs = tuple(_ort_spec(o) for o in session.get_outputs())
        return self

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._require_loaded()
        feed = self._check_inputs(inputs)
        try:
            results = self._session.run(None, feed)
        except Exception as exc:
            raise JellyBeanError(f"{self.path}: inference failed ({_first_line(exc)})") from None
        return {spec.name: value for spec, value in zip(self._outputs, results)}

    def close(self) -> None:
        self._session = None
        self.path = None


def _ort_spec(node: Any) -> TensorSpec:
    dtype = _ORT_DTYPES.get(node.type)
    if dtype is None:
        raise NotSupportedError(f"tensor '{node.name}' has type {node.type}, which jellybean backends do not handle")
    dims = list(node.shape or ())
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in dims)
    params = tuple(d if isinstance(d, str) and d else None for d in dims)
    return TensorSpec(node.name, shape, np.dtype(dtype), params)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]


# CUDA runtime (ctypes, as Polygraphy does: no extra Python dependency) ---------------------------

_H2D, _D2H = 1, 2
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76


class CudaRuntime:
    """The few CUDA runtime calls TensorRT needs: device memory, copies, a stream, device info."""

    def __init__(self) -> None:
        self._lib = self._open()

    @staticmethod
    def _candidates() -> list[str]:
        names: list[str] = []
        found = ctypes.util.find_library("cudart")
        if found:
            names.append(found)
        try:  # the pip wheels (tensorrt-cu12 depends on nvidia-cuda-runtime-cu12)
            import importlib.util

            spec = importlib.util.find_spec("nvidia.cuda_runtime")
            for root in (spec.submodule_search_locations or []) if spec else []:
                names.extend(str(p) for p in sorted(Path(root, "lib").glob("libcudart.so*")))
        except (ImportError, ValueError):
            pass
        names += ["libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "cudart64_12.dll", "cudart64_110.dll"]
        return names

    def _open(self) -> ctypes.CDLL:
        for name in self._candidates():
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
        raise NotSupportedError("CUDA runtime (libcudart) not found; install the CUDA toolkit or nvidia-cuda-runtime")

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            self._lib.cudaGetErrorString.restype = ctypes.c_char_p
            msg = self._lib.cudaGetErrorString(status).decode(errors="replace")
            raise JellyBeanError(f"CUDA {call} failed: {msg} (error {status})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(1, nbytes))), "cudaMalloc")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        if ptr:
            self._check(self._lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def htod(self, dst: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._check(
            self._lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(array.ctypes.data),
                                 ctypes.c_size_t(array.nbytes), _H2D),
            "cudaMemcpy (host to device)",
        )

    def dtoh(self, array: np.ndarray, src: int) -> None:
        self._check(
            self._lib.cudaMemcpy(ctypes.c_void_p(array.ctypes.data), ctypes.c_void_p(src),
                                 ctypes.c_size_t(array.nbytes), _D2H),
            "cudaMemcpy (device to host)",
        )

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self._check(self._lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_synchronize(self, stream: int) -> None:
        self._check(self._lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        if stream:
            self._check(self._lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def set_device(self, device: int) -> None:
        self._check(self._lib.cudaSetDevice(ctypes.c_int(device)), "cudaSetDevice")

    def device_name(self, device: int = 0) -> str:
        # cudaDeviceProp starts with `char name[256]` in every CUDA version; the rest varies.
        buf = ctypes.create_string_buffer(8192)
        fn = getattr(self._lib, "cudaGetDeviceProperties_v2", None) or self._lib.cudaGetDeviceProperties
        self._check(fn(buf, ctypes.c_int(device)), "cudaGetDeviceProperties")
        return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")

    def compute_capability(self, device: int = 0) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, device), "cudaDeviceGetAttribute")
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, device), "cudaDeviceGetAttribute")
        return major.value, minor.value


def import_tensorrt() -> Any:
    """``import tensorrt`` or a NotSupportedError saying how to get it."""
    try:
        import tensorrt  # noqa: PLC0415
    except ImportError as exc:
        raise NotSupportedError(
            f"TensorRT not installed: the `tensorrt` Python package cannot be imported ({exc}); "
            "install it on a machine with an NVIDIA GPU (pip install 'jellybean[tensorrt]') "
            "or use the ONNX variants with onnxruntime"
        ) from None
    return tensorrt


# Native TensorRT -----------------------------------------------------------------------------


class TensorRTBackend(Backend):
    """A serialized TensorRT engine (TensorRT 10 tensor API): deserialize, allocate, run.

    Engines are specific to the GPU model, compute capability and TensorRT version they were
    built with; a mismatch is reported as an error naming the file. Device buffers grow to the
    largest batch seen and are reused.
    """

    def __init__(self, device: int = 0) -> None:
        self.device = device
        self.provider = ""
        self.path = None
        self._trt: Any = None
        self._cuda: CudaRuntime | None = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream = 0
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def load(self, path: str | os.PathLike) -> "TensorRTBackend":
        path = Path(path)
        _check_file(path, ENGINE_SUFFIXES, "a TensorRT engine")
        trt = import_tensorrt()
        self.close()
        self._trt = trt
        self._cuda = CudaRuntime()
        self._cuda.set_device(self.device)
        logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise JellyBeanError(
                f"{path}: TensorRT cannot deserialize this engine; engines only load on the GPU model and "
                f"TensorRT version ({trt.__version__} here) that built them — rebuild it with `jellybean zoo build`"
            )
        self._runtime = runtime
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = self._cuda.stream_create()
        specs_in, specs_out = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(d if d >= 0 else None for d in engine.get_tensor_shape(name))
            spec = TensorSpec(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
            (specs_in if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else specs_out).append(spec)
        self._inputs, self._outputs = tuple(specs_in), tuple(specs_out)
        self.path = path
        self.provider = f"TensorRT {trt.__version__}"
        return self

    def _buffer(self, name: str, nbytes: int) -> int:
        cuda = self._require_cuda()
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            cuda.free(ptr)
            ptr, size = cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._require_loaded()
        cuda = self._require_cuda()
        feed = self._check_inputs(inputs)
        ctx = self._context
        for name, arr in feed.items():
            if not ctx.set_input_shape(name, arr.shape):
                raise JellyBeanError(
                    f"{self.path}: input '{name}' shape {arr.shape} is outside the engine's optimization "
                    "profile; rebuild the engine with a profile covering it"
                )
            ptr = self._buffer(name, arr.nbytes)
            cuda.htod(ptr, arr)
            ctx.set_tensor_address(name, ptr)
        outputs: dict[str, np.ndarray] = {}
        for spec in self._outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise NotSupportedError(
                    f"{self.path}: output '{spec.name}' has a data-dependent shape {shape}; "
                    "the TensorRT backend needs shapes known from the inputs"
                )
            out = np.empty(shape, dtype=spec.dtype)
            ctx.set_tensor_address(spec.name, self._buffer(spec.name, out.nbytes))
            outputs[spec.name] = out
        if not ctx.execute_async_v3(self._stream):
            raise JellyBeanError(f"{self.path}: TensorRT execution failed")
        cuda.stream_synchronize(self._stream)
        for name, out in outputs.items():
            cuda.dtoh(out, self._buffers[name][0])
        return outputs

    def _require_cuda(self) -> CudaRuntime:
        if self._cuda is None:
            raise JellyBeanError("TensorRTBackend: no engine loaded; call load(path) first")
        return self._cuda

    def close(self) -> None:
        if self._cuda is not None:
            for ptr, _ in self._buffers.values():
                try:
                    self._cuda.free(ptr)
                except JellyBeanError:
                    pass
            if self._stream:
                try:
                    self._cuda.stream_destroy(self._stream)
                except JellyBeanError:
                    pass
        self._buffers = {}
        self._stream = 0
        self._context = None
        self._engine = None
        self._runtime = None
        self.path = None


# Picking a backend ---------------------------------------------------------------------------


def tensorrt_available() -> bool:
    """True when ``import tensorrt`` would succeed (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def open_backend(path: str | os.PathLike, prefer: str | None = None, **options: Any) -> Backend:
    """Load ``path`` into the backend its file type and this machine's installation call for.

    ``prefer`` picks the ORT execution provider for an ``.onnx`` file (``cpu``, ``cuda``,
    ``tensorrt`` or a full provider name; default: the best available). ``.engine``/``.plan``
    files need native TensorRT. ``options`` go to the backend's constructor.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        if prefer and PROVIDER_ALIASES.get(prefer.lower(), prefer) not in ("TensorrtExecutionProvider", "native"):
            raise NotSupportedError(f"{path}: a TensorRT engine runs only on TensorRT, not on '{prefer}'")
        return TensorRTBackend(**options).load(path)
    if suffix in ONNX_SUFFIXES:
        return OrtBackend(prefer, **options).load(path)
    _check_file(path, ONNX_SUFFIXES + ENGINE_SUFFIXES, "a model")  # names what is wrong with the file
    raise JellyBeanError(f"{path}: unknown model file type; give an .onnx model or a TensorRT .engine/.plan")
