"""Load any spec file by its `kind`, and validate a set of files together."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from jellybean.errors import SpecError
from jellybean.spec.base import did_you_mean, parse_model, read_yaml
from jellybean.spec.hardware import HardwareCatalog
from jellybean.spec.infrastructure import Infrastructure
from jellybean.spec.plan import Plan
from jellybean.spec.workflow import Workflow
from jellybean.spec.zoo import Zoo

KINDS: dict[str, type[BaseModel]] = {
    "workflow": Workflow,
    "model-zoo": Zoo,
    "hardware": HardwareCatalog,
    "infrastructure": Infrastructure,
    "plan": Plan,
}


def load_any(path: Path) -> tuple[str, BaseModel]:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError([f"{path}: (top level): expected a YAML mapping, got {type(data).__name__}"])
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        hint = did_you_mean(str(kind), KINDS) if isinstance(kind, str) else ""
        what = "missing" if kind is None else f"unknown kind {kind!r}{hint}"[:200]
        raise SpecError([f"{path}: kind: {what}; set `kind:` to one of {', '.join(KINDS)}"])
    return kind, parse_model(KINDS[kind], data, str(path))


def validate_files(files: list[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Validate each file; when a workflow, a zoo and an infrastructure are given, cross-check them."""
    ok: list[tuple[Path, str]] = []
    problems: list[str] = []
    by_kind: dict[str, list[Path]] = {}
    for path in files:
        try:
            kind, _ = load_any(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        ok.append((path, kind))
        by_kind.setdefault(kind, []).append(path)
    if not problems and all(len(by_kind.get(k, [])) == 1 for k in ("workflow", "model-zoo", "infrastructure")):
        from jellybean.planner.build import build_problem, load_inputs

        try:
            build_problem(load_inputs(by_kind["workflow"][0], by_kind["model-zoo"][0], by_kind["infrastructure"][0]))
        except SpecError as exc:
            problems.extend(exc.problems)
    elif not problems:
        for path in by_kind.get("infrastructure", []):
            from jellybean.planner.build import load_hardware

            try:
                load_hardware(parse_model(Infrastructure, read_yaml(path), str(path)), path)
            except SpecError as exc:
                problems.extend(exc.problems)
    return ok, problems
