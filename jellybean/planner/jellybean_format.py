"""Import the reference JellyBean prototype's optimizer input directory as a :class:`Problem`.

The directory is the one the prototype's ``optimizer/main.py --inputs DIR`` reads (see
DESIGN.md, "The JellyBean-format importer"): headerless CSV files, two JSON files, an accuracy
profile pickle and an optional ``config.yaml``. The semantics mirror the prototype's:

- capacity of a worker for a variant = 1000 / (latency_ms × ``LATENCY_OVERESTIMATE_RATIO``);
  an empty latency (what pandas writes for NaN) means the worker cannot run that variant; a written
  ``nan`` or ``inf`` is refused, as is every other non-finite number;
- an operator's rate is the least over its inputs of the upstream rate × the edge's ratio
  (ratio 1 where ``throughput_normalization_ratios.csv`` has no row or does not exist);
- the KB per item on ``u -> v`` for variants ``(a, b)`` is the first of the rows
  ``(a, b)``, ``(default, b)``, ``(a, default)``, ``(default, default)``;
- traffic to a worker of a higher tier costs the pair's link cost ($/GB) ×
  ``COMM_COST_SCALING_FACTOR``; a pair missing from the link csv costs 0; traffic inside a tier
  is free; traffic to a lower tier is not allowed; sources sit in tier 0;
- an operator the accuracy profiles do not mention always runs its ``default`` variant, and an
  operator they mention only runs the variants they list;
- accuracies (the profiles and the threshold) are fractions, or percent when a profile exceeds 1,
  as the shipped VQA profiles are (56.59).

Every number is checked as the YAML specs' are (jellybean.spec.base): finite, within a range far
beyond any real deployment, so that nothing overflows or divides by zero in the planner.

Identical workers (same tier, price, execution profile and link costs) are interchangeable, so
each class of them becomes one location holding one pool; that keeps the model small for
hundreds of workers and loses nothing.

The pickle is read with a restricted unpickler that only builds local stand-ins for the
prototype's three profile classes; anything else is refused before it can run.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple


from jellybean.errors import SpecError
from jellybean.planner.build import MAX_NODE_RATE, MIN_NODE_RATE
from jellybean.planner.problem import (
    Accuracy,
    AccuracyTable,
    Capability,
    Edge,
    Link,
    Location,
    Operator,
    Pool,
    Problem,
    Stream,
)
from jellybean.spec.base import (
    MAX_KB,
    MAX_MS,
    MAX_PERCENT,
    MAX_PRICE,
    MAX_RATE,
    MAX_RATIO,
    MIN_MS,
    check_shape,
    did_you_mean,
    not_utf8,
    parse_yaml,
    short_repr,
)

if TYPE_CHECKING:
    from jellybean.spec.plan import Plan

__all__ = ["load_jellybean_inputs", "jellybean_json", "read_accuracy_profiles", "DEFAULT_VARIANT"]

DEFAULT_VARIANT = "default"
SOURCES_LOCATION = "sources"

LOGICAL_GRAPH = "logical_graph.csv"
INJECTION_RATES = "input_injection_rates.csv"
MESSAGE_SIZES = "message_sizes.csv"
WORKERS_SPECS = "workers_specs.csv"
WORKERS_NUMBERS = "workers_numbers.csv"
WORKERS_PARTITION = "workers_partition.json"
WORKERS_LINKS = "workers_workers_link.csv"
SOURCES_LINKS = "sources_workers_link.csv"
RATIOS = "throughput_normalization_ratios.csv"
RATIOS_PER_VARIANT = "throughput_normalization_ratios_per_variant.csv"
ACCURACY_REQUIREMENT = "accuracy_requirement.json"
ACCURACY_PROFILES = "nodes_accuracy_profiles.pkl"
CONFIG = "config.yaml"

# The prototype's defaults (optimizer/config.py) when config.yaml does not set them.
CONFIG_DEFAULTS = {"LATENCY_OVERESTIMATE_RATIO": 1.0, "COMM_COST_SCALING_FACTOR": 1.0}
# The range each may take: latencies and costs are scaled by them.
CONFIG_RANGES = {"LATENCY_OVERESTIMATE_RATIO": (0.01, 100.0), "COMM_COST_SCALING_FACTOR": (1e-9, 1e6)}
# Workers of one type in workers_numbers.csv; the prototype lists workers one by one.
MAX_WORKERS_PER_TYPE = 10_000
# Sections the prototype's config knows; only INPUT matters to the problem.
CONFIG_SECTIONS = ("INPUT", "BEAM_SEARCH", "WORKER_ASSIGNMENT", "WORKER_PARTITION")

_MAX_PROBLEMS = 50


# ---------------------------------------------------------------------------------------------
# Problem collection
# ---------------------------------------------------------------------------------------------
class _Problems:
    """Every problem found so far, each as ``file: where: what is wrong, what to do``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: Path | str, where: str, message: str) -> None:
        self.items.append(f"{path}: {where}: {message}")

    def check(self) -> None:
        if not self.items:
            return
        items = self.items[:_MAX_PROBLEMS]
        if len(self.items) > _MAX_PROBLEMS:
            items.append(f"... and {len(self.items) - _MAX_PROBLEMS} more problems")
        raise SpecError(items)


# ---------------------------------------------------------------------------------------------
# CSV / JSON / YAML reading
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    line: int
    fields: tuple[str, ...]


@dataclass
class _Csv:
    path: Path
    columns: tuple[str, ...]
    rows: list[_Row]
    problems: _Problems

    def where(self, row: _Row) -> str:
        return f"line {row.line}"

    def add(self, row: _Row, message: str) -> None:
        self.problems.add(self.path, self.where(row), message)

    def name(self, row: _Row, index: int) -> str | None:
        value = row.fields[index]
        if not value:
            self.add(row, f"field {index + 1} ({self.columns[index]}) is empty; write a name there")
            return None
        return value

    def number(
        self,
        row: _Row,
        index: int,
        *,
        maximum: float,
        positive: bool = False,
        minimum: float = 0.0,
        missing_ok: bool = False,
    ) -> float | None:
        """The number in field ``index``; None (after reporting) when it is not one, is not finite,
        or lies outside [``minimum``, ``maximum``] (above 0 with ``positive``).

        With ``missing_ok`` an empty field gives NaN: the prototype's pandas writes NaN as an
        empty field and reads it as "not available". A written ``nan`` is refused like ``inf``.
        """
        text = row.fields[index]
        column = self.columns[index]
        if missing_ok and not text:
            return math.nan
        try:
            value = float(text)
        except ValueError:
            hint = " (these files have no header row; remove it)" if row.line == 1 else ""
            self.add(row, f"{column} {short_repr(text, 60)} is not a number; write a number{hint}")
            return None
        if not math.isfinite(value):
            hint = ", or leave the field empty where there is none" if missing_ok else ""
            self.add(row, f"{column} {short_repr(text, 60)} is not a finite number; write a finite number{hint}")
            return None
        if positive and value <= 0:
            self.add(row, f"{column} {text} must be greater than 0; write a positive number")
            return None
        if value < 0:
            self.add(row, f"{column} {text} is negative; write a number >= 0")
            return None
        if value < minimum:
            self.add(row, f"{column} {text} is below {minimum:g}; write a number of at least {minimum:g}")
            return None
        if value > maximum:
            self.add(row, f"{column} {short_repr(text, 60)} is above {maximum:g}, beyond any real deployment; "
                          f"write a smaller number (check the unit)")
            return None
        return value


