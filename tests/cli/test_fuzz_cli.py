"""Fuzzing `validate` and `plan` with mutated inputs (issue 9): the mini, AI City and VQA YAML specs and
the prototype's VQA optimizer inputs, each with one mutation (NaN, infinity, -1, 0, 1e308, strings,
deep nesting, non-UTF-8 bytes, dropped keys, lines and fields, ...), through the real typer app.

Every case must end with exit 0, 1 or 2, no traceback and no "internal error"; a non-finite number
is never accepted (exit 2 at `validate` and at `plan`); `validate` refuses exactly what `plan`
refuses as bad input; an exit-2 message names the file; a plan that comes out has only finite
numbers. Hypothesis runs derandomized without a database, so CI sees the same cases every run;
the counts are printed (`pytest -s`) and kept as test properties. JELLYBEAN_FUZZ_SCALE=10 runs ten
times as many cases (a longer local run; the default keeps the module near 10 s, 35 s on a busy 2-core machine).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import typer.main
import typer.testing
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import HARDWARE, INFRA, REPO, VQA_INPUTS, WORKFLOW, ZOO
from jellybean.cli.main import app

runner = CliRunner()
TIME_LIMIT = "5"  # seconds per solve: the few cases that reach the solver stay quick

FUZZ = settings(
    derandomize=True,  # the same cases on every run
    database=None,
    deadline=timedelta(seconds=30),  # per case; a hang fails the case instead of stalling unnoticed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=False,
)
SCALE = float(os.environ.get("JELLYBEAN_FUZZ_SCALE", "1"))
YAML_CASES, PROTO_CASES, SUBPROCESS_CASES = int(80 * SCALE), int(90 * SCALE), 3

NON_FINITE = (math.nan, math.inf, -math.inf)
OTHER_VALUES: tuple[Any, ...] = (
    -1, 0, 1e308, -1e308, 1e-308, 1.7, 56.59, 0.5, 3, 10**30, 2**63, "x", "", "nan", "1e400", True, None,
    [], {}, [1, "a"], {"a": 1},
)
DEEP = "deep"  # stands for a list nested 100 deep (past the 64-level limit)


def _deep(n: int) -> list:
    value: list = []
    for _ in range(n):
        value = [value]
    return value


# -- the YAML bases ----------------------------------------------------------------------------------
def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _bases() -> dict[str, dict[str, Any]]:
    aicity, vqa = REPO / "configs" / "aicity", REPO / "configs" / "vqa"
    aicity_infra = _load(aicity / "infrastructure.yaml")
    aicity_infra["hardware_catalog"] = [str(REPO / "tiers")]  # the shipped tiers, not mutated
    return {
        "mini": {"workflow": WORKFLOW, "zoo": ZOO, "infrastructure": INFRA, "hardware": HARDWARE},
        "aicity": {"workflow": _load(aicity / "workflow.yaml"), "zoo": _load(aicity / "zoo.yaml"),
                   "infrastructure": aicity_infra},
        "vqa": {"workflow": _load(vqa / "workflow.yaml"), "zoo": _load(vqa / "zoo.yaml"),
                "infrastructure": _load(vqa / "infrastructure.yaml"), "hardware": _load(vqa / "hardware.yaml")},
    }


BASES = _bases()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position inside a document, as a tuple of keys and indices."""
    out: list[tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append(prefix + (key,))
        out.extend(_paths(child, prefix + (key,)))
    return out


DOC_PATHS = {(base, name): _paths(doc) for base, docs in BASES.items() for name, doc in docs.items()}
# The mini specs plan in 0.05 s, the AI City ones in 0.3 s (and parse slowest): weigh the cheap ones up.
BASE_WEIGHTS = ("mini",) * 3 + ("vqa",) * 2 + ("aicity",)


@dataclass(frozen=True)
class YamlMutation:
    base: str
    file: str
    op: str  # replace | drop | unknown_key | text
    path: tuple = ()
    value: Any = None
    text_op: str = ""  # non_utf8 | truncate | deep_text | duplicate_key
    at: float = 0.0  # where in the file, as a fraction of its length

    @property
    def non_finite(self) -> bool:
        return self.op == "replace" and isinstance(self.value, float) and not math.isfinite(self.value)


@st.composite
def yaml_mutations(draw) -> YamlMutation:
    base = draw(st.sampled_from(BASE_WEIGHTS))
    file = draw(st.sampled_from(sorted(BASES[base])))
    op = draw(st.sampled_from(["replace", "replace", "replace", "drop", "unknown_key", "text"]))
    if op == "text":
        return YamlMutation(base, file, op, text_op=draw(st.sampled_from(["non_utf8", "truncate", "deep_text",
                                                                          "duplicate_key"])),
                            at=draw(st.floats(0, 1)))
    path = draw(st.sampled_from(DOC_PATHS[(base, file)]))
    if op == "replace":
        value = draw(st.sampled_from(NON_FINITE + OTHER_VALUES + (DEEP,)))
        return YamlMutation(base, file, op, path, value)
    return YamlMutation(base, file, op, path)


def _apply(doc: Any, m: YamlMutation) -> Any:
    doc = copy.deepcopy(doc)
    *parents, last = m.path
    target = doc
    for key in parents:
        target = target[key]
    if m.op == "replace":
        target[last] = _deep(100) if m.value == DEEP else m.value
    elif m.op == "drop":
        del target[last]
    elif m.op == "unknown_key":
        holder = target[last] if isinstance(target[last], dict) else target
        if isinstance(holder, dict):
            holder["colour"] = 1
    return doc


def _text_mutation(data: bytes, m: YamlMutation) -> bytes:
    i = int(m.at * len(data))
    if m.text_op == "non_utf8":
        return data[:i] + b"\xff\xfe" + data[i:]
    if m.text_op == "truncate":
        return data[:i]
    if m.text_op == "deep_text":
        return data + b"description: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    return data + data.split(b"\n", 1)[0] + b"\n"  # repeat the first key


def _dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


BASE_BYTES = {(base, name): _dump(doc) for base, docs in BASES.items() for name, doc in docs.items()}


def write_specs(root: Path, m: YamlMutation) -> dict[str, Path]:
    paths = {}
    for name, doc in BASES[m.base].items():
        path = root / f"{name}.yaml"
        data = BASE_BYTES[(m.base, name)]
        if name == m.file:
            data = _text_mutation(data, m) if m.op == "text" else _dump(_apply(doc, m))
        path.write_bytes(data)
        paths[name] = path
    return paths


# -- the checks every case must pass ---------------------------------------------------------------
def _finite_json(text: str) -> Any:
    def refuse(name: str):
        raise AssertionError(f"non-finite {name} in the plan: {text[:500]}")

    data = json.loads(text, parse_constant=refuse)
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, float):
            assert math.isfinite(node), text[:500]
    return data


