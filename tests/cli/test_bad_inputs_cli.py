"""Inputs that once reached a traceback or a silent "OPTIMAL": each is now one error naming the file,
the field and the fix, with exit 2, at `validate` as at `plan` (issue 9, item 6)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import VQA_INPUTS, SpecSet
from jellybean.cli.main import app, hoist_debug

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def plan_args(p: dict[str, Path]) -> list[str]:
    return ["plan", "-w", p["workflow"], "-z", p["zoo"], "-i", p["infrastructure"], "--json", "--time-limit", "5"]


def assert_refused(result, *expected: str) -> None:
    """Exit 2, every expected fragment on one error line, no traceback, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    assert any(all(part in line for part in expected) for line in lines), result.stderr


def validate_and_plan(specs: SpecSet, *expected: str) -> None:
    p = specs.write()
    assert_refused(run("validate", p["workflow"], p["zoo"], p["infrastructure"]), *expected)
    assert_refused(run(*plan_args(p)), *expected)


# -- the YAML specs --------------------------------------------------------------------------------
def test_negative_hardware_count_is_refused_by_validate_of_the_file_alone(specs: SpecSet) -> None:
    specs.infra["sites"][0]["hardware"] = {"cam-box": -1}
    p = specs.write()
    expected = (f"{p['infrastructure']}: sites[0].hardware.cam-box: input should be greater than or equal to 0 "
                "(got -1); use a larger value")
    assert_refused(run("validate", p["infrastructure"]), expected)
    validate_and_plan(specs, expected)


def test_negative_stream_count_in_a_mapping_names_the_count(specs: SpecSet) -> None:
    specs.infra["sites"][0]["sources"] = {"camera": {"count": -2}}
    validate_and_plan(specs, "sites[0].sources.camera.count: input should be greater than or equal to 1 (got -2)")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), float("-inf")], ids=["inf", "nan", "-inf"])
def test_non_finite_item_kb_is_refused(specs: SpecSet, value: float) -> None:
    specs.workflow["edges"][0]["item_kb"] = value
    validate_and_plan(specs, "workflow.yaml: edges[0].item_kb: input should be a finite number",
                      "write a finite number")


def test_nan_latency_in_the_zoo_is_refused(specs: SpecSet) -> None:
    specs.zoo["operators"][0]["variants"][0]["profiles"]["cam-box"]["latency_ms"] = float("nan")
    validate_and_plan(specs, "zoo.yaml: operators[0].variants[0].profiles.cam-box.latency_ms: input should be a "
                             "finite number (got nan)")


def test_accuracy_factor_above_one_is_refused(specs: SpecSet) -> None:
    specs.zoo["operators"][0]["variants"][0]["accuracy"] = 1.7
    validate_and_plan(specs, "zoo.yaml: operators[0].variants[0].accuracy: input should be less than or equal to 1 "
                             "(got 1.7); use a smaller value")


def test_accuracy_target_in_percent_against_fractions_is_refused(specs: SpecSet) -> None:
    specs.workflow["slo"]["accuracy"] = 60
    validate_and_plan(specs, "workflow.yaml: slo.accuracy: 60 is above 1", "write the target as a fraction (e.g. 0.6")


def test_accuracy_table_mixing_fractions_and_percent_is_refused(specs: SpecSet) -> None:
    specs.zoo["accuracy_table"] = {"operators": ["detect"], "rows": [
        {"variants": ["small"], "accuracy": 0.62}, {"variants": ["large"], "accuracy": 80}]}
    validate_and_plan(specs, "zoo.yaml: accuracy_table.rows[0].accuracy: 0.62 reads as a fraction while other rows "
                             "are in percent (e.g. 80)")


def test_percent_table_with_percent_target_plans() -> None:
    """The VQA example's table and target are in percent, as the prototype's are."""
    configs = Path(__file__).resolve().parents[2] / "configs" / "vqa"
    result = run("plan", "-w", configs / "workflow.yaml", "-z", configs / "zoo.yaml", "-i",
                 configs / "infrastructure.yaml", "--json", "--time-limit", "5")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predicted"]["accuracy"] >= 56.0


def test_huge_rate_is_refused_before_it_overflows(specs: SpecSet) -> None:
    specs.workflow["sources"][0]["rate"] = 1e308
    validate_and_plan(specs, "workflow.yaml: sources[0].rate: input should be less than or equal to 1000000 "
                             "(got 1e+308); use a smaller value")


def test_streams_times_ratios_out_of_range_are_named(specs: SpecSet) -> None:
    specs.infra["sites"][0]["sources"] = {"camera": 1_000_000}
    specs.workflow["sources"][0]["rate"] = 1_000_000
    validate_and_plan(specs, "infrastructure.yaml: sites: the streams of source 'camera' emit 1e+12 items/s in all")


def test_tiny_latency_is_refused(specs: SpecSet) -> None:
    specs.zoo["operators"][0]["variants"][0]["profiles"]["cam-box"]["latency_ms"] = 1e-308
    validate_and_plan(specs, "profiles.cam-box.latency_ms: input should be greater than or equal to 0.000001")


