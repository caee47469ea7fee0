"""Strict, frozen spec models and the error formatting every YAML loader shares.

Every problem is reported as ``file: path.to.field: what is wrong, what to do``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from jellybean.errors import SpecError

M = TypeVar("M", bound=BaseModel)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A " did you mean 'x'?" hint, or "" when nothing is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def spec_error(path: str, message: str) -> PydanticCustomError:
    """A validation error raised from a model validator that points at ``path`` inside the file."""
    return PydanticCustomError("jellybean", "{message}", {"path": path, "message": message})


def require_unique_names(items, kind: str, verb: str = "defined"):
    """Raise at the first item whose ``name`` repeats an earlier one's; return the items."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise spec_error(f"[{i}].name", f"{kind} '{item.name}' is {verb} twice; give each a unique name")
        seen.add(item.name)
    return items


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...] | set[str]) -> str:
    """Message for a reference to a name that is not defined."""
    listing = ", ".join(sorted(known)) or "none"
    return f"unknown {kind} '{name}'{did_you_mean(name, known)} (known: {listing})"


class StrictModel(BaseModel):
    """Frozen model whose unknown keys are errors with a "did you mean" hint."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known: set[str] = set()
        for name, field in cls.model_fields.items():
            known.add(field.alias or name)
            known.add(name)
        unknown = [k for k in data if k not in known]
        if unknown:
            key = str(unknown[0])
            raise PydanticCustomError(
                "unknown_key",
                "unknown key '{key}'{hint}",
                {"key": key, "hint": did_you_mean(key, known) or f" (allowed: {', '.join(sorted(known))})"},
            )
        return data


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith(("function-", "tagged-union", "union")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_FIXES = {
    "missing": "add it",
    "unknown_key": "remove it or correct its spelling",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "string_type": "write a string",
    "list_type": "write a list (YAML `- item` lines)",
    "dict_type": "write a mapping (YAML `key: value` lines)",
    "model_type": "write a mapping (YAML `key: value` lines)",
    "literal_error": "use one of the allowed values",
    "enum": "use one of the allowed values",
    "bool_parsing": "write true or false",
    "too_short": "add entries",
}


def format_validation_error(source: str, err: ValidationError) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    errors = err.errors(include_url=False)
    # A list whose items failed also reports itself "too short"; the item errors say it better.
    failed = [tuple(e["loc"]) for e in errors if e["type"] != "too_short"]
    for e in errors:
        if e["type"] == "too_short" and any(f[: len(e["loc"])] == tuple(e["loc"]) and len(f) > len(e["loc"]) for f in failed):
            continue
        ctx = e.get("ctx") or {}
        kind = e["type"]
        loc = tuple(e["loc"])
        if kind == "jellybean":
            base = format_loc(loc)
            sub = ctx.get("path", "")
            path = f"{base}.{sub}" if base != "(top level)" and sub else (sub or base)
            line = f"{source}: {path}: {ctx.get('message', e['msg'])}"
        else:
            if kind == "unknown_key":
                loc = loc + (ctx.get("key", "?"),)
            msg = e["msg"]
            msg = msg[0].lower() + msg[1:] if msg else msg
            if kind not in ("missing", "unknown_key") and "input" in e and not isinstance(e["input"], (dict, list)):
                msg += f" (got {e['input']!r})"
            fix = _FIXES.get(kind)
            line = f"{source}: {format_loc(loc)}: {msg}" + (f"; {fix}" if fix and kind != "unknown_key" else "")
            if kind == "unknown_key":
                line += "" if "did you mean" in msg else "; remove it"
        if line not in seen:
            seen.add(line)
            problems.append(line)
    return problems


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into a SpecError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: file not found; check the path"]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: is a directory; give a YAML file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot be read ({exc}); give a readable UTF-8 YAML file"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown position)"
        problem = getattr(exc, "problem", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark:
            problem = f"{context} at line {cmark.line + 1}, column {cmark.column + 1}: {problem}"
        raise SpecError([f"{path}: {where}: invalid YAML ({problem}); fix the syntax there"]) from None
    if data is None:
        raise SpecError([f"{path}: (top level): the file is empty; write the spec as a YAML mapping"])
    return data


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` into ``model`` or raise a SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([f"{source}: (top level): expected a YAML mapping, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(source, err)) from None


def load_model(model: type[M], path: Path) -> M:
    return parse_model(model, read_yaml(path), str(path))