def check(result, what: str, root: Path) -> int:
    out = result.output
    assert result.exit_code in (0, 1, 2), f"{what}: exit {result.exit_code}: {out[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{what}: {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in out and "internal error" not in out, f"{what}: {out[-2000:]}"
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), f"{what}: {result.stderr[-2000:]}"
        assert any(str(root) in line for line in lines), f"{what}: no file named: {result.stderr[-2000:]}"
    return result.exit_code


# typer rebuilds the click command from the app on every invoke (70 ms, most of a rejected case):
# build it once, as the console script does once per process.
COMMAND = typer.main.get_command(app)


def run(*args: Any):
    with mock.patch.object(typer.testing, "_get_command", lambda _app: COMMAND):
        return runner.invoke(app, [str(a) for a in args])


# -- the fuzz tests ------------------------------------------------------------------------------------
def test_fuzzed_yaml_specs_never_crash_and_never_accept_non_finite_numbers(tmp_path: Path, record_property) -> None:
    counts: Counter = Counter()

    @settings(FUZZ, max_examples=YAML_CASES)
    @given(m=yaml_mutations())
    def case(m: YamlMutation) -> None:
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            p = write_specs(root, m)
            files = [p["workflow"], p["zoo"], p["infrastructure"], *([p["hardware"]] if "hardware" in p else [])]
            validated = check(run("validate", *files), f"validate {m}", root)
            assert validated in (0, 2), m
            planned = run("plan", "-w", p["workflow"], "-z", p["zoo"], "-i", p["infrastructure"], "--json",
                          "--time-limit", TIME_LIMIT)
            code = check(planned, f"plan {m}", root)
            if m.non_finite:
                assert validated == 2 and code == 2, f"{m}: non-finite value accepted"
            assert (validated == 2) == (code == 2), f"{m}: validate {validated}, plan {code}: {planned.output[-1500:]}"
            if code == 0:
                _finite_json(planned.stdout)
            counts["cases"] += 1
            counts[f"exit {code}"] += 1
            counts["non-finite"] += m.non_finite
        finally:
            shutil.rmtree(root, ignore_errors=True)

    case()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"\nYAML fuzz: {summary}")
    record_property("yaml_fuzz", summary)
    assert counts["cases"] >= YAML_CASES * 0.9 and counts["exit 0"] > 0 and counts["exit 2"] > 0, summary


