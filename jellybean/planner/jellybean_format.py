"""Import the reference JellyBean prototype's optimizer input directory as a :class:`Problem`.

The directory is the one the prototype's ``optimizer/main.py --inputs DIR`` reads (see
DESIGN.md, "The JellyBean-format importer"): headerless CSV files, two JSON files, an accuracy
profile pickle and an optional ``config.yaml``. The semantics mirror the prototype's:

- capacity of a worker for a variant = 1000 / (latency_ms × ``LATENCY_OVERESTIMATE_RATIO``);
  an empty or ``nan`` latency means the worker cannot run that variant;
- an operator's rate is the least over its inputs of the upstream rate × the edge's ratio
  (ratio 1 where ``throughput_normalization_ratios.csv`` has no row or does not exist);
- the KB per item on ``u -> v`` for variants ``(a, b)`` is the first of the rows
  ``(a, b)``, ``(default, b)``, ``(a, default)``, ``(default, default)``;
- traffic to a worker of a higher tier costs the pair's link cost ($/GB) ×
  ``COMM_COST_SCALING_FACTOR``; a pair missing from the link csv costs 0; traffic inside a tier
  is free; traffic to a lower tier is not allowed; sources sit in tier 0;
- an operator the accuracy profiles do not mention always runs its ``default`` variant, and an
  operator they mention only runs the variants they list.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from jellybean.errors import SpecError
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
from jellybean.spec.base import did_you_mean

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

    def number(self, row: _Row, index: int, *, positive: bool = False, missing_ok: bool = False) -> float | None:
        """The number in field ``index``; None (after reporting) when it is not one.

        With ``missing_ok`` an empty field or ``nan`` gives NaN (the prototype's pandas reads both
        as NaN and treats them as "not available").
        """
        text = row.fields[index]
        column = self.columns[index]
        if missing_ok and (not text or text.lower() == "nan"):
            return math.nan
        try:
            value = float(text)
        except ValueError:
            hint = " (these files have no header row; remove it)" if row.line == 1 else ""
            self.add(row, f"{column} {text!r} is not a number; write a number{hint}")
            return None
        if not math.isfinite(value):
            self.add(row, f"{column} {text!r} is not a finite number; write a finite number")
            return None
        if positive and value <= 0:
            self.add(row, f"{column} {text} must be greater than 0; write a positive number")
            return None
        if value < 0:
            self.add(row, f"{column} {text} is negative; write a number >= 0")
            return None
        return value


def _read_text(path: Path, problems: _Problems, *, what: str) -> str | None:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        problems.add(path, "(file)", f"not found; the prototype's input directory needs {what}")
    except IsADirectoryError:
        problems.add(path, "(file)", "is a directory; it must be a file")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(path, "(file)", f"cannot be read ({exc}); give a readable UTF-8 file")
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
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(path, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON ({exc.msg}); fix the syntax there")
    return None


def _read_config(path: Path, problems: _Problems) -> dict[str, float]:
    """The INPUT section of config.yaml over the prototype's defaults."""
    values = dict(CONFIG_DEFAULTS)
    if not path.exists():
        return values
    text = _read_text(path, problems, what="the optimizer configuration")
    if text is None:
        return values
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problems.add(path, where, f"invalid YAML ({getattr(exc, 'problem', None) or exc}); fix the syntax there")
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
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            problems.add(path, f"INPUT.{key}", f"{value!r} is not a positive number; write a number > 0")
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
        bad("end_to_end_profile.operators", f"expected a non-empty list of operator names, got {operators!r}")
        return None
    if not isinstance(table, dict) or not table:
        bad("end_to_end_profile.acc_profile", "expected a non-empty mapping {(variant, ...): accuracy}")
        return None
    rows: dict[tuple[str, ...], float] = {}
    for key, value in table.items():
        where = f"end_to_end_profile.acc_profile[{key!r}]"
        if not isinstance(key, tuple) or len(key) != len(operators) or not all(isinstance(k, str) for k in key):
            bad(where, f"key must be a tuple of {len(operators)} variant names (one per operator "
                       f"{', '.join(operators)})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad(where, f"accuracy {value!r} is not a number")
        else:
            rows[key] = float(value)
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
# Loading
# ---------------------------------------------------------------------------------------------
@dataclass
class _Graph:
    edges: list[tuple[str, str]] = field(default_factory=list)
    edge_line: dict[tuple[str, str], int] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)  # first-appearance order
    node_line: dict[str, int] = field(default_factory=dict)


