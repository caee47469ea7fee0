"""The model-zoo manifest: the variants of every operator, their accuracy and per-hardware profiles."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from jellybean.spec.base import (
    MAX_KB,
    MAX_MEMORY_MB,
    MAX_MS,
    MAX_PERCENT,
    MAX_THROUGHPUT,
    MIN_MS,
    StrictModel,
    require_unique_names,
    spec_error,
    unknown_name,
)


class Profile(StrictModel):
    """What one variant does on one kind of hardware, as measured by `jellybean zoo profile`.

    With ``basis: operator`` (what `zoo profile` measures wherever an agent can run the variant)
    every figure is the operator's as a worker runs it: decode, pre- and post-processing included,
    per item of the plan (a frame, or one per box), so that ``1000 / latency_ms`` is the items/s a
    worker delivers at batch 1. ``model_ms`` is the bare model's time per call at batch 1, beside
    it for comparison; the planner never uses it. ``basis: model`` says the figures are the bare
    model's, because no operator implementation runs the variant here."""

    latency_ms: float = Field(ge=MIN_MS, le=MAX_MS, description="ms per item at batch 1 (1000 / items/s)")
    p90_ms: float | None = Field(None, ge=MIN_MS, le=MAX_MS)
    p99_ms: float | None = Field(None, ge=MIN_MS, le=MAX_MS)
    throughput: dict[int, float] = Field(
        default_factory=dict, description="items/s at each batch size measured"
    )
    peak_memory_mb: float | None = Field(None, gt=0, le=MAX_MEMORY_MB)
    execution_provider: str | None = None
    measured_at: str | None = None
    model_ms: float | None = Field(None, ge=MIN_MS, le=MAX_MS, description="the bare model's ms per call at batch 1")
    cpu_ms: float | None = Field(None, ge=MIN_MS, le=MAX_MS, description="an agent's CPU ms per item at batch 1, all "
                                                                      "its threads")
    basis: Literal["operator", "model"] | None = Field(
        None, description="operator: measured as an agent runs it; model: the bare model only; none: written by hand")
    threads: int | None = Field(None, ge=1, le=1024, description="ONNX Runtime intra-op threads it was measured with")
    inputs: str | None = Field(None, description="what it was measured on")

    @field_validator("throughput")
    @classmethod
    def _positive(cls, value: dict[int, float]) -> dict[int, float]:
        for batch, rate in value.items():
            if batch < 1:
                raise spec_error(f"{batch}", "batch sizes start at 1; remove this entry")
            if rate <= 0:
                raise spec_error(f"{batch}", f"throughput must be > 0 items/s (got {rate}); measure it again")
            if rate > MAX_THROUGHPUT:
                raise spec_error(f"{batch}", f"throughput must be at most {MAX_THROUGHPUT:g} items/s (got {rate:g}); "
                                             "measure it again")
        return value


class ParityModel(StrictModel):
    """A parity model of a variant (ParM): trained so that P(E(x1..xk)) ≈ F(x1) + ... + F(xk)."""

    k: int = Field(ge=1, le=8, description="items per parity query (1: a backup model, a cheaper network "
                                               "trained to reproduce the variant's outputs)")
    encoder: Literal["concat", "add"] = Field(description="how k inputs become one: tiles side by side, or their sum")
    model: str = Field(min_length=1, description="ONNX file relative to the manifest")
    sha256: str | None = None
    profiles: dict[str, Profile] = Field(
        default_factory=dict, description="per hardware name; none: the base variant's (the same architecture)")
    metrics: dict[str, float] = Field(default_factory=dict, description="decoded against original outputs")


class Variant(StrictModel):
    name: str = Field(min_length=1)
    model: str | None = Field(None, description="ONNX file relative to the manifest; none for built-in operators")
    accuracy: float | None = Field(
        None, gt=0, le=1, description="per-variant factor in (0, 1]; factors of all operators compose by product"
    )
    memory_mb: float = Field(0.0, ge=0, le=MAX_MEMORY_MB, description="memory the loaded variant needs on a worker")
    output_kb: float | None = Field(None, gt=0, le=MAX_KB, description="KB per output item, overrides the workflow edge")
    precision: str | None = None
    profiles: dict[str, Profile] = Field(default_factory=dict, description="per hardware name")
    metrics: dict[str, float] = Field(default_factory=dict, description="evaluator results, for reference")
    sha256: str | None = None
    runtime: str | None = Field(
        None, description="implementation in the agents' operator registry; default by the operator's task"
    )
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="options for the implementation (thresholds, sizes)"
    )
    parity: tuple[ParityModel, ...] = Field((), description="parity models for `redundancy: {parity: k}`")
    approximates: str | None = Field(
        None, min_length=1, description="the exact variant of this operator that this one approximates (a sampled "
                                        "re-ID embeds a sample of the crops the exact one embeds): `plan` also "
                                        "plans without approximation, and `explain` says what it saves")
    description: str = ""

    def parity_for(self, k: int) -> ParityModel | None:
        return next((m for m in self.parity if m.k == k), None)

    @field_validator("params")
    @classmethod
    def _stride(cls, params: dict[str, float | int | str | bool]) -> dict[str, float | int | str | bool]:
        stride = params.get("stride", 1)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise spec_error("params.stride", f"is {stride!r}; give a whole number of frames >= 1 (1: every frame)")
        return params

    @property
    def output_scale(self) -> float:
        """Outputs that carry work downstream per input: a strided variant (`params.stride: s`) looks
        at every s-th frame of a stream, and the others pass on with nothing in them, so what comes
        after it gets 1/s of the crops. The planner, `--adapt` and `simulate` scale the load of
        everything downstream by it."""
        return 1.0 / int(self.params.get("stride", 1))