def _read_text(path: Path, problems: _Problems, *, what: str) -> str | None:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        problems.add(path, "(file)", f"not found; the prototype's input directory needs {what}")
    except IsADirectoryError:
        problems.add(path, "(file)", "is a directory; it must be a file")
    except UnicodeDecodeError as exc:
        problems.add(path, "(file)", f"{not_utf8(exc)}; save it as UTF-8 text")
    except OSError as exc:
        problems.add(path, "(file)", f"cannot be read ({exc.strerror or exc}); give a readable UTF-8 file")
    return None


def _read_csv(
    path: Path,
    columns: tuple[str, ...],
    problems: _Problems,
    *,
    what: str,
    required: bool = True,
    nonempty: bool = True,
) -> _Csv:
    """Rows of a headerless CSV file, each with exactly ``len(columns)`` fields.

    Blank lines are skipped and trailing empty fields (a row ending in a comma, as some shipped
    files do) are dropped.
    """
    table = _Csv(path, columns, [], problems)
    if not required and not path.exists():
        return table
    text = _read_text(path, problems, what=what)
    if text is None:
        return table
    layout = ",".join(columns)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([line], strict=True))]
        except csv.Error as exc:
            problems.add(path, f"line {lineno}", f"is not valid CSV ({exc}); write it as `{layout}`")
            continue
        while len(fields) > len(columns) and fields[-1] == "":
            fields.pop()
        if len(fields) != len(columns):
            problems.add(
                path,
                f"line {lineno}",
                f"expected {len(columns)} comma-separated fields ({', '.join(columns)}), found {len(fields)}; "
                f"write the row as `{layout}`",
            )
            continue
        table.rows.append(_Row(lineno, tuple(fields)))
    if nonempty and not table.rows and not any(p.startswith(f"{path}:") for p in problems.items):
        problems.add(path, "(file)", f"has no rows; add {what} as `{layout}` rows")
    return table


