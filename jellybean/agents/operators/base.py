"""The operator interface and registry."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from jellybean.agents.items import Item
from jellybean.errors import JellyBeanError, NotSupportedError

# The implementation a variant gets when it does not name one, by its zoo operator's task.
DEFAULT_RUNTIME = {
    "detection": "yolov8-detector",
    "reid": "reid-embedder",
    "tracking": "sort-tracker",
    "association": "mtmc-associator",
    "parity": "parity-embedder",
}
# Modules that register the built-in implementations; imported on first lookup.
_BUILTIN_MODULES = ("jellybean.agents.operators.models", "jellybean.agents.operators.tracking",
                    "jellybean.agents.operators.association", "jellybean.agents.operators.parity",
                    "jellybean.agents.operators.sampled_reid")

_REGISTRY: dict[str, type["Operator"]] = {}


@dataclass(frozen=True)
class OperatorConfig:
    """What an agent knows when it starts one worker of an operator."""

    operator: str                       # workflow operator name ("detect")
    variant: str                        # zoo variant name ("det-w100-int8")
    model: Path | None = None           # local ONNX file for model operators
    provider: str | None = None         # preferred execution provider, None = best available
    threads: int | None = None          # intra-op threads for ONNX Runtime
    batch: int = 1                      # the plan's batch size
    params: dict[str, Any] = field(default_factory=dict)   # variant/implementation options


class Operator(ABC):
    """One worker of one operator. `process` maps a batch of input items to one output item each.

    `keyed` says what the runtime guarantees about the items a worker sees:
    - "item": any items, any order (stateless: detector, re-ID);
    - "stream": all items of a stream go to the same worker, in frame order (a tracker);
    - "global": all items of all streams go to one worker, each stream in frame order (association).
    Dropped items (``item.dropped`` set) reach `process` only for "stream"/"global" operators, so
    they can advance their clocks; an operator returns them as they are.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["model", "builtin"]] = "builtin"
    keyed: ClassVar[Literal["item", "stream", "global"]] = "item"
    accepts: ClassVar[tuple[str, ...]] = ()   # item kinds it consumes
    produces: ClassVar[str] = ""               # item kind it emits

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config

    @abstractmethod
    def process(self, items: list[Item]) -> list[Item]:
        """One output per input, in the same order, same (stream, frame, capture_ts)."""

    def stages(self) -> list[Callable[[Any], Any]] | None:
        """`process` cut into steps for a worker's pipeline, or None. A pipelined worker runs each
        step on its own thread, so that the steps of consecutive batches overlap: decode and the
        model (native code that lets go of the GIL) beside post-processing (mostly Python). The
        first step takes the batch's items, each later one what the step before returned, and the
        last returns the outputs: chained, they are `process`."""
        return None

    def reset_stream(self, stream: str) -> None:
        """Forget what is kept about `stream`: its frame counter restarted (a new session: a camera
        rebooted, a replay began again). Stateless operators keep nothing."""

    def close(self) -> None:
        """Release models and state."""

    def __enter__(self) -> "Operator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(name: str) -> Callable[[type[Operator]], type[Operator]]:
    def decorate(cls: type[Operator]) -> type[Operator]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise JellyBeanError(f"operator implementation '{name}' is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorate


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def known_runtimes() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def lookup(name: str) -> type[Operator]:
    _load_builtins()
    if name not in _REGISTRY:
        raise NotSupportedError(f"no operator implementation named '{name}'; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def runtime_for(task: str, runtime: str | None) -> str:
    """The implementation name for a variant: its own `runtime`, or the default for its task."""
    if runtime:
        return runtime
    if task not in DEFAULT_RUNTIME:
        raise NotSupportedError(
            f"no built-in implementation for task '{task}'; set `runtime:` on the variant to one of "
            f"{', '.join(known_runtimes())}")
    return DEFAULT_RUNTIME[task]


def create(runtime: str, config: OperatorConfig) -> Operator:
    return lookup(runtime)(config)