class ZooOperator(StrictModel):
    name: str = Field(min_length=1)
    task: str = Field("generic", description="evaluator task: detection, reid, classification, tracking, ...")
    variants: tuple[Variant, ...] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _unique(cls, items: tuple[Variant, ...]) -> tuple[Variant, ...]:
        items = require_unique_names(items, "variant", verb="listed")
        exact = {v.name for v in items if v.approximates is None}
        for i, v in enumerate(items):
            if v.approximates is not None and v.approximates not in exact:
                raise spec_error(f"[{i}].approximates",
                                 f"is {v.approximates!r}; name an exact variant of this operator (one without "
                                 f"`approximates`): {', '.join(sorted(exact)) or 'there is none'}")
        return items

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


class AccuracyRow(StrictModel):
    variants: tuple[str, ...] = Field(min_length=1)
    accuracy: float = Field(ge=0, le=MAX_PERCENT, description="a fraction in [0, 1], or percent in [0, 100]")


class AccuracyTable(StrictModel):
    """Measured end-to-end accuracy for combinations of variants of ``operators``.

    Combinations missing from the table are not allowed in a plan. Accuracies are fractions, or
    percent when any exceeds 1 (the prototype's profiles are in percent); then every one must be."""

    operators: tuple[str, ...] = Field(min_length=1)
    rows: tuple[AccuracyRow, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> "AccuracyTable":
        if len(set(self.operators)) != len(self.operators):
            raise spec_error("operators", "an operator is listed twice; list each once")
        seen: set[tuple[str, ...]] = set()
        for i, row in enumerate(self.rows):
            if len(row.variants) != len(self.operators):
                raise spec_error(
                    f"rows[{i}].variants",
                    f"has {len(row.variants)} variant(s) but the table covers {len(self.operators)} operator(s) "
                    f"({', '.join(self.operators)}); give one variant per operator",
                )
            if row.variants in seen:
                raise spec_error(f"rows[{i}].variants", "this combination is listed twice; keep one")
            seen.add(row.variants)
        if self.in_percent:
            example = max(self.rows, key=lambda r: r.accuracy).accuracy
            for i, row in enumerate(self.rows):
                if 0 < row.accuracy <= 1:
                    raise spec_error(
                        f"rows[{i}].accuracy",
                        f"{row.accuracy:g} reads as a fraction while other rows are in percent (e.g. {example:g}); "
                        "write every accuracy of the table in the same unit",
                    )
        return self

    @property
    def in_percent(self) -> bool:
        """Whether the accuracies are in percent (some exceeds 1) rather than fractions."""
        return any(row.accuracy > 1 for row in self.rows)

    @property
    def scale(self) -> float:
        """The largest accuracy the table's unit allows: 100 in percent, else 1."""
        return MAX_PERCENT if self.in_percent else 1.0


class Zoo(StrictModel):
    kind: Literal["model-zoo"]
    name: str = Field(min_length=1)
    description: str = ""
    operators: tuple[ZooOperator, ...] = Field(min_length=1)
    accuracy_table: AccuracyTable | None = None
    accuracy_metric: str | None = Field(
        None, min_length=1, description="What the accuracy figures measure end to end, e.g. 'IDF1', or "
                                        "'AP@0.5:0.95 x mAP'. The replay report compares the plan's accuracy with "
                                        "the measured IDF1 only when this says IDF1.")

    @model_validator(mode="after")
    def _refs(self) -> "Zoo":
        names = [o.name for o in self.operators]
        for i, o in enumerate(self.operators):
            if o.name in names[:i]:
                raise spec_error(f"operators[{i}].name", f"'{o.name}' is listed twice; merge the entries")
        table = self.accuracy_table
        if table is not None:
            by_name = {o.name: o for o in self.operators}
            for j, op in enumerate(table.operators):
                if op not in by_name:
                    raise spec_error(f"accuracy_table.operators[{j}]", unknown_name("operator", op, names))
            for i, row in enumerate(table.rows):
                for j, (op, var) in enumerate(zip(table.operators, row.variants)):
                    known = [v.name for v in by_name[op].variants]
                    if var not in known:
                        raise spec_error(
                            f"accuracy_table.rows[{i}].variants[{j}]", unknown_name(f"variant of {op}", var, known)
                        )
        return self

    def operator(self, name: str) -> ZooOperator | None:
        return next((o for o in self.operators if o.name == name), None)