def test_deep_yaml_is_refused_naming_the_file(specs: SpecSet) -> None:
    p = specs.write()
    p["workflow"].write_text(p["workflow"].read_text() + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    expected = f"{p['workflow']}: line {len(p['workflow'].read_text().splitlines())}, column "
    started = time.monotonic()
    result = run("validate", p["workflow"])
    assert time.monotonic() - started < 1.0  # refused at once, not when Python's stack runs out
    assert_refused(result, expected, "nest")
    assert_refused(run(*plan_args(p)), expected, "nest")


def test_yaml_nested_past_the_limit_is_refused(specs: SpecSet) -> None:
    p = specs.write()
    p["workflow"].write_text(p["workflow"].read_text() + "description: " + "[" * 100 + "]" * 100 + "\n")
    assert_refused(run("validate", p["workflow"]), f"{p['workflow']}: line 21, column 77: nested more than 64 levels "
                                                    "deep; spec files are a few levels deep, fix the structure there")


def test_a_recursion_error_while_parsing_is_a_named_error(specs: SpecSet, monkeypatch) -> None:
    import jellybean.spec.base as base

    def recurse(self):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(base._SpecLoader, "get_single_data", recurse)
    p = specs.write()
    assert_refused(run("validate", p["workflow"]), f"{p['workflow']}: (top level): nested too deeply to parse")


def test_yaml_deep_through_aliases_is_refused_by_the_depth_limit(specs: SpecSet) -> None:
    p = specs.write()
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 70)]
    p["zoo"].write_text(p["zoo"].read_text() + "\n".join(lines) + "\n")
    assert_refused(run("validate", p["zoo"]), f"{p['zoo']}: (top level): nested more than 64 levels deep")


def test_yaml_alias_bomb_is_refused(specs: SpecSet) -> None:
    p = specs.write()
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    p["workflow"].write_text(p["workflow"].read_text() + "\n".join(lines) + "\n")
    assert_refused(run("validate", p["workflow"]), "values once its YAML aliases are expanded")


def test_self_referring_yaml_is_refused(specs: SpecSet) -> None:
    p = specs.write()
    p["workflow"].write_text(p["workflow"].read_text() + "description: &d [1, *d]\n")
    assert_refused(run("validate", p["workflow"]), "a YAML alias refers to a value that contains it")


def test_non_utf8_yaml_is_refused(specs: SpecSet) -> None:
    p = specs.write()
    p["infrastructure"].write_bytes(p["infrastructure"].read_bytes() + b"description: caf\xe9\n")
    expected = f"{p['infrastructure']}: (file): not UTF-8 text (byte 0xe9"
    assert_refused(run("validate", p["infrastructure"]), expected, "save it as UTF-8 text")
    assert_refused(run(*plan_args(p)), expected)


def test_integer_too_long_to_convert_is_refused(specs: SpecSet) -> None:
    p = specs.write()
    p["workflow"].write_text(p["workflow"].read_text().replace("rate: 10", "rate: " + "9" * 5000))
    assert_refused(run("validate", p["workflow"]), f"{p['workflow']}: (file): a value cannot be read")


