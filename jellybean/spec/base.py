"""Strict, frozen spec models and the error formatting every YAML loader shares.

Every problem is reported as ``file: path.to.field: what is wrong, what to do``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from jellybean.errors import SpecError

M = TypeVar("M", bound=BaseModel)

# Limits far beyond any real deployment. A value past one is a slip (a unit mix-up, a run of extra
# zeros) and would carry the planner's products past what floats and MIP solvers hold (SCIP takes
# 1e20 as infinity), so validation refuses it rather than the solver choking on it later.
MAX_RATE = 1e6  # items/s of one stream
MAX_RATIO = 1e4  # items on an edge per item of its upstream node
MAX_COUNT = 1_000_000  # workers or streams at one site
MAX_KB = 1e8  # KB per item (100 GB)
MAX_PRICE = 1e6  # $/h of one worker, $ per GB over a link
MIN_MS, MAX_MS = 1e-6, 1e9  # latencies and time windows, ms (1 ns .. 11 days)
MAX_MEMORY_MB = 1e9
MAX_THROUGHPUT = 1e9  # items/s of one worker
MAX_BANDWIDTH_MBPS = 1e9
MAX_PERCENT = 100.0  # accuracies are fractions in [0, 1], or percent in [0, 100] (MAX_PERCENT)
# Spec files are a few levels deep; a deeper or larger document is malformed or hostile.
MAX_DEPTH = 64
MAX_NODES = 1_000_000  # values after YAML aliases are expanded


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

    # NaN and infinity are never valid input: every float field must be a finite number.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

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


# Tags of the branches of a union that a callable Discriminator picks between (see
# infrastructure.Site); pydantic puts the chosen tag in an error's location.
BRANCH_TAGS = ("<number>", "<mapping>")


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (part in BRANCH_TAGS or part.startswith(("function-", "tagged-union", "union"))):
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
    "int_parsing_size": "write a smaller whole number",
    "finite_number": "write a finite number (NaN and infinity are not allowed)",
    "recursion_loop": "write the value out without YAML aliases that refer to themselves",
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
                msg += f" (got {short_repr(e['input'])})"
            fix = _FIXES.get(kind)
            line = f"{source}: {format_loc(loc)}: {msg}" + (f"; {fix}" if fix and kind != "unknown_key" else "")
            if kind == "unknown_key":
                line += "" if "did you mean" in msg else "; remove it"
        if line not in seen:
            seen.add(line)
            problems.append(line)
    return problems


def short_repr(value: Any, limit: int = 80) -> str:
    """repr(value), cut to ``limit`` characters so that one problem stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What is wrong with a file that is not UTF-8, e.g. "not UTF-8 text (byte 0xff at offset 3)"."""
    bad = exc.object[exc.start : exc.start + 1]
    return f"not UTF-8 text (byte 0x{bad.hex() or '??'} at offset {exc.start})"


def check_shape(data: Any, source: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH, or with more than MAX_NODES values once YAML
    aliases are expanded (a "billion laughs" file), or that contains itself: validation walks every
    value, so such a document would exhaust the stack, the memory or the time."""
    depth: dict[int, int] = {}
    size: dict[int, int] = {}
    open_: set[int] = set()
    # Iterative post-order walk; a node shared through aliases is measured once.
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        if done:
            open_.discard(key)
            kids = [c for c in children if isinstance(c, (dict, list))]
            depth[key] = 1 + max((depth[id(c)] for c in kids), default=0)
            size[key] = 1 + len(children) + sum(size[id(c)] - 1 for c in kids)
            if depth[key] > MAX_DEPTH:
                raise SpecError([f"{source}: (top level): nested more than {MAX_DEPTH} levels deep; spec files are "
                                 "a few levels deep, fix the structure"])
            if size[key] > MAX_NODES:
                raise SpecError([f"{source}: (top level): holds more than {MAX_NODES:,} values once its YAML "
                                 "aliases are expanded; write the spec out plainly"])
            continue
        if key in depth:
            continue
        if key in open_:
            raise SpecError([f"{source}: (top level): a YAML alias refers to a value that contains it; "
                             "write the value out without the self-reference"])
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if isinstance(c, (dict, list)))


class _TooDeep(Exception):
    def __init__(self, mark: Any):
        self.mark = mark


try:  # libyaml's scanner and parser, several times faster than PyYAML's own
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _Parser  # type: ignore[assignment]
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _SpecLoader(Composer, _Parser, SafeConstructor, Resolver):
    """A safe loader (SafeLoader's constructors and resolver) whose composer, in Python, stops at
    MAX_DEPTH levels of nesting at once, rather than when Python's stack runs out (a second or more
    for a 5000-deep file). Events come from libyaml when PyYAML has it."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely, or raise a SpecError naming the line: syntax errors, nesting deeper
    than MAX_DEPTH, YAML aliases that expand past MAX_NODES values or into themselves."""
    try:
        loader = _SpecLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _TooDeep as exc:
        raise SpecError([f"{source}: line {exc.mark.line + 1}, column {exc.mark.column + 1}: nested more than "
                         f"{MAX_DEPTH} levels deep; spec files are a few levels deep, fix the structure there"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown position)"
        problem = getattr(exc, "problem", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark:
            problem = f"{context} at line {cmark.line + 1}, column {cmark.column + 1}: {problem}"
        raise SpecError([f"{source}: {where}: invalid YAML ({problem}); fix the syntax there"]) from None
    except RecursionError:
        raise SpecError([f"{source}: (top level): nested too deeply to parse; spec files are a few levels deep, "
                         "fix the structure"]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SpecError([f"{source}: (file): a value cannot be read ({exc}); write an ordinary number there"]) from None
    check_shape(data, source)
    return data


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into a SpecError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: file not found; check the path"]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: is a directory; give a YAML file"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"{path}: (file): {not_utf8(exc)}; save it as UTF-8 text"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot be read ({exc.strerror or exc}); give a readable UTF-8 YAML file"]) from None
    data = parse_yaml(text, str(path))
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