# -- the prototype's format ----------------------------------------------------------------------------
PROTO_FILES = {f.name: f.read_bytes() for f in sorted(VQA_INPUTS.iterdir()) if f.is_file()}
CSV_NUMERIC = {  # file -> the column that holds a number
    "input_injection_rates.csv": 1, "throughput_normalization_ratios.csv": 2, "execution_profile.csv": 3,
    "message_sizes.csv": 4, "workers_specs.csv": 1, "workers_workers_link.csv": 2, "sources_workers_link.csv": 2,
}
CSV_FILES = sorted([*CSV_NUMERIC, "logical_graph.csv"])
CSV_VALUES = ("nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "1e308", "1e-308", "-0", "x", "", "1.7",
              "99999999999999999999999", " 5 ", "0x10", "1_000", "56.59")
CSV_NON_FINITE = {"nan", "NaN", "inf", "-inf", "1e400"}
JSON_VALUES = ("NaN", "Infinity", "-Infinity", "1e400", "-1", "0", "0.56", "170", "1e308", '"x"', "null", "[]",
               "{}", "true", "[" * 2000 + "]" * 2000)


@dataclass(frozen=True)
class ProtoMutation:
    op: str  # field | drop_line | dup_line | drop_field | add_field | threshold | partition | config | bytes
    file: str = ""
    line: int = 0
    field: int = 0
    value: str = ""
    at: float = 0.0

    @property
    def non_finite(self) -> bool:
        if self.op == "field":
            return self.field == CSV_NUMERIC.get(self.file) and self.value in CSV_NON_FINITE
        return self.op == "threshold" and self.value in ("NaN", "Infinity", "-Infinity", "1e400")


def _lines(name: str) -> list[bytes]:
    return [line for line in PROTO_FILES[name].split(b"\n") if line.strip()]


@st.composite
def proto_mutations(draw) -> ProtoMutation:
    op = draw(st.sampled_from(["field"] * 5 + ["drop_line", "dup_line", "drop_field", "add_field", "threshold",
                                               "threshold", "partition", "config", "bytes"]))
    if op in ("field", "drop_line", "dup_line", "drop_field", "add_field"):
        file = draw(st.sampled_from(CSV_FILES))
        line = draw(st.integers(0, len(_lines(file)) - 1))
        ncols = len(_lines(file)[line].split(b","))
        return ProtoMutation(op, file, line, draw(st.integers(0, ncols - 1)), draw(st.sampled_from(CSV_VALUES)))
    if op in ("threshold", "partition", "config"):
        return ProtoMutation(op, value=draw(st.sampled_from(JSON_VALUES)))
    file = draw(st.sampled_from(sorted(PROTO_FILES)))
    return ProtoMutation(op, file, value=draw(st.sampled_from(["non_utf8", "truncate", "delete"])),
                         at=draw(st.floats(0, 1)))