# -- the prototype's format --------------------------------------------------------------------------
@pytest.fixture
def proto(tmp_path: Path) -> Path:
    target = tmp_path / "proto"
    shutil.copytree(VQA_INPUTS, target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def validate_and_plan_proto(directory: Path, *expected: str) -> None:
    assert_refused(run("validate", directory), *expected)
    assert_refused(run("plan", "--jellybean-inputs", directory, "--json", "--time-limit", "5"), *expected)


def test_proto_zero_rate_is_refused(proto: Path) -> None:
    edit(proto / "input_injection_rates.csv", "ReadImage,40", "ReadImage,0")
    validate_and_plan_proto(proto, "input_injection_rates.csv: line 1: items_per_s 0 must be greater than 0")
    # ... and only that: the source is not also reported as having no rate.
    assert len(run("validate", proto).stderr.splitlines()) == 1


def test_proto_huge_rate_is_refused(proto: Path) -> None:
    edit(proto / "input_injection_rates.csv", "ReadImage,40", "ReadImage,1e308")
    validate_and_plan_proto(proto, "input_injection_rates.csv: line 1: items_per_s '1e308' is above 1e+06")


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_proto_non_finite_latency_is_refused(proto: Path, text: str) -> None:
    edit(proto / "execution_profile.csv", "264.52877183333334", text)
    validate_and_plan_proto(proto, "execution_profile.csv: line 1: latency_ms", "is not a finite number")


def test_proto_empty_latency_still_means_cannot_run(proto: Path) -> None:
    edit(proto / "execution_profile.csv", "264.52877183333334", "")
    result = run("plan", "--jellybean-inputs", proto, "--json", "--time-limit", "5")
    assert result.exit_code == 0, result.output


def test_proto_zero_ratio_is_refused(proto: Path) -> None:
    edit(proto / "throughput_normalization_ratios.csv", "ReadImage,ExtractImageFeature,1.0",
         "ReadImage,ExtractImageFeature,0")
    validate_and_plan_proto(proto, "throughput_normalization_ratios.csv: line 1: ratio 0 must be greater than 0")


def test_proto_ratios_multiplying_past_the_range_are_named(proto: Path) -> None:
    edit(proto / "input_injection_rates.csv", "ReadImage,40", "ReadImage,1000000")
    edit(proto / "throughput_normalization_ratios.csv", "ReadImage,ExtractImageFeature,1.0",
         "ReadImage,ExtractImageFeature,10000")
    validate_and_plan_proto(proto, "logical_graph.csv: line 1: 'ExtractImageFeature' would handle 1e+10 items/s")


@pytest.mark.parametrize("threshold, expected", [
    ("170", "threshold: 170 is outside 0..100; the accuracy profiles are in percent (e.g. 58.33)"),
    ("0.56", "threshold: 0.56 reads as a fraction, but the accuracy profiles are in percent (e.g. 58.33); write the "
             "threshold in percent (56)"),
    ("NaN", "threshold: expected a finite number"),
    ("1e400", "threshold: expected a finite number"),
])
def test_proto_threshold_must_match_the_profiles_scale(proto: Path, threshold: str, expected: str) -> None:
    edit(proto / "accuracy_requirement.json", "56.0", threshold)
    validate_and_plan_proto(proto, "accuracy_requirement.json: " + expected)


def test_proto_deep_json_is_refused(proto: Path) -> None:
    (proto / "workers_partition.json").write_text("[" * 5000 + "]" * 5000)
    validate_and_plan_proto(proto, "workers_partition.json: (top level): nested too deeply to parse")


def test_proto_deep_config_is_refused(proto: Path) -> None:
    (proto / "config.yaml").write_text("INPUT: " + "[" * 100 + "]" * 100 + "\n")
    validate_and_plan_proto(proto, "config.yaml: line 1, column 71: nested more than 64 levels deep")


def test_proto_non_utf8_csv_is_refused(proto: Path) -> None:
    (proto / "workers_specs.csv").write_bytes(b"workflow-compute-cpu-1,0.096\n\xff\xfe,1\n")
    validate_and_plan_proto(proto, "workers_specs.csv: (file): not UTF-8 text (byte 0xff at offset 29)")


def test_proto_config_factor_out_of_range_is_refused(proto: Path) -> None:
    (proto / "config.yaml").write_text("INPUT:\n  LATENCY_OVERESTIMATE_RATIO: 1.0e-300\n")
    validate_and_plan_proto(proto, "config.yaml: INPUT.LATENCY_OVERESTIMATE_RATIO: 1e-300 is outside 0.01..100")


# -- the command line ----------------------------------------------------------------------------------
def test_an_unexpected_exception_is_one_line_and_exit_1(specs: SpecSet, monkeypatch) -> None:
    import jellybean.planner.strategies as strategies

    def boom(*args, **kwargs):
        raise ZeroDivisionError("float division by zero\nsecond line")

    monkeypatch.setattr(strategies, "make_plan", boom)
    p = specs.write()
    result = run(*plan_args(p))
    assert result.exit_code == 1
    assert result.stderr == ("internal error: ZeroDivisionError: float division by zero second line; rerun with --debug "
                             "for the traceback\n")
    assert result.stdout == ""
    # --debug, before or after the command, lets it through.
    assert isinstance(run("--debug", *plan_args(p)).exception, ZeroDivisionError)
    assert isinstance(run(*plan_args(p), "--debug").exception, ZeroDivisionError)


def test_debug_after_the_command_is_the_group_option() -> None:
    assert hoist_debug(["plan", "-w", "x", "--debug"]) == ["--debug", "plan", "-w", "x"]
    assert hoist_debug(["--debug", "plan"]) == ["--debug", "plan"]
    assert hoist_debug(["plan", "--", "--debug"]) == ["plan", "--", "--debug"]


def test_markup_in_a_message_is_printed_as_is(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("kind: workflow\nname: x\n'[/]': 1\n'[bold]b': 2\n")
    result = run("validate", bad)
    assert result.exit_code == 2
    assert "unknown key '[/]'" in result.stderr


def test_console_script_refuses_bad_input_without_a_traceback(tmp_path: Path, proto: Path) -> None:
    specs = SpecSet(tmp_path / "specs")
    specs.infra["sites"][0]["hardware"] = {"cam-box": -1}
    p = specs.write()
    cases = [
        ["validate", str(p["infrastructure"])],
        ["plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"])],
    ]
    edit(proto / "input_injection_rates.csv", "ReadImage,40", "ReadImage,0")
    cases.append(["plan", "--jellybean-inputs", str(proto)])
    for args in cases:
        proc = subprocess.run([sys.executable, "-m", "jellybean", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert proc.stderr.startswith("error: ")


def test_kind_that_is_not_a_string_is_named(tmp_path: Path) -> None:  # found by the fuzz test
    bad = tmp_path / "hardware.yaml"
    bad.write_text("kind: []\nhardware: []\n")
    assert_refused(run("validate", bad), f"{bad}: kind: unknown kind []; set `kind:` to one of workflow")