def _read_graph(table: _Csv) -> _Graph:
    g = _Graph()
    for row in table.rows:
        u, v = table.name(row, 0), table.name(row, 1)
        if u is None or v is None:
            continue
        if u == v:
            table.add(row, f"edge {u} -> {v} loops back to itself; remove it")
            continue
        if (u, v) in g.edge_line:
            table.add(row, f"edge {u} -> {v} repeats line {g.edge_line[(u, v)]}; keep one of them")
            continue
        if (v, u) in g.edge_line:
            table.add(row, f"edge {u} -> {v} reverses line {g.edge_line[(v, u)]} (an edge both ways is a cycle); "
                           f"remove one of them")
            continue
        g.edges.append((u, v))
        g.edge_line[(u, v)] = row.line
        for n in (u, v):
            if n not in g.node_line:
                g.node_line[n] = row.line
                g.nodes.append(n)
    return g


def _topological(nodes: list[str], edges: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
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

    def path(name: str) -> Path:
        return directory / name

    # -- read every file -------------------------------------------------------------------------
    config = _read_config(path(CONFIG), problems)
    graph_csv = _read_csv(path(LOGICAL_GRAPH), ("u", "v"), problems, what="the workflow's edges")
    rates_csv = _read_csv(path(INJECTION_RATES), ("source", "items_per_s"), problems,
                          what="each source's input rate")
    ratios_csv = _read_csv(path(RATIOS), ("u", "v", "ratio"), problems, what="edge rate ratios",
                           required=False, nonempty=False)
    exec_csv = _read_csv(path(profile), ("operator", "worker", "variant", "latency_ms"), problems,
                         what="the latency of each operator variant on each worker")
    sizes_csv = _read_csv(path(MESSAGE_SIZES), ("u", "v", "u_variant", "v_variant", "kb_per_item"), problems,
                          what="the message size of each edge")
    specs_csv = _read_csv(path(WORKERS_SPECS), ("worker", "price_per_hour"), problems,
                          what="each worker's price")
    numbers_csv = _read_csv(path(WORKERS_NUMBERS), ("worker_type", "count"), problems, what="worker counts",
                            required=False, nonempty=False)
    wlinks_csv = _read_csv(path(WORKERS_LINKS), ("from_worker", "to_worker", "cost_per_gb"), problems,
                           what="worker link costs", required=False, nonempty=False)
    slinks_csv = _read_csv(path(SOURCES_LINKS), ("source", "worker", "cost_per_gb"), problems,
                           what="source link costs", required=False, nonempty=False)
    partition = _read_json(path(WORKERS_PARTITION), problems,
                           what="the workers' tiers (a JSON list of lists of worker names, lowest tier first)")
    requirement = _read_json(path(ACCURACY_REQUIREMENT), problems,
                             what='the accuracy requirement {"sink": OPERATOR, "threshold": NUMBER}')
    if path(RATIOS_PER_VARIANT).exists():
        problems.add(path(RATIOS_PER_VARIANT), "(file)",
                     "per-variant rate ratios are not supported (operator rates must not depend on the variants "
                     f"chosen); remove the file and give one ratio per edge in {RATIOS}")
    profiles_path = path(ACCURACY_PROFILES)
    profiles: _Profiles | None = None
    try:
        profiles = _check_profiles(profiles_path, read_accuracy_profiles(profiles_path), problems)
    except SpecError as exc:
        problems.items.extend(exc.problems)
    problems.check()

    scale = config["COMM_COST_SCALING_FACTOR"]
    overestimate = config["LATENCY_OVERESTIMATE_RATIO"]

    # -- the logical graph, sources and rates ----------------------------------------------------
    graph = _read_graph(graph_csv)
    source_rate: dict[str, float] = {}
    source_line: dict[str, int] = {}
    for row in rates_csv.rows:
        name, rate = rates_csv.name(row, 0), rates_csv.number(row, 1)
        if name is None or rate is None:
            continue
        if name in source_rate:
            rates_csv.add(row, f"source '{name}' repeats line {source_line[name]}; keep one rate per source")
        elif name not in graph.node_line:
            rates_csv.add(row, f"{_unknown('node', name, graph.nodes)} in {LOGICAL_GRAPH}; add its edges there "
                               f"or remove the row")
        else:
            source_rate[name] = rate
            source_line[name] = row.line
    sources = [n for n in graph.nodes if n in source_rate]
    operators_in_graph = [n for n in graph.nodes if n not in source_rate]
    inputs: dict[str, list[str]] = defaultdict(list)
    for u, v in graph.edges:
        inputs[v].append(u)
        if v in source_rate:
            graph_csv.problems.add(graph_csv.path, f"line {graph.edge_line[(u, v)]}",
                                   f"edge {u} -> {v} feeds source '{v}' (it has a rate in {INJECTION_RATES}); "
                                   f"sources take no inputs, remove the edge or the rate")
    for n in operators_in_graph:
        if not inputs[n]:
            problems.add(graph_csv.path, f"line {graph.node_line[n]}",
                         f"node '{n}' has no inputs and no rate in {INJECTION_RATES}; add `{n},RATE` there or an "
                         f"edge into it")
    order, cyclic = _topological(graph.nodes, graph.edges)
    if cyclic:
        lines = sorted(graph.edge_line[(u, v)] for u, v in graph.edges if u in cyclic and v in cyclic)
        problems.add(graph_csv.path, f"line {lines[0]}" if lines else "(file)",
                     f"the edges among {', '.join(cyclic)} contain a cycle; remove an edge so the graph is "
                     f"acyclic")

    ratio: dict[tuple[str, str], float] = {}
    for row in ratios_csv.rows:
        u, v, r = ratios_csv.name(row, 0), ratios_csv.name(row, 1), ratios_csv.number(row, 2)
        if u is None or v is None or r is None:
            continue
        if (u, v) not in graph.edge_line:
            ratios_csv.add(row, f"there is no edge {u} -> {v} in {LOGICAL_GRAPH}; remove the row or add the edge")
        elif (u, v) in ratio:
            ratios_csv.add(row, f"edge {u} -> {v} has a ratio already; keep one row per edge")
        else:
            ratio[(u, v)] = r

    # -- workers ---------------------------------------------------------------------------------
    by_type = bool(numbers_csv.rows)
    kind = "worker type" if by_type else "worker"
    price: dict[str, float] = {}
    price_line: dict[str, int] = {}
    for row in specs_csv.rows:
        name, value = specs_csv.name(row, 0), specs_csv.number(row, 1)
        if name is None or value is None:
            continue
        if name in price:
            specs_csv.add(row, f"{kind} '{name}' repeats line {price_line[name]}; keep one row per {kind}")
        else:
            price[name] = value
            price_line[name] = row.line
    concrete: dict[str, list[str]] = {name: [name] for name in price}
    if by_type:
        counts: dict[str, int] = {}
        for row in numbers_csv.rows:
            name, text = numbers_csv.name(row, 0), row.fields[1]
            if name is None:
                continue
            try:
                count = int(text)
            except ValueError:
                numbers_csv.add(row, f"count {text!r} is not a whole number; write a whole number >= 0")
                continue
            if count < 0:
                numbers_csv.add(row, f"count {count} is negative; write a whole number >= 0")
            elif name not in price:
                numbers_csv.add(row, f"{_unknown('worker type', name, price)} in {WORKERS_SPECS}; add it there")
            elif name in counts:
                numbers_csv.add(row, f"worker type '{name}' has a count already; keep one row per type")
            else:
                counts[name] = count
        for name in price:
            if name not in counts:
                problems.add(specs_csv.path, f"line {price_line[name]}",
                             f"worker type '{name}' has no count in {WORKERS_NUMBERS}; add `{name},N` there")
        concrete = {name: [f"{name}_{i}" for i in range(counts.get(name, 0))] for name in price}

    def known_worker(table: _Csv, row: _Row, name: str | None) -> bool:
        if name is None:
            return False
        if name not in price:
            table.add(row, f"{_unknown(kind, name, price)} in {WORKERS_SPECS}; add it there or fix the name")
            return False
        return True

    tier_of: dict[str, int] = {}  # concrete worker -> tier
    if partition is not None:
        ppath = path(WORKERS_PARTITION)
        listed: dict[str, str] = {}
        if not isinstance(partition, list):
            problems.add(ppath, "(top level)", f"expected a list of tiers, each a list of {kind} names, lowest "
                                               f"tier first; got {type(partition).__name__}")
        else:
            for t, tier in enumerate(partition):
                if not isinstance(tier, list):
                    problems.add(ppath, f"[{t}]", f"expected a list of {kind} names, got {type(tier).__name__}")
                    continue
                for j, name in enumerate(tier):
                    where = f"[{t}][{j}]"
                    if not isinstance(name, str):
                        problems.add(ppath, where, f"expected a {kind} name, got {name!r}")
                    elif name not in price:
                        problems.add(ppath, where, f"{_unknown(kind, name, price)} in {WORKERS_SPECS}; add it "
                                                   f"there or remove it here")
                    elif name in listed:
                        problems.add(ppath, where, f"{kind} '{name}' is already in tier {listed[name]}; a {kind} "
                                                   f"belongs to one tier, remove one")
                    else:
                        listed[name] = where
                        for w in concrete[name]:
                            tier_of[w] = t
            for name in price:
                if name not in listed:
                    problems.add(ppath, "(top level)", f"{kind} '{name}' (from {WORKERS_SPECS}) is in no tier; add "
                                                       f"it to one of the lists")

    # -- execution profile -----------------------------------------------------------------------
    latency: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)  # concrete worker -> (op, var) -> ms
    exec_variants: dict[str, list[str]] = defaultdict(list)
    seen_exec: dict[tuple[str, str, str], int] = {}
    for row in exec_csv.rows:
        op, worker, variant = exec_csv.name(row, 0), exec_csv.name(row, 1), exec_csv.name(row, 2)
        ms = exec_csv.number(row, 3, positive=True, missing_ok=True)
        if op is None or variant is None or ms is None or not known_worker(exec_csv, row, worker):
            continue
        if op in source_rate:
            exec_csv.add(row, f"'{op}' is a source (it has a rate in {INJECTION_RATES}); sources run on no worker, "
                              f"remove the row")
            continue
        if op not in graph.node_line:
            exec_csv.add(row, f"{_unknown('operator', op, operators_in_graph)} in {LOGICAL_GRAPH}; fix the name or "
                              f"remove the row")
            continue
        key = (op, worker, variant)
        if key in seen_exec:
            exec_csv.add(row, f"{op} / {worker} / {variant} repeats line {seen_exec[key]}; keep one latency")
            continue
        seen_exec[key] = row.line
        if variant not in exec_variants[op]:
            exec_variants[op].append(variant)
        if math.isnan(ms):
            continue  # the prototype's pandas reads it as NaN: this worker cannot run the variant
        for w in concrete[worker]:
            latency[w][(op, variant)] = ms * overestimate

    # -- accuracy --------------------------------------------------------------------------------
    apath = path(ACCURACY_REQUIREMENT)
    threshold: float | None = None
    if isinstance(requirement, dict):
        for key in requirement:
            if key not in ("sink", "threshold"):
                problems.add(apath, str(key), f"unknown key{did_you_mean(str(key), ('sink', 'threshold'))}; the file "
                                              f"holds only sink and threshold, remove it")
        sink = requirement.get("sink")
        if not isinstance(sink, str):
            problems.add(apath, "sink", f"expected the sink operator's name, got {sink!r}; write "
                                        f'"sink": "{operators_in_graph[-1] if operators_in_graph else "OPERATOR"}"')
        elif sink not in operators_in_graph:
            problems.add(apath, "sink", f"{_unknown('operator', sink, operators_in_graph)} in {LOGICAL_GRAPH}")
        value = requirement.get("threshold")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.add(apath, "threshold", f"expected a number (the least end-to-end accuracy), got {value!r}")
        else:
            threshold = float(value)
    elif requirement is not None:
        problems.add(apath, "(top level)", f'expected {{"sink": OPERATOR, "threshold": NUMBER}}, got '
                                           f"{type(requirement).__name__}")

    if profiles is None:  # _check_profiles reported why; problems.check() above raised
        raise SpecError([f"{profiles_path}: (pickle): no accuracy profile could be read; regenerate it"])
    for op in profiles.operators:
        if op not in operators_in_graph:
            problems.add(profiles_path, "end_to_end_profile.operators",
                         f"{_unknown('operator', op, operators_in_graph)} in {LOGICAL_GRAPH}; regenerate the profile")
    profiled = set(profiles.operators) | set(profiles.variants)
    variants: dict[str, tuple[str, ...]] = {}
    for op in operators_in_graph:
        have = exec_variants.get(op, [])
        if not inputs[op]:
            continue  # reported above: a node without inputs needs a rate, not variants
        if not have:
            problems.add(exec_csv.path, "(file)", f"operator '{op}' has no rows; add `{op},WORKER,VARIANT,LATENCY_MS` "
                                                  f"rows (variant `{DEFAULT_VARIANT}` for an operator without models)")
            continue
        if op not in profiled:
            # The prototype assigns variants only to operators its accuracy profiles list; every
            # other operator runs `default`.
            if DEFAULT_VARIANT not in have:
                problems.add(exec_csv.path, "(file)",
                             f"operator '{op}' has no accuracy profile in {ACCURACY_PROFILES}, so it runs its "
                             f"'{DEFAULT_VARIANT}' variant, but it has no '{DEFAULT_VARIANT}' rows; add them or "
                             f"profile its variants")
                continue
            variants[op] = (DEFAULT_VARIANT,)
        elif op in profiles.variants:
            listed_variants = set(profiles.variants[op])
            keep = tuple(v for v in have if v in listed_variants)
            if not keep:
                problems.add(exec_csv.path, "(file)",
                             f"operator '{op}' has variants {', '.join(have)} but its accuracy profile in "
                             f"{ACCURACY_PROFILES} lists only {', '.join(profiles.variants[op])}; profile a listed "
                             f"variant")
                continue
            variants[op] = keep
        else:
            variants[op] = tuple(have)
    problems.check()

    def variants_of(node: str) -> tuple[str, ...]:
        return (DEFAULT_VARIANT,) if node in source_rate else variants[node]

    # -- message sizes ---------------------------------------------------------------------------
    size_rows: dict[tuple[str, str], dict[tuple[str, str], float]] = defaultdict(dict)
    size_line: dict[tuple[str, str, str, str], int] = {}
    for row in sizes_csv.rows:
        u, v, a, b = (sizes_csv.name(row, i) for i in range(4))
        kb = sizes_csv.number(row, 4)
        if None in (u, v, a, b) or kb is None:
            continue
        if (u, v) not in graph.edge_line:
            sizes_csv.add(row, f"there is no edge {u} -> {v} in {LOGICAL_GRAPH}; remove the row or add the edge")
            continue
        unknown = [
            (node, var) for node, var in ((u, a), (v, b))
            # `default` means "any variant"; a variant profiled in the execution profile but never
            # chosen (the accuracy profiles do not list it) is harmless.
            if var != DEFAULT_VARIANT and var not in variants_of(node) and var not in exec_variants.get(node, ())
        ]
        for node, var in unknown:
            sizes_csv.add(row, f"{_unknown(f'variant of {node}', var, [DEFAULT_VARIANT, *variants_of(node)])}; use a "
                               f"variant from {profile} or `{DEFAULT_VARIANT}`")
        if unknown:
            continue
        key = (u, v, a, b)
        if key in size_line:
            sizes_csv.add(row, f"{u} -> {v} with variants ({a}, {b}) repeats line {size_line[key]}; keep one size")
            continue
        size_line[key] = row.line
        size_rows[(u, v)][(a, b)] = kb

    edge_sizes: dict[tuple[str, str], tuple[float, dict[tuple[str, str], float]]] = {}
    for u, v in graph.edges:
        table = size_rows.get((u, v), {})
        if not table:
            problems.add(sizes_csv.path, "(file)", f"edge {u} -> {v} has no message size; add "
                                                   f"`{u},{v},{DEFAULT_VARIANT},{DEFAULT_VARIANT},KB_PER_ITEM`")
            continue
        sizes: dict[tuple[str, str], float] = {}
        for a in variants_of(u):
            for b in variants_of(v):
                # The prototype's fallback order (optimizer/utils.py, assign_model_variants).
                for key in ((a, b), (DEFAULT_VARIANT, b), (a, DEFAULT_VARIANT), (DEFAULT_VARIANT, DEFAULT_VARIANT)):
                    if key in table:
                        sizes[(a, b)] = table[key]
                        break
                else:
                    problems.add(sizes_csv.path, "(file)",
                                 f"edge {u} -> {v} has no message size for variants ({a}, {b}); add "
                                 f"`{u},{v},{a},{b},KB_PER_ITEM` or a `{u},{v},{DEFAULT_VARIANT},{DEFAULT_VARIANT},"
                                 f"KB_PER_ITEM` fallback")
        default_kb = table.get((DEFAULT_VARIANT, DEFAULT_VARIANT), max(sizes.values(), default=0.0))
        edge_sizes[(u, v)] = (default_kb, sizes)

    # -- links -----------------------------------------------------------------------------------
    wcost: dict[tuple[str, str], float] = {}  # concrete pair -> $/GB (scaled)
    seen_link: dict[tuple[str, str], int] = {}
    for row in wlinks_csv.rows:
        a, b = wlinks_csv.name(row, 0), wlinks_csv.name(row, 1)
        cost = wlinks_csv.number(row, 2)
        if not (known_worker(wlinks_csv, row, a) and known_worker(wlinks_csv, row, b)) or cost is None:
            continue
        if (a, b) in seen_link:
            wlinks_csv.add(row, f"link {a} -> {b} repeats line {seen_link[(a, b)]}; keep one cost per pair")
            continue
        seen_link[(a, b)] = row.line
        for wa in concrete[a]:
            for wb in concrete[b]:
                if wa != wb:
                    wcost[(wa, wb)] = cost * scale
    scost: dict[tuple[str, str], float] = {}  # (source, concrete worker) -> $/GB (scaled)
    seen_slink: dict[tuple[str, str], int] = {}
    for row in slinks_csv.rows:
        s, w = slinks_csv.name(row, 0), slinks_csv.name(row, 1)
        cost = slinks_csv.number(row, 2)
        if s is None or not known_worker(slinks_csv, row, w) or cost is None:
            continue
        if s not in source_rate:
            slinks_csv.add(row, f"{_unknown('source', s, sources)} in {INJECTION_RATES}; fix the name or remove "
                                f"the row")
            continue
        if (s, w) in seen_slink:
            slinks_csv.add(row, f"link {s} -> {w} repeats line {seen_slink[(s, w)]}; keep one cost per pair")
            continue
        seen_slink[(s, w)] = row.line
        for cw in concrete[w]:
            scost[(s, cw)] = cost * scale
    problems.check()

    # -- classes of identical workers ------------------------------------------------------------
    workers = [w for name in price for w in concrete[name]]
    worker_price = {w: price[name] for name in price for w in concrete[name]}
    out_sig: dict[str, set[tuple[str, float]]] = defaultdict(set)
    in_sig: dict[str, set[tuple[str, float]]] = defaultdict(set)
    for (a, b), cost in wcost.items():
        if tier_of[a] < tier_of[b] and cost != 0:  # only upward cross-tier pairs ever cost anything
            out_sig[a].add((b, cost))
            in_sig[b].add((a, cost))
    classes: dict[tuple, list[str]] = {}
    for w in workers:
        t = tier_of[w]
        key = (
            t,
            worker_price[w],
            frozenset(latency[w].items()),
            frozenset(out_sig[w]),
            frozenset(in_sig[w]),
            tuple(scost.get((s, w), 0.0) if t > 0 else 0.0 for s in sources),
        )
        classes.setdefault(key, []).append(w)
    position = {w: i for i, w in enumerate(workers)}
    groups = sorted(classes.values(), key=lambda members: (tier_of[members[0]], position[members[0]]))

    taken_names = {SOURCES_LOCATION}
    loc_of: dict[str, str] = {}  # representative worker -> location name

    def unique(name: str) -> str:
        candidate, k = name, 1
        while candidate in taken_names:
            k += 1
            candidate = f"{name}#{k}"
        taken_names.add(candidate)
        return candidate

    # Sources with the same link cost to every worker class share one location.
    reps = [members[0] for members in groups]
    source_groups: dict[tuple[float, ...], list[str]] = {}
    for s in sources:
        sig = tuple(scost.get((s, r), 0.0) if tier_of[r] > 0 else 0.0 for r in reps)
        source_groups.setdefault(sig, []).append(s)
    source_loc: dict[str, str] = {}
    locations: list[Location] = []
    for members in source_groups.values():
        name = SOURCES_LOCATION if len(source_groups) == 1 else unique(f"{SOURCES_LOCATION}/{members[0]}")
        locations.append(Location(name, 0, "tier-0"))
        for s in members:
            source_loc[s] = name
    pools: list[Pool] = []
    capabilities: dict[tuple[str, str, str], Capability] = {}
    for members in groups:
        rep = members[0]
        name = unique(rep if len(members) == 1 else f"{rep}+{len(members) - 1}")
        loc_of[rep] = name
        t = tier_of[rep]
        locations.append(Location(name, t, f"tier-{t}"))
        pools.append(Pool(name=name, location=name, hardware=rep, count=len(members), price=worker_price[rep],
                          members=tuple(members)))
        for (op, var), ms in latency[rep].items():
            if var in variants.get(op, ()):
                capabilities[(op, var, rep)] = Capability(capacity=1000.0 / ms, latency_ms=ms)

    links: list[Link] = []
    seen_source_locs: set[str] = set()
    for s in sources:
        sloc = source_loc[s]
        if sloc in seen_source_locs:
            continue
        seen_source_locs.add(sloc)
        for rep in reps:
            cost = scost.get((s, rep), 0.0) if tier_of[rep] > 0 else 0.0
            links.append(Link(sloc, loc_of[rep], cost))
    for a in reps:
        for b in reps:
            if a == b or tier_of[a] > tier_of[b]:
                continue  # no traffic goes to a lower tier
            cost = 0.0 if tier_of[a] == tier_of[b] else wcost.get((a, b), 0.0)
            links.append(Link(loc_of[a], loc_of[b], cost))

    # -- rates, operators, edges -----------------------------------------------------------------
    rate: dict[str, float] = dict(source_rate)
    for n in order:
        if n not in source_rate:
            rate[n] = min(rate[u] * ratio.get((u, n), 1.0) for u in inputs[n])
    operators = tuple(Operator(n, variants[n], rate[n]) for n in order if n not in source_rate)
    edges = tuple(
        Edge(u, v, rate=rate[v], item_kb=edge_sizes[(u, v)][0], sizes=edge_sizes[(u, v)][1]) for u, v in graph.edges
    )
    streams = tuple(Stream(s, source_loc[s], source_rate[s]) for s in sources)
    accuracy = Accuracy(
        target=threshold,
        tables=(AccuracyTable(operators=profiles.operators, rows=dict(profiles.rows)),),
    )
    return Problem(
        name=directory.resolve().name,
        locations=tuple(locations),
        pools=tuple(pools),
        streams=streams,
        operators=operators,
        edges=edges,
        capabilities=capabilities,
        links=tuple(links),
        accuracy=accuracy,
        transit=False,
        source_tier={s: 0 for s in sources},
    )


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
