"""The operator registry: every operator an agent can run, model-backed or built in.

An implementation registers under a name (`@register("yolov8-detector")`); a zoo variant names
its implementation with `runtime:` or gets the default for its operator's task (`DEFAULT_RUNTIME`).
"""

from jellybean.agents.operators.base import (  # noqa: F401
    DEFAULT_RUNTIME,
    Operator,
    OperatorConfig,
    create,
    known_runtimes,
    register,
    runtime_for,
)