def _read_json(path: Path, problems: _Problems, *, what: str) -> Any:
    text = _read_text(path, problems, what=what)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(path, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON ({exc.msg}); fix the syntax there")
        return None
    except RecursionError:
        problems.add(path, "(top level)", f"nested too deeply to parse; write {what}")
        return None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        problems.add(path, "(file)", f"a value cannot be read ({exc}); write an ordinary number there")
        return None
    try:
        check_shape(data, str(path))
    except SpecError as exc:
        problems.items.extend(exc.problems)
        return None
    if data is None:
        problems.add(path, "(top level)", f"holds null; write {what}")
    return data


def _read_config(path: Path, problems: _Problems) -> dict[str, float]:
    """The INPUT section of config.yaml over the prototype's defaults."""
    values = dict(CONFIG_DEFAULTS)
    if not path.exists():
        return values
    text = _read_text(path, problems, what="the optimizer configuration")
    if text is None:
        return values
    try:
        data = parse_yaml(text, str(path))
    except SpecError as exc:
        problems.items.extend(exc.problems)
        return values
    if data is None:
        return values
    if not isinstance(data, dict):
        problems.add(path, "(top level)", f"expected a mapping of sections ({', '.join(CONFIG_SECTIONS)}), "
                                          f"got {type(data).__name__}")
        return values
    for key in data:
        if key not in CONFIG_SECTIONS:
            hint = did_you_mean(str(key), CONFIG_SECTIONS) or f" (known: {', '.join(CONFIG_SECTIONS)})"
            problems.add(path, str(key), f"unknown section{hint}; remove it or correct its spelling")
    section = data.get("INPUT")
    if section is None:
        return values
    if not isinstance(section, dict):
        problems.add(path, "INPUT", f"expected a mapping ({', '.join(CONFIG_DEFAULTS)}), got {type(section).__name__}")
        return values
    for key, value in section.items():
        if key not in CONFIG_DEFAULTS:
            hint = did_you_mean(str(key), tuple(CONFIG_DEFAULTS)) or f" (known: {', '.join(CONFIG_DEFAULTS)})"
            problems.add(path, f"INPUT.{key}", f"unknown key{hint}; remove it or correct its spelling")
            continue
        low, high = CONFIG_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            problems.add(path, f"INPUT.{key}", f"{short_repr(value, 60)} is not a positive number; write a number > 0")
        elif not low <= value <= high:
            problems.add(path, f"INPUT.{key}", f"{value:g} is outside {low:g}..{high:g}; write a number in that range")
        else:
            values[key] = float(value)
    return values


# ---------------------------------------------------------------------------------------------
# The accuracy profile pickle
# ---------------------------------------------------------------------------------------------
class EndToEndAccuracyProfile:
    """Stand-in for the prototype's ``beam_search.EndToEndAccuracyProfile`` (operators, acc_profile)."""

    def __setstate__(self, state: Any) -> None:
        _set_state(self, state)


class OperatorAccuracyProfile:
    """Stand-in for ``beam_search.OperatorAccuracyProfile`` (op_name, inputs, acc_profile, cost_profile, weight)."""

    def __setstate__(self, state: Any) -> None:
        _set_state(self, state)


class AccSample(NamedTuple):
    """Stand-in for the prototype's ``beam_search.AccSample`` namedtuple."""

    inputs_acc: Any
    output_acc: Any


def _set_state(obj: object, state: Any) -> None:
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise pickle.UnpicklingError(f"{type(obj).__name__} state must be a mapping of attribute names")
    obj.__dict__.update(state)


class _ForeignObject(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _ProfileUnpickler(pickle.Unpickler):
    """An unpickler that can only build the three profile stand-ins (and plain containers)."""

    ALLOWED: Mapping[tuple[str, str], type] = {
        ("beam_search", "EndToEndAccuracyProfile"): EndToEndAccuracyProfile,
        ("beam_search", "OperatorAccuracyProfile"): OperatorAccuracyProfile,
        ("beam_search", "AccSample"): AccSample,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _ForeignObject(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_accuracy_profiles(path: Path) -> Any:
    """Unpickle the prototype's ``nodes_accuracy_profiles.pkl`` safely; raise SpecError otherwise."""
    try:
        with path.open("rb") as f:
            return _ProfileUnpickler(f).load()
    except FileNotFoundError:
        raise SpecError([f"{path}: (file): not found; the prototype's input directory needs the accuracy "
                         f"profiles it pickles"]) from None
    except _ForeignObject as exc:
        raise SpecError([
            f"{path}: (pickle): refuses to load '{exc.module}.{exc.name}': the accuracy profile pickle may only "
            f"hold beam_search.EndToEndAccuracyProfile, beam_search.OperatorAccuracyProfile and "
            f"beam_search.AccSample objects (other code named in a pickle would run on load); regenerate the "
            f"file with the prototype's beam_search module"
        ]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: (file): is a directory; it must be the pickle file"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: (file): cannot be read ({exc}); give a readable file"]) from None
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes is a bad file
        raise SpecError([f"{path}: (pickle): not a readable accuracy profile pickle ({type(exc).__name__}: {exc}); "
                         f"regenerate it with the prototype"]) from None


@dataclass(frozen=True)
class _Profiles:
    operators: tuple[str, ...]  # end-to-end table columns
    rows: dict[tuple[str, ...], float]
    variants: dict[str, tuple[str, ...]]  # per-operator profiles: operator -> variants they list

    @property
    def in_percent(self) -> bool:
        """Whether the accuracies are in percent (some exceeds 1), as the shipped VQA profiles are."""
        return any(v > 1 for v in self.rows.values())


def _check_profiles(path: Path, data: Any, problems: _Problems) -> _Profiles | None:
    def bad(where: str, message: str) -> None:
        problems.add(path, where, message)

    shape = ("{'end_to_end_profile': EndToEndAccuracyProfile, 'per_operator_profiles': "
             "[OperatorAccuracyProfile, ...]}")
    if isinstance(data, list):
        bad("(top level)", f"holds only per-operator profiles and no end-to-end profile; this importer needs the "
                           f"end-to-end accuracy table: pickle {shape}")
        return None
    if not isinstance(data, dict):
        bad("(top level)", f"expected {shape}, got {type(data).__name__}; regenerate the file with the prototype")
        return None
    e2e = data.get("end_to_end_profile")
    if not isinstance(e2e, EndToEndAccuracyProfile):
        got = "nothing" if e2e is None else type(e2e).__name__
        bad("end_to_end_profile", f"expected an EndToEndAccuracyProfile, got {got}; this importer needs the "
                                  f"end-to-end accuracy table: pickle {shape}")
        return None
    operators = getattr(e2e, "operators", None)
    table = getattr(e2e, "acc_profile", None)
    if not isinstance(operators, (list, tuple)) or not operators or not all(isinstance(o, str) for o in operators):
        bad("end_to_end_profile.operators",
            f"expected a non-empty list of operator names, got {short_repr(operators, 60)}")
        return None
    if not isinstance(table, dict) or not table:
        bad("end_to_end_profile.acc_profile", "expected a non-empty mapping {(variant, ...): accuracy}")
        return None
    rows: dict[tuple[str, ...], float] = {}
    for key, value in table.items():
        where = f"end_to_end_profile.acc_profile[{short_repr(key, 60)}]"
        if not isinstance(key, tuple) or len(key) != len(operators) or not all(isinstance(k, str) for k in key):
            bad(where, f"key must be a tuple of {len(operators)} variant names (one per operator "
                       f"{', '.join(operators)})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad(where, f"accuracy {short_repr(value, 60)} is not a finite number; regenerate the profile")
        elif not 0 <= value <= MAX_PERCENT:
            bad(where, f"accuracy {value:g} is outside 0..1 (a fraction) and 0..100 (percent); regenerate the profile")
        else:
            rows[key] = float(value)
    if any(v > 1 for v in rows.values()):
        example = max(rows.values())
        for key, value in rows.items():
            if 0 < value <= 1:
                bad(f"end_to_end_profile.acc_profile[{short_repr(key, 60)}]",
                    f"accuracy {value:g} reads as a fraction while others are in percent (e.g. {example:g}); "
                    f"regenerate the profile with every accuracy in one unit")
    variants: dict[str, tuple[str, ...]] = {}
    per_op = data.get("per_operator_profiles", [])
    if not isinstance(per_op, (list, tuple)):
        bad("per_operator_profiles", f"expected a list of OperatorAccuracyProfile, got {type(per_op).__name__}")
        return None
    for i, prof in enumerate(per_op):
        name = getattr(prof, "op_name", None)
        acc = getattr(prof, "acc_profile", None)
        if not isinstance(prof, OperatorAccuracyProfile) or not isinstance(name, str) or not isinstance(acc, dict) \
                or not all(isinstance(k, str) for k in acc):
            bad(f"per_operator_profiles[{i}]", "expected an OperatorAccuracyProfile with op_name and acc_profile "
                                                "{variant: [AccSample, ...]}")
            continue
        variants[name] = tuple(acc)
    return _Profiles(tuple(operators), rows, variants)


# ---------------------------------------------------------------------------------------------
# Loading, stage 1: every file on its own
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Files:
    """Every input file parsed on its own; nothing is checked against another file yet."""

    profile: str  # the execution profile's name as given, for hints
    graph: _Csv
    rates: _Csv
    ratios: _Csv
    execution: _Csv
    sizes: _Csv
    specs: _Csv
    numbers: _Csv
    worker_links: _Csv
    source_links: _Csv
    partition_path: Path
    partition: Any  # JSON, checked by _read_tiers
    requirement_path: Path
    requirement: Any  # JSON, checked by _read_threshold
    profiles_path: Path
    profiles: _Profiles
    scale: float  # COMM_COST_SCALING_FACTOR
    overestimate: float  # LATENCY_OVERESTIMATE_RATIO


def _read_files(directory: Path, profile: str, problems: _Problems) -> _Files:
    """Read every file, raising SpecError with all their problems before any cross-file check.

    A file that cannot be parsed would otherwise be reported again as every reference into it.
    """
    config = _read_config(directory / CONFIG, problems)
    graph = _read_csv(directory / LOGICAL_GRAPH, ("u", "v"), problems, what="the workflow's edges")
    rates = _read_csv(directory / INJECTION_RATES, ("source", "items_per_s"), problems,
                      what="each source's input rate")
    ratios = _read_csv(directory / RATIOS, ("u", "v", "ratio"), problems, what="edge rate ratios",
                       required=False, nonempty=False)
    execution = _read_csv(directory / profile, ("operator", "worker", "variant", "latency_ms"), problems,
                          what="the latency of each operator variant on each worker")
    sizes = _read_csv(directory / MESSAGE_SIZES, ("u", "v", "u_variant", "v_variant", "kb_per_item"), problems,
                      what="the message size of each edge")
    specs = _read_csv(directory / WORKERS_SPECS, ("worker", "price_per_hour"), problems,
                      what="each worker's price")
    numbers = _read_csv(directory / WORKERS_NUMBERS, ("worker_type", "count"), problems, what="worker counts",
                        required=False, nonempty=False)
    worker_links = _read_csv(directory / WORKERS_LINKS, ("from_worker", "to_worker", "cost_per_gb"), problems,
                             what="worker link costs", required=False, nonempty=False)
    source_links = _read_csv(directory / SOURCES_LINKS, ("source", "worker", "cost_per_gb"), problems,
                             what="source link costs", required=False, nonempty=False)
    partition_path = directory / WORKERS_PARTITION
    partition = _read_json(partition_path, problems,
                           what="the workers' tiers (a JSON list of lists of worker names, lowest tier first)")
    requirement_path = directory / ACCURACY_REQUIREMENT
    requirement = _read_json(requirement_path, problems,
                             what='the accuracy requirement {"sink": OPERATOR, "threshold": NUMBER}')
    if (directory / RATIOS_PER_VARIANT).exists():
        problems.add(directory / RATIOS_PER_VARIANT, "(file)",
                     "per-variant rate ratios are not supported (operator rates must not depend on the variants "
                     f"chosen); remove the file and give one ratio per edge in {RATIOS}")
    profiles_path = directory / ACCURACY_PROFILES
    profiles = _read_profiles(profiles_path, problems)
    problems.check()
    if profiles is None:  # unreachable: no profiles means a problem was reported; this narrows the type
        raise SpecError([f"{profiles_path}: (pickle): no accuracy profile could be read; regenerate it"])
    return _Files(
        profile=profile, graph=graph, rates=rates, ratios=ratios, execution=execution, sizes=sizes, specs=specs,
        numbers=numbers, worker_links=worker_links, source_links=source_links,
        partition_path=partition_path, partition=partition, requirement_path=requirement_path,
        requirement=requirement, profiles_path=profiles_path, profiles=profiles,
        scale=config["COMM_COST_SCALING_FACTOR"], overestimate=config["LATENCY_OVERESTIMATE_RATIO"],
    )


def _read_profiles(path: Path, problems: _Problems) -> _Profiles | None:
    try:
        return _check_profiles(path, read_accuracy_profiles(path), problems)
    except SpecError as exc:
        # Reported with the other files' problems rather than alone, so one run names them all.
        problems.items.extend(exc.problems)
        return None


def _read_named_numbers(
    table: _Csv,
    *,
    what: str,
    keep_one: str,
    maximum: float,
    positive: bool = False,
    refuse: Callable[[str], str | None] = lambda name: None,
) -> tuple[dict[str, float], dict[str, int]]:
    """The ``NAME,NUMBER`` rows of ``table`` as {name: number} and {name: line}.

    A repeated name, or one ``refuse`` gives a reason for, is reported and skipped. A name whose
    number is bad (reported) is kept with NaN, so that other files' references to it are not
    reported too; the loader stops on the reported problem before any number is used.
    """
    values: dict[str, float] = {}
    lines: dict[str, int] = {}
    for row in table.rows:
        name, value = table.name(row, 0), table.number(row, 1, positive=positive, maximum=maximum)
        if name is None:
            continue
        if value is None:
            value = math.nan
        if name in values:
            table.add(row, f"{what} '{name}' repeats line {lines[name]}; keep one {keep_one}")
        elif (reason := refuse(name)) is not None:
            table.add(row, reason)
        else:
            values[name] = value
            lines[name] = row.line
    return values, lines


# ---------------------------------------------------------------------------------------------
# Loading, stage 2: the logical graph, its sources, rates and ratios
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Graph:
    edges: tuple[tuple[str, str], ...]
    edge_line: dict[tuple[str, str], int]
    nodes: tuple[str, ...]  # first-appearance order
    node_line: dict[str, int]


def _read_graph(table: _Csv) -> _Graph:
    edges: list[tuple[str, str]] = []
    edge_line: dict[tuple[str, str], int] = {}
    nodes: list[str] = []
    node_line: dict[str, int] = {}
    for row in table.rows:
        u, v = table.name(row, 0), table.name(row, 1)
        if u is None or v is None:
            continue
        if u == v:
            table.add(row, f"edge {u} -> {v} loops back to itself; remove it")
            continue
        if (u, v) in edge_line:
            table.add(row, f"edge {u} -> {v} repeats line {edge_line[(u, v)]}; keep one of them")
            continue
        if (v, u) in edge_line:
            table.add(row, f"edge {u} -> {v} reverses line {edge_line[(v, u)]} (an edge both ways is a cycle); "
                           f"remove one of them")
            continue
        edges.append((u, v))
        edge_line[(u, v)] = row.line
        for n in (u, v):
            if n not in node_line:
                node_line[n] = row.line
                nodes.append(n)
    return _Graph(tuple(edges), edge_line, tuple(nodes), node_line)


def _topological(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Kahn's order (ties in ``nodes`` order) and the nodes left on a cycle."""
    indeg = {n: 0 for n in nodes}
    succ: dict[str, list[str]] = defaultdict(list)
    for u, v in edges:
        indeg[v] += 1
        succ[u].append(v)
    rank = {n: i for i, n in enumerate(nodes)}
    ready = [n for n in nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        ready.sort(key=rank.__getitem__)
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    done = set(order)
    return order, [n for n in nodes if n not in done]


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    listing = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
    return f"unknown {kind} '{name}'{did_you_mean(name, known)} (known: {listing or 'none'})"


@dataclass(frozen=True)
class _Workflow:
    graph: _Graph
    source_rate: dict[str, float]  # items/s
    sources: tuple[str, ...]  # graph order
    operators: tuple[str, ...]  # every other node, graph order
    inputs: dict[str, tuple[str, ...]]  # node -> its upstream nodes
    order: tuple[str, ...]  # topological; only meaningful once the graph is known to be acyclic
    ratio: dict[tuple[str, str], float]  # edge -> ratio, where the ratios file has one


def _read_workflow(files: _Files, problems: _Problems) -> _Workflow:
    graph = _read_graph(files.graph)

    def off_graph(name: str) -> str | None:
        if name in graph.node_line:
            return None
        return f"{_unknown('node', name, graph.nodes)} in {LOGICAL_GRAPH}; add its edges there or remove the row"

    source_rate, _ = _read_named_numbers(files.rates, what="source", keep_one="rate per source", positive=True,
                                         maximum=MAX_RATE, refuse=off_graph)
    operators = tuple(n for n in graph.nodes if n not in source_rate)
    inputs: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for u, v in graph.edges:
        inputs[v].append(u)
        if v in source_rate:
            problems.add(files.graph.path, f"line {graph.edge_line[(u, v)]}",
                         f"edge {u} -> {v} feeds source '{v}' (it has a rate in {INJECTION_RATES}); "
                         f"sources take no inputs, remove the edge or the rate")
    for n in operators:
        if not inputs[n]:
            problems.add(files.graph.path, f"line {graph.node_line[n]}",
                         f"node '{n}' has no inputs and no rate in {INJECTION_RATES}; add `{n},RATE` there or an "
                         f"edge into it")
    order, cyclic = _topological(graph.nodes, graph.edges)
    if cyclic:
        lines = sorted(graph.edge_line[(u, v)] for u, v in graph.edges if u in cyclic and v in cyclic)
        problems.add(files.graph.path, f"line {lines[0]}" if lines else "(file)",
                     f"the edges among {', '.join(cyclic)} contain a cycle; remove an edge so the graph is "
                     f"acyclic")
    return _Workflow(
        graph=graph,
        source_rate=source_rate,
        sources=tuple(n for n in graph.nodes if n in source_rate),
        operators=operators,
        inputs={n: tuple(ups) for n, ups in inputs.items()},
        order=tuple(order),
        ratio=_read_ratios(files.ratios, graph),
    )


def _read_ratios(table: _Csv, graph: _Graph) -> dict[tuple[str, str], float]:
    ratio: dict[tuple[str, str], float] = {}
    for row in table.rows:
        u, v, r = table.name(row, 0), table.name(row, 1), table.number(row, 2, positive=True, maximum=MAX_RATIO)
        if u is None or v is None or r is None:
            continue
        if (u, v) not in graph.edge_line:
            table.add(row, f"there is no edge {u} -> {v} in {LOGICAL_GRAPH}; remove the row or add the edge")
        elif (u, v) in ratio:
            table.add(row, f"edge {u} -> {v} has a ratio already; keep one row per edge")
        else:
            ratio[(u, v)] = r
    return ratio


# ---------------------------------------------------------------------------------------------
# Loading, stage 3: workers, their counts, prices and tiers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Workers:
    """The workers the files name and the concrete workers each stands for.

    With a workers_numbers.csv the files name worker *types*, each standing for ``count`` workers
    ``TYPE_0``, ``TYPE_1``, ...; without it every named worker is one concrete worker.
    """

    kind: str  # what the files' names are: "worker" or "worker type", for messages
    price: dict[str, float]  # named worker -> $/h
    concrete: dict[str, tuple[str, ...]]  # named worker -> its concrete workers
    tier_of: dict[str, int]  # concrete worker -> tier

    def known(self, table: _Csv, row: _Row, name: str | None) -> bool:
        """Whether ``name`` (from ``row`` of ``table``) is a named worker; reports it when not."""
        if name is None:
            return False
        if name not in self.price:
            table.add(row, f"{_unknown(self.kind, name, self.price)} in {WORKERS_SPECS}; add it there or fix the "
                           f"name")
            return False
        return True

    def each(self) -> list[tuple[str, float]]:
        """Every concrete worker with its price ($/h), in the order the files list them."""
        return [(w, self.price[name]) for name in self.price for w in self.concrete[name]]


def _read_workers(files: _Files, problems: _Problems) -> _Workers:
    by_type = bool(files.numbers.rows)
    kind = "worker type" if by_type else "worker"
    price, price_line = _read_named_numbers(files.specs, what=kind, keep_one=f"row per {kind}", maximum=MAX_PRICE)
    concrete = {name: (name,) for name in price}
    if by_type:
        counts = _read_counts(files.numbers, price)
        for name in price:
            if name not in counts:
                problems.add(files.specs.path, f"line {price_line[name]}",
                             f"worker type '{name}' has no count in {WORKERS_NUMBERS}; add `{name},N` there")
        concrete = {name: tuple(f"{name}_{i}" for i in range(counts.get(name, 0))) for name in price}
    tier_of: dict[str, int] = {}
    # None: the file did not parse (already reported) or holds `null`.
    if files.partition is not None:
        tier_of = _read_tiers(files.partition_path, files.partition, kind, concrete, problems)
    return _Workers(kind=kind, price=price, concrete=concrete, tier_of=tier_of)


def _read_counts(table: _Csv, price: Mapping[str, float]) -> dict[str, int]:
    """How many workers of each type there are (workers_numbers.csv)."""
    counts: dict[str, int] = {}
    for row in table.rows:
        name, text = table.name(row, 0), row.fields[1]
        if name is None:
            continue
        try:
            count = int(text)
        except ValueError:
            table.add(row, f"count {short_repr(text, 60)} is not a whole number; write a whole number >= 0")
            continue
        if count < 0:
            table.add(row, f"count {count} is negative; write a whole number >= 0")
        elif count > MAX_WORKERS_PER_TYPE:
            table.add(row, f"count {count} is above {MAX_WORKERS_PER_TYPE}; write a smaller whole number")
        elif name not in price:
            table.add(row, f"{_unknown('worker type', name, price)} in {WORKERS_SPECS}; add it there")
        elif name in counts:
            table.add(row, f"worker type '{name}' has a count already; keep one row per type")
        else:
            counts[name] = count
    return counts


def _read_tiers(
    path: Path, partition: Any, kind: str, concrete: Mapping[str, tuple[str, ...]], problems: _Problems
) -> dict[str, int]:
    """Each concrete worker's tier, from the partition JSON's lists of named workers (lowest tier first)."""
    tier_of: dict[str, int] = {}
    if not isinstance(partition, list):
        problems.add(path, "(top level)", f"expected a list of tiers, each a list of {kind} names, lowest "
                                          f"tier first; got {type(partition).__name__}")
        return tier_of
    listed: dict[str, str] = {}
    for t, tier in enumerate(partition):
        if not isinstance(tier, list):
            problems.add(path, f"[{t}]", f"expected a list of {kind} names, got {type(tier).__name__}")
            continue
        for j, name in enumerate(tier):
            where = f"[{t}][{j}]"
            if not isinstance(name, str):
                problems.add(path, where, f"expected a {kind} name, got {name!r}")
            elif name not in concrete:
                problems.add(path, where, f"{_unknown(kind, name, concrete)} in {WORKERS_SPECS}; add it "
                                          f"there or remove it here")
            elif name in listed:
                problems.add(path, where, f"{kind} '{name}' is already in tier {listed[name]}; a {kind} "
                                          f"belongs to one tier, remove one")
            else:
                listed[name] = where
                for w in concrete[name]:
                    tier_of[w] = t
    for name in concrete:
        if name not in listed:
            problems.add(path, "(top level)", f"{kind} '{name}' (from {WORKERS_SPECS}) is in no tier; add "
                                              f"it to one of the lists")
    return tier_of


# ---------------------------------------------------------------------------------------------
# Loading, stage 4: the execution profile, the accuracy requirement and the variants to choose from
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Latencies:
    per_worker: dict[str, dict[tuple[str, str], float]]  # concrete worker -> (operator, variant) -> ms
    variants: dict[str, tuple[str, ...]]  # operator -> every variant it has rows for, in file order


def _read_latencies(files: _Files, workflow: _Workflow, workers: _Workers) -> _Latencies:
    """The execution profile's latencies, overestimated as config.yaml says, per concrete worker."""
    table = files.execution
    per_worker: dict[str, dict[tuple[str, str], float]] = {}
    variants: dict[str, list[str]] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for row in table.rows:
        op, worker, variant = table.name(row, 0), table.name(row, 1), table.name(row, 2)
        ms = table.number(row, 3, positive=True, minimum=MIN_MS, maximum=MAX_MS, missing_ok=True)
        if op is None or variant is None or not workers.known(table, row, worker):
            continue
        if ms is None:
            ms = math.nan  # reported; kept as "cannot run" so the variant is not also reported as missing
        if op in workflow.source_rate:
            table.add(row, f"'{op}' is a source (it has a rate in {INJECTION_RATES}); sources run on no worker, "
                           f"remove the row")
            continue
        if op not in workflow.graph.node_line:
            table.add(row, f"{_unknown('operator', op, workflow.operators)} in {LOGICAL_GRAPH}; fix the name or "
                           f"remove the row")
            continue
        key = (op, worker, variant)
        if key in seen:
            table.add(row, f"{op} / {worker} / {variant} repeats line {seen[key]}; keep one latency")
            continue
        seen[key] = row.line
        if variant not in variants.setdefault(op, []):
            variants[op].append(variant)
        if math.isnan(ms):
            continue  # the prototype's pandas reads it as NaN: this worker cannot run the variant
        for w in workers.concrete[worker]:
            per_worker.setdefault(w, {})[(op, variant)] = ms * files.overestimate
    return _Latencies(per_worker, {op: tuple(vs) for op, vs in variants.items()})


def _read_accuracy(files: _Files, workflow: _Workflow, problems: _Problems) -> Accuracy:
    """The required end-to-end accuracy over the accuracy profiles' end-to-end table."""
    return Accuracy(
        target=_read_threshold(files.requirement_path, files.requirement, workflow.operators, files.profiles,
                               problems),
        tables=(AccuracyTable(operators=files.profiles.operators, rows=dict(files.profiles.rows)),),
    )


def _read_threshold(
    path: Path, requirement: Any, operators: Sequence[str], profiles: _Profiles, problems: _Problems
) -> float | None:
    """The least end-to-end accuracy accuracy_requirement.json asks for, in the profiles' unit."""
    if not isinstance(requirement, dict):
        if requirement is not None:
            problems.add(path, "(top level)", f'expected {{"sink": OPERATOR, "threshold": NUMBER}}, got '
                                              f"{type(requirement).__name__}")
        return None
    for key in requirement:
        if key not in ("sink", "threshold"):
            problems.add(path, str(key), f"unknown key{did_you_mean(str(key), ('sink', 'threshold'))}; the file "
                                         f"holds only sink and threshold, remove it")
    sink = requirement.get("sink")
    if not isinstance(sink, str):
        problems.add(path, "sink", f"expected the sink operator's name, got {short_repr(sink, 60)}; write "
                                   f'"sink": "{operators[-1] if operators else "OPERATOR"}"')
    elif sink not in operators:
        problems.add(path, "sink", f"{_unknown('operator', sink, operators)} in {LOGICAL_GRAPH}")
    value = requirement.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.add(path, "threshold",
                     f"expected a finite number (the least end-to-end accuracy), got {short_repr(value, 60)}")
        return None
    if profiles.in_percent:
        example = max(profiles.rows.values())
        if not 0 <= value <= MAX_PERCENT:
            problems.add(path, "threshold", f"{value:g} is outside 0..100; the accuracy profiles are in percent "
                                            f"(e.g. {example:g}), write the threshold in percent")
            return None
        if 0 < value <= 1:
            problems.add(path, "threshold", f"{value:g} reads as a fraction, but the accuracy profiles are in percent "
                                            f"(e.g. {example:g}); write the threshold in percent ({value * 100:g})")
            return None
    elif not 0 <= value <= 1:
        problems.add(path, "threshold", f"{value:g} is outside 0..1; the accuracy profiles are fractions, write the "
                                        f"threshold as one (e.g. {min(abs(value) / 100, 1):g} for {abs(value):g} %)")
        return None
    return float(value)


_Variants = Mapping[str, tuple[str, ...]]  # node -> the variants it may run


def _choose_variants(
    files: _Files, workflow: _Workflow, latencies: _Latencies, problems: _Problems
) -> dict[str, tuple[str, ...]]:
    """The variants each node may run, as the prototype restricts them by the accuracy profiles.

    Sources have no models; they "run" ``default`` so every edge's message size has a variant
    pair to be looked up by.
    """
    profiles, table = files.profiles, files.execution
    for op in profiles.operators:
        if op not in workflow.operators:
            problems.add(files.profiles_path, "end_to_end_profile.operators",
                         f"{_unknown('operator', op, workflow.operators)} in {LOGICAL_GRAPH}; regenerate the profile")
    profiled = set(profiles.operators) | set(profiles.variants)
    variants: dict[str, tuple[str, ...]] = {s: (DEFAULT_VARIANT,) for s in workflow.sources}
    for op in workflow.operators:
        have = latencies.variants.get(op, ())
        if not workflow.inputs[op]:
            continue  # reported with the graph: a node without inputs needs a rate, not variants
        if not have:
            problems.add(table.path, "(file)", f"operator '{op}' has no rows; add `{op},WORKER,VARIANT,LATENCY_MS` "
                                               f"rows (variant `{DEFAULT_VARIANT}` for an operator without models)")
            continue
        if op not in profiled:
            # The prototype assigns variants only to operators its accuracy profiles list; every
            # other operator runs `default`.
            if DEFAULT_VARIANT not in have:
                problems.add(table.path, "(file)",
                             f"operator '{op}' has no accuracy profile in {ACCURACY_PROFILES}, so it runs its "
                             f"'{DEFAULT_VARIANT}' variant, but it has no '{DEFAULT_VARIANT}' rows; add them or "
                             f"profile its variants")
                continue
            variants[op] = (DEFAULT_VARIANT,)
        elif op in profiles.variants:
            listed_variants = set(profiles.variants[op])
            keep = tuple(v for v in have if v in listed_variants)
            if not keep:
                problems.add(table.path, "(file)",
                             f"operator '{op}' has variants {', '.join(have)} but its accuracy profile in "
                             f"{ACCURACY_PROFILES} lists only {', '.join(profiles.variants[op])}; profile a listed "
                             f"variant")
                continue
            variants[op] = keep
        else:
            variants[op] = have
    return variants


# ---------------------------------------------------------------------------------------------
# Loading, stage 5: message sizes and link costs (needs every node's variants and every worker)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _EdgeSize:
    item_kb: float  # the (default, default) size, else the largest
    sizes: dict[tuple[str, str], float]  # (upstream variant, downstream variant) -> KB per item


def _read_edge_sizes(
    files: _Files, workflow: _Workflow, latencies: _Latencies, variants: _Variants, problems: _Problems
) -> dict[tuple[str, str], _EdgeSize]:
    """Each edge's KB per item for every pair of variants its ends may run."""
    rows = _read_message_sizes(files, workflow, latencies, variants)
    edge_sizes: dict[tuple[str, str], _EdgeSize] = {}
    for u, v in workflow.graph.edges:
        table = rows.get((u, v), {})
        if not table:
            problems.add(files.sizes.path, "(file)", f"edge {u} -> {v} has no message size; add "
                                                     f"`{u},{v},{DEFAULT_VARIANT},{DEFAULT_VARIANT},KB_PER_ITEM`")
            continue
        sizes: dict[tuple[str, str], float] = {}
        for a in variants[u]:
            for b in variants[v]:
                # The prototype's fallback order (optimizer/utils.py, assign_model_variants).
                for key in ((a, b), (DEFAULT_VARIANT, b), (a, DEFAULT_VARIANT), (DEFAULT_VARIANT, DEFAULT_VARIANT)):
                    if key in table:
                        sizes[(a, b)] = table[key]
                        break
                else:
                    problems.add(files.sizes.path, "(file)",
                                 f"edge {u} -> {v} has no message size for variants ({a}, {b}); add "
                                 f"`{u},{v},{a},{b},KB_PER_ITEM` or a `{u},{v},{DEFAULT_VARIANT},{DEFAULT_VARIANT},"
                                 f"KB_PER_ITEM` fallback")
        default_kb = table.get((DEFAULT_VARIANT, DEFAULT_VARIANT), max(sizes.values(), default=0.0))
        edge_sizes[(u, v)] = _EdgeSize(default_kb, sizes)
    return edge_sizes


def _read_message_sizes(
    files: _Files, workflow: _Workflow, latencies: _Latencies, variants: _Variants
) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """The rows of message_sizes.csv as edge -> (variant, variant) -> KB per item, before fallbacks."""
    table = files.sizes
    rows: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    seen: dict[tuple[str, str, str, str], int] = {}
    for row in table.rows:
        u, v, a, b = (table.name(row, i) for i in range(4))
        kb = table.number(row, 4, maximum=MAX_KB)
        if None in (u, v, a, b):
            continue
        if kb is None:
            kb = math.nan  # reported; kept so the edge is not also reported as having no size
        if (u, v) not in workflow.graph.edge_line:
            table.add(row, f"there is no edge {u} -> {v} in {LOGICAL_GRAPH}; remove the row or add the edge")
            continue
        unknown = [
            (node, var) for node, var in ((u, a), (v, b))
            # `default` means "any variant"; a variant profiled in the execution profile but never
            # chosen (the accuracy profiles do not list it) is harmless.
            if var != DEFAULT_VARIANT and var not in variants[node] and var not in latencies.variants.get(node, ())
        ]
        for node, var in unknown:
            table.add(row, f"{_unknown(f'variant of {node}', var, [DEFAULT_VARIANT, *variants[node]])}; use a "
                           f"variant from {files.profile} or `{DEFAULT_VARIANT}`")
        if unknown:
            continue
        key = (u, v, a, b)
        if key in seen:
            table.add(row, f"{u} -> {v} with variants ({a}, {b}) repeats line {seen[key]}; keep one size")
            continue
        seen[key] = row.line
        rows.setdefault((u, v), {})[(a, b)] = kb
    return rows


@dataclass(frozen=True)
class _LinkCosts:
    """$/GB (already scaled) between concrete workers and from sources; a pair not listed costs 0."""

    between_workers: dict[tuple[str, str], float]
    from_sources: dict[tuple[str, str], float]  # (source, concrete worker)

    def from_source(self, source: str, worker: str, tier: int) -> float:
        # Sources sit in tier 0, and traffic inside a tier is free.
        return self.from_sources.get((source, worker), 0.0) if tier > 0 else 0.0


def _read_link_costs(files: _Files, workflow: _Workflow, workers: _Workers) -> _LinkCosts:
    def both_workers_known(row: _Row, a: str | None, b: str | None) -> bool:
        return workers.known(files.worker_links, row, a) and workers.known(files.worker_links, row, b)

    def source_named_and_worker_known(row: _Row, s: str | None, w: str | None) -> bool:
        return s is not None and workers.known(files.source_links, row, w)

    def not_a_source(s: str, w: str) -> str | None:
        if s in workflow.source_rate:
            return None
        return f"{_unknown('source', s, workflow.sources)} in {INJECTION_RATES}; fix the name or remove the row"

    between_workers: dict[tuple[str, str], float] = {}
    for a, b, cost in _read_links(files.worker_links, both_workers_known):
        for wa in workers.concrete[a]:
            for wb in workers.concrete[b]:
                if wa != wb:
                    between_workers[(wa, wb)] = cost * files.scale
    from_sources: dict[tuple[str, str], float] = {}
    for s, w, cost in _read_links(files.source_links, source_named_and_worker_known, refuse=not_a_source):
        for cw in workers.concrete[w]:
            from_sources[(s, cw)] = cost * files.scale
    return _LinkCosts(between_workers, from_sources)


def _read_links(
    table: _Csv,
    known_ends: Callable[[_Row, str | None, str | None], bool],
    *,
    refuse: Callable[[str, str], str | None] = lambda a, b: None,
) -> list[tuple[str, str, float]]:
    """The ``FROM,TO,COST_PER_GB`` rows of ``table``, one per pair.

    ``known_ends`` reports an unknown end; ``refuse`` gives a reason to skip a well-formed row.
    """
    links: list[tuple[str, str, float]] = []
    seen: dict[tuple[str, str], int] = {}
    for row in table.rows:
        a, b = table.name(row, 0), table.name(row, 1)
        cost = table.number(row, 2, maximum=MAX_PRICE)
        if not known_ends(row, a, b) or cost is None:
            continue
        if (reason := refuse(a, b)) is not None:
            table.add(row, reason)
            continue
        if (a, b) in seen:
            table.add(row, f"link {a} -> {b} repeats line {seen[(a, b)]}; keep one cost per pair")
            continue
        seen[(a, b)] = row.line
        links.append((a, b, cost))
    return links


# ---------------------------------------------------------------------------------------------
# Loading, stage 6: classes of identical workers as locations, pools and links
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Placement:
    locations: tuple[Location, ...]
    pools: tuple[Pool, ...]
    capabilities: dict[tuple[str, str, str], Capability]  # (operator, variant, pool's hardware)
    links: tuple[Link, ...]
    source_location: dict[str, str]


def _worker_classes(
    workers: _Workers, latencies: _Latencies, costs: _LinkCosts, sources: Sequence[str]
) -> list[list[str]]:
    """The concrete workers in classes of interchangeable ones, by tier, then by where the first one is listed."""
    tier_of = workers.tier_of
    concrete = workers.each()
    price = dict(concrete)
    out_sig: dict[str, set[tuple[str, float]]] = defaultdict(set)
    in_sig: dict[str, set[tuple[str, float]]] = defaultdict(set)
    for (a, b), cost in costs.between_workers.items():
        if tier_of[a] < tier_of[b] and cost != 0:  # only upward cross-tier pairs ever cost anything
            out_sig[a].add((b, cost))
            in_sig[b].add((a, cost))
    classes: dict[tuple, list[str]] = {}
    for w, _ in concrete:
        t = tier_of[w]
        key = (
            t,
            price[w],
            frozenset(latencies.per_worker.get(w, {}).items()),
            frozenset(out_sig[w]),
            frozenset(in_sig[w]),
            tuple(costs.from_source(s, w, t) for s in sources),
        )
        classes.setdefault(key, []).append(w)
    position = {w: i for i, (w, _) in enumerate(concrete)}
    return sorted(classes.values(), key=lambda members: (tier_of[members[0]], position[members[0]]))


def _source_classes(
    sources: Sequence[str], reps: Sequence[str], workers: _Workers, costs: _LinkCosts
) -> list[list[str]]:
    """The sources in classes with the same link cost to every worker class; each class shares one location."""
    classes: dict[tuple[float, ...], list[str]] = {}
    for s in sources:
        sig = tuple(costs.from_source(s, r, workers.tier_of[r]) for r in reps)
        classes.setdefault(sig, []).append(s)
    return list(classes.values())


class _LocationNames:
    """Location names, each a new one: a taken name gets a number (``NAME#2``)."""

    def __init__(self) -> None:
        self.taken = {SOURCES_LOCATION}

    def new(self, name: str) -> str:
        candidate, k = name, 1
        while candidate in self.taken:
            k += 1
            candidate = f"{name}#{k}"
        self.taken.add(candidate)
        return candidate


def _place(workflow: _Workflow, workers: _Workers, latencies: _Latencies, variants: _Variants,
           costs: _LinkCosts) -> _Placement:
    """One location per class of sources, and one location holding one pool per class of workers.

    A class's first member speaks for it: every member has the same tier, price, latencies and costs.
    """
    tier_of = workers.tier_of
    worker_classes = _worker_classes(workers, latencies, costs, workflow.sources)
    reps = [members[0] for members in worker_classes]
    source_classes = _source_classes(workflow.sources, reps, workers, costs)
    names = _LocationNames()
    locations: list[Location] = []
    source_location: dict[str, str] = {}
    for members in source_classes:
        name = SOURCES_LOCATION if len(source_classes) == 1 else names.new(f"{SOURCES_LOCATION}/{members[0]}")
        locations.append(Location(name, 0, "tier-0"))
        for s in members:
            source_location[s] = name
    price = dict(workers.each())
    loc_of: dict[str, str] = {}  # representative worker -> location name
    pools: list[Pool] = []
    capabilities: dict[tuple[str, str, str], Capability] = {}
    for members in worker_classes:
        rep = members[0]
        name = names.new(rep if len(members) == 1 else f"{rep}+{len(members) - 1}")
        loc_of[rep] = name
        t = tier_of[rep]
        locations.append(Location(name, t, f"tier-{t}"))
        pools.append(Pool(name=name, location=name, hardware=rep, count=len(members), price=price[rep],
                          members=tuple(members)))
        for (op, var), ms in latencies.per_worker.get(rep, {}).items():
            if var in variants.get(op, ()):
                capabilities[(op, var, rep)] = Capability(capacity=1000.0 / ms, latency_ms=ms)
    links = _links(source_classes, source_location, loc_of, tier_of, costs)
    return _Placement(tuple(locations), tuple(pools), capabilities, links, source_location)


def _links(
    source_classes: Sequence[Sequence[str]],
    source_location: Mapping[str, str],
    loc_of: Mapping[str, str],
    tier_of: Mapping[str, int],
    costs: _LinkCosts,
) -> tuple[Link, ...]:
    """Links from every source location and between worker locations, never down a tier.

    ``loc_of`` maps each worker class's first member to its location.
    """
    links: list[Link] = []
    for members in source_classes:
        s = members[0]
        for rep, loc in loc_of.items():
            links.append(Link(source_location[s], loc, costs.from_source(s, rep, tier_of[rep])))
    for a, loc_a in loc_of.items():
        for b, loc_b in loc_of.items():
            if a == b or tier_of[a] > tier_of[b]:
                continue  # no traffic goes to a lower tier
            cost = 0.0 if tier_of[a] == tier_of[b] else costs.between_workers.get((a, b), 0.0)
            links.append(Link(loc_a, loc_b, cost))
    return tuple(links)


# ---------------------------------------------------------------------------------------------
# Loading, stage 7: the Problem
# ---------------------------------------------------------------------------------------------
def _node_rates(workflow: _Workflow, graph_path: Path) -> dict[str, float]:
    """Items/s of every node: a source's own rate, an operator's least input rate × the edge's ratio.

    Raises SpecError when the ratios multiply a rate out of any real range (MIN_NODE_RATE ..
    MAX_NODE_RATE), where the model's figures would stop being finite or non-zero."""
    rate = dict(workflow.source_rate)
    problems = _Problems()
    for n in workflow.order:
        if n not in workflow.source_rate:
            rate[n] = min(rate[u] * workflow.ratio.get((u, n), 1.0) for u in workflow.inputs[n])
            if not MIN_NODE_RATE <= rate[n] <= MAX_NODE_RATE:
                problems.add(graph_path, f"line {workflow.graph.node_line[n]}",
                             f"'{n}' would handle {rate[n]:g} items/s (the rates in {INJECTION_RATES} times the "
                             f"ratios in {RATIOS} on the way), outside {MIN_NODE_RATE:g}..{MAX_NODE_RATE:g}; check "
                             f"those rates and ratios")
    problems.check()
    return rate


def _assemble(name: str, workflow: _Workflow, variants: _Variants, accuracy: Accuracy,
              edge_sizes: Mapping[tuple[str, str], _EdgeSize], placement: _Placement, graph_path: Path) -> Problem:
    rate = _node_rates(workflow, graph_path)
    return Problem(
        name=name,
        locations=placement.locations,
        pools=placement.pools,
        streams=tuple(Stream(s, placement.source_location[s], workflow.source_rate[s]) for s in workflow.sources),
        operators=tuple(Operator(n, variants[n], rate[n]) for n in workflow.order if n not in workflow.source_rate),
        edges=tuple(
            Edge(u, v, rate=rate[v], item_kb=edge_sizes[(u, v)].item_kb, sizes=edge_sizes[(u, v)].sizes)
            for u, v in workflow.graph.edges
        ),
        capabilities=placement.capabilities,
        links=placement.links,
        accuracy=accuracy,
        transit=False,
        source_tier={s: 0 for s in workflow.sources},
    )


def load_jellybean_inputs(directory: Path, *, profile: str = "execution_profile.csv") -> Problem:
    """Read the prototype's optimizer input directory into a Problem (see the module docstring).

    ``profile`` names the execution-profile csv inside ``directory`` (the prototype reads
    ``execution_profile.csv``; the VQA example also ships ``execution_profile_p50.csv`` etc.).
    Raises SpecError listing every problem found, each naming the file, the line and the fix.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError([f"{directory}: (directory): not found or not a directory; give the prototype's optimizer "
                         f"input directory (logical_graph.csv, execution_profile.csv, ...)"])
    problems = _Problems()
    files = _read_files(directory, profile, problems)
    workflow = _read_workflow(files, problems)
    workers = _read_workers(files, problems)
    latencies = _read_latencies(files, workflow, workers)
    accuracy = _read_accuracy(files, workflow, problems)
    variants = _choose_variants(files, workflow, latencies, problems)
    problems.check()  # message sizes are looked up by every node's variants, so those must all be known
    edge_sizes = _read_edge_sizes(files, workflow, latencies, variants, problems)
    link_costs = _read_link_costs(files, workflow, workers)
    problems.check()
    placement = _place(workflow, workers, latencies, variants, link_costs)
    return _assemble(directory.resolve().name, workflow, variants, accuracy, edge_sizes, placement, files.graph.path)


# ---------------------------------------------------------------------------------------------
# Output in the prototype's shape
# ---------------------------------------------------------------------------------------------
def jellybean_json(plan: Plan, problem: Problem) -> dict[str, Any]:
    """The plan as the prototype's optimizer prints it, plus the total and the solver's report.

    Each worker group's load is spread over its member workers by filling each up to the
    per-worker capacity in member order, so every listed worker serves a rate > 0. Workers
    another group already took are skipped; unnamed workers are called ``POOL[i]``.
    """
    operator_names = [op.name for op in problem.operators]
    pools = {p.name: p for p in problem.pools}
    assignment: dict[str, dict[str, float]] = {name: {} for name in operator_names}
    taken: set[str] = set()
    for group in plan.workers:
        if group.count <= 0:
            continue
        pool = pools.get(group.pool)
        names = [m for m in (group.members or (pool.members if pool else ())) if m not in taken]
        k = 0
        while len(names) < group.count:
            candidate = f"{group.pool}[{k}]"
            if candidate not in taken and candidate not in names:
                names.append(candidate)
            k += 1
        names = names[: group.count]
        taken.update(names)
        per_worker = group.capacity / group.count if group.capacity > 0 else math.inf
        remaining = group.load
        eps = 1e-9 * max(1.0, abs(group.load))
        served = assignment.setdefault(group.operator, {})
        for i, name in enumerate(names):
            if remaining <= eps:
                break
            share = remaining if i == len(names) - 1 else min(per_worker, remaining)
            served[name] = served.get(name, 0.0) + share
            remaining -= share

    accuracy = plan.predicted.accuracy
    if accuracy is None and problem.accuracy.defined:
        try:
            accuracy = problem.accuracy.of(plan.variants)
        except KeyError:
            accuracy = None
    return {
        "compute_cost": plan.cost.compute,
        "communication_cost": plan.cost.network,
        "total_cost": plan.cost.total,
        "end_to_end_accuracy": accuracy,
        "model_assignment": {name: plan.variants[name] for name in operator_names if name in plan.variants},
        "worker_assignment": assignment,
        "solver": {"status": plan.solver.status, "gap": plan.solver.gap, "seconds": plan.solver.seconds},
    }