def write_proto(root: Path, m: ProtoMutation) -> None:
    files = dict(PROTO_FILES)
    if m.op in ("field", "drop_line", "dup_line", "drop_field", "add_field"):
        lines = _lines(m.file)
        fields = lines[m.line].split(b",")
        if m.op == "field":
            fields[m.field] = m.value.encode()
            lines[m.line] = b",".join(fields)
        elif m.op == "drop_line":
            del lines[m.line]
        elif m.op == "dup_line":
            lines.insert(m.line, lines[m.line])
        elif m.op == "drop_field":
            del fields[m.field]
            lines[m.line] = b",".join(fields)
        else:
            lines[m.line] = b",".join([*fields, m.value.encode() or b"1"])
        files[m.file] = b"\n".join(lines) + b"\n"
    elif m.op == "threshold":
        files["accuracy_requirement.json"] = f'{{"sink": "VQA", "threshold": {m.value}}}'.encode()
    elif m.op == "partition":
        data = json.loads(files["workers_partition.json"])
        files["workers_partition.json"] = json.dumps([data[0], data[1][:-1] + [m.value]]).encode() \
            if m.value.startswith('"') else f"[{json.dumps(data[0])}, {m.value}]".encode()
    elif m.op == "config":
        files["config.yaml"] = f"INPUT:\n  LATENCY_OVERESTIMATE_RATIO: {m.value}\n".encode()
    else:
        data = files[m.file]
        i = int(m.at * len(data))
        if m.value == "delete":
            del files[m.file]
        elif m.value == "truncate":
            files[m.file] = data[:i]
        else:
            files[m.file] = data[:i] + b"\xff\x80" + data[i:]
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)


def test_fuzzed_prototype_inputs_never_crash_and_never_accept_non_finite_numbers(tmp_path: Path,
                                                                                 record_property) -> None:
    counts: Counter = Counter()

    @settings(FUZZ, max_examples=PROTO_CASES)
    @given(m=proto_mutations())
    def case(m: ProtoMutation) -> None:
        root = Path(tempfile.mkdtemp(dir=tmp_path)) / "inputs"
        try:
            write_proto(root, m)
            validated = check(run("validate", root), f"validate {m}", root)
            assert validated in (0, 2), m
            planned = run("plan", "--jellybean-inputs", root, "--prototype-json", "--time-limit", TIME_LIMIT)
            code = check(planned, f"plan {m}", root)
            if m.non_finite:
                assert validated == 2 and code == 2, f"{m}: non-finite value accepted"
            assert (validated == 2) == (code == 2), f"{m}: validate {validated}, plan {code}: {planned.output[-1500:]}"
            if code == 0:
                out = _finite_json(planned.stdout)
                assert out["total_cost"] >= 0
            counts["cases"] += 1
            counts[f"exit {code}"] += 1
            counts["non-finite"] += m.non_finite
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)

    case()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"\nprototype-format fuzz: {summary}")
    record_property("proto_fuzz", summary)
    assert counts["cases"] >= PROTO_CASES * 0.9 and counts["exit 0"] > 0 and counts["exit 2"] > 0, summary


def test_fuzzed_inputs_through_the_console_script(tmp_path: Path, record_property) -> None:
    """A few cases through a real process: what a user's shell sees, exit code and stderr."""
    counts: Counter = Counter()

    @settings(FUZZ, max_examples=SUBPROCESS_CASES)
    @given(m=yaml_mutations().filter(lambda m: m.base == "mini"))
    def case(m: YamlMutation) -> None:
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            p = write_specs(root, m)
            proc = subprocess.run(
                [sys.executable, "-m", "jellybean", "plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i",
                 str(p["infrastructure"]), "--json", "--time-limit", TIME_LIMIT],
                capture_output=True, text=True, timeout=120,
            )
            assert proc.returncode in (0, 1, 2), (m, proc.stderr[-2000:])
            assert "Traceback" not in proc.stdout + proc.stderr and "internal error" not in proc.stderr, \
                (m, proc.stderr[-2000:])
            if m.non_finite:
                assert proc.returncode == 2, m
            if proc.returncode == 0:
                _finite_json(proc.stdout)
            counts["cases"] += 1
        finally:
            shutil.rmtree(root, ignore_errors=True)

    case()
    print(f"\nconsole-script fuzz: {counts['cases']} cases")
    record_property("subprocess_fuzz", counts["cases"])
    assert counts["cases"] >= 1
