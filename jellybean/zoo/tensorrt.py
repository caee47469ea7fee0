"""TensorRT engines (fp16, int8) built from a zoo's ONNX model, with an engine cache.

Everything here needs the ``tensorrt`` Python package (TensorRT 10 API) and an NVIDIA GPU; the
entry points call :func:`require_tensorrt` first, which raises
``NotSupportedError("TensorRT not installed: ...")`` when the package cannot be imported.

An engine only runs on the GPU model, compute capability and TensorRT version that built it, so
the cache key is ``sha256(device name | compute capability | TensorRT version | model sha256 |
precision | input shapes [| calibration data sha256 for int8])``. Cached engines live in
``$XDG_CACHE_HOME/jellybean/tensorrt`` (default ``~/.cache/jellybean/tensorrt``).

INT8 uses implicit quantization with an ``IInt8EntropyCalibrator2`` fed from the same
calibration samples the ONNX int8-static variant uses. TensorRT 10 deprecates implicit INT8
calibration in favour of explicit Q/DQ models: the ``int8-static`` ONNX variant run on the
TensorRT execution provider is that path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jellybean.agents.backends import CudaRuntime, import_tensorrt, tensorrt_available
from jellybean.errors import JellyBeanError, NotSupportedError

log = logging.getLogger("jellybean.zoo")

PRECISIONS = ("fp16", "int8")
__all__ = [
    "DeviceInfo", "EngineBuild", "PRECISIONS", "build_engine", "default_cache_dir", "device_info",
    "engine_cache_key", "require_tensorrt", "tensorrt_available",
]


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or ``NotSupportedError("TensorRT not installed: ...")``."""
    return import_tensorrt()



@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str

    @property
    def sm(self) -> str:
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass(frozen=True)
class EngineBuild:
    path: Path
    key: str
    device: DeviceInfo
    cache_hit: bool
    precision: str


def device_info(device: int = 0) -> DeviceInfo:
    trt = require_tensorrt()
    cuda = CudaRuntime()
    return DeviceInfo(cuda.device_name(device), cuda.compute_capability(device), str(trt.__version__))


def engine_cache_key(device: DeviceInfo, model_sha256: str, precision: str,
                     shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] | None = None,
                     calibration_sha256: str | None = None) -> str:
    """The cache key of one engine: everything that makes two engines differ."""
    parts = [
        device.name, f"{device.compute_capability[0]}.{device.compute_capability[1]}", device.tensorrt_version,
        model_sha256, precision,
    ]
    for name in sorted(shapes or {}):
        parts.append(f"{name}={shapes[name]}")  # type: ignore[index]
    if calibration_sha256:
        parts.append(f"calibration={calibration_sha256}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jellybean" / "tensorrt"


def _make_calibrator(trt: Any, cuda: CudaRuntime, samples: np.ndarray, batch: int, cache_file: Path) -> Any:
    """An IInt8EntropyCalibrator2 over ``samples`` (N, C, H, W float32), ``batch`` at a time."""

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.samples = np.ascontiguousarray(samples, dtype=np.float32)
            self.batch = batch
            self.index = 0
            self.pointer = cuda.malloc(self.samples[:batch].nbytes)

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str], *args: Any) -> list[int] | None:
            if self.index + self.batch > len(self.samples):
                return None
            chunk = np.ascontiguousarray(self.samples[self.index:self.index + self.batch])
            cuda.htod(self.pointer, chunk)
            self.index += self.batch
            return [self.pointer]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_bytes(bytes(cache))
            os.replace(tmp, cache_file)

        def release(self) -> None:
            cuda.free(self.pointer)
            self.pointer = 0

    return _EntropyCalibrator()


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    precision: str,
    *,
    input_shapes: Mapping[str, tuple[int | None, ...]],
    model_sha256: str,
    calibration: np.ndarray | None = None,
    max_batch: int = 8,
    opt_batch: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    workspace_mb: int = 1024,
    device: int = 0,
) -> EngineBuild:
    """Build (or take from the cache) a TensorRT engine of ``onnx_path`` at ``precision``.

    ``input_shapes`` gives every input's shape with ``None`` for the batch dimension (all other
    dimensions concrete); the engine gets one optimization profile for batch 1..``max_batch``.
    ``calibration`` (N, C, H, W float32) is required for int8.
    """
    trt = require_tensorrt()  # the guard: NotSupportedError("TensorRT not installed: ...")
    if precision not in PRECISIONS:
        raise JellyBeanError(f"TensorRT precision '{precision}' is not supported; use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise JellyBeanError(f"{onnx_path}: a TensorRT int8 engine needs calibration data; pass --calibration DIR")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    cuda = CudaRuntime()
    cuda.set_device(device)
    dev = DeviceInfo(cuda.device_name(device), cuda.compute_capability(device), str(trt.__version__))
    opt = opt_batch or max(1, max_batch // 2)
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
    for name, shape in input_shapes.items():
        if any(d is None for d in shape[1:]):
            raise JellyBeanError(f"{onnx_path}: input '{name}' {shape} has dynamic non-batch dimensions; give their sizes")
        rest = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
        profiles[name] = ((1, *rest), (opt, *rest), (max_batch, *rest))
    calib_sha = hashlib.sha256(np.ascontiguousarray(calibration).tobytes()).hexdigest() if precision == "int8" else None
    key = engine_cache_key(dev, model_sha256, precision, profiles, calib_sha)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{key}.engine"
    if cached.exists():
        shutil.copyfile(cached, engine_path)
        log.info("TensorRT %s engine for %s taken from the cache (%s)", precision, onnx_path.name, cached)
        return EngineBuild(engine_path, key, dev, True, precision)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "unknown parser error"
        raise JellyBeanError(f"{onnx_path}: TensorRT's ONNX parser rejected the model ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == "fp16":
        if not getattr(builder, "platform_has_fast_fp16", True):
            raise NotSupportedError(f"{dev.name} ({dev.sm}) has no fast fp16; skip the TensorRT fp16 engine")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in profiles:
            raise JellyBeanError(f"{onnx_path}: TensorRT sees an input '{name}' the ONNX graph does not declare")
        profile.set_shape(name, *profiles[name])
    config.add_optimization_profile(profile)
    calibrator = None
    if precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            raise NotSupportedError(f"{dev.name} ({dev.sm}) has no fast int8; skip the TensorRT int8 engine")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers without an int8 kernel fall back to fp16, not fp32
        samples = np.asarray(calibration, dtype=np.float32)  # not None: checked at the top
        batch = max(1, min(8, len(samples)))
        cal_profile = builder.create_optimization_profile()
        for name, (_, _, mx) in profiles.items():
            fixed = (batch, *mx[1:])
            cal_profile.set_shape(name, fixed, fixed, fixed)
        config.set_calibration_profile(cal_profile)
        calibrator = _make_calibrator(trt, cuda, samples, batch, cache / f"{key}.calib")
        config.int8_calibrator = calibrator
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.release()
    if serialized is None:
        raise JellyBeanError(
            f"{onnx_path}: TensorRT could not build a {precision} engine on {dev.name} (see TensorRT's log above)"
        )
    tmp = cache / f".{key}.engine.tmp"
    with open(tmp, "wb") as fh:
        fh.write(memoryview(serialized))
    os.replace(tmp, cached)
    shutil.copyfile(cached, engine_path)
    return EngineBuild(engine_path, key, dev, False, precision)
