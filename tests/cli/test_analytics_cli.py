"""`jellybean analytics generate | load | query`: the real app on a generated store and a scene, and
every kind of bad input as one clear message with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.replay.scene import SceneConfig, write_scene

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["analytics", *args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "h.duckdb"
    result = _run("generate", str(path), "--intersections", "1", "--days", "1", "--rows", "200000", "--seed", "2",
                  "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == str(path) and abs(summary["rows"] - 200_000) < 5 * math.sqrt(200_000)
    return path


def test_query_answers_with_confidence_fraction_and_time_and_the_exact_one_beside(generated):
    result = _run("query", str(generated), "--intersection", "I01", "--approach", "N", "--at", "08:15", "--exact",
                  "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["answer"] in ("congested", "not congested") and out["answer"] == out["exact"]["answer"]
    assert out["confidence"] >= 1 - (1 - 0.95) / 2 or out["exact_read"]
    assert 0 < out["fractions"]["hour"] <= 1 and 0 < out["fractions"]["recent"] <= 1 and out["seconds"] > 0
    assert out["t"] == 8.25 * 3600 and set(out["features"]) == set(out["exact"]["features"]) | set()
    text = _run("query", str(generated), "--intersection", "I01", "--approach", "N", "--at", "0d 08:15", "--exact")
    assert text.exit_code == 0, text.output
    for words in ("approximate", "exact", "confidence", "sample of the table", "time", "speedup", out["answer"]):
        assert words in text.stdout
    delta = _run("query", str(generated), "--intersection", "I01", "--approach", "N", "--at", "29700", "--delta",
                 "0.1", "--json")
    assert delta.exit_code == 0 and 0 <= json.loads(delta.stdout)["prediction"] <= 1
    only = _run("query", str(generated), "--intersection", "I01", "--approach", "N", "--at", "08:15", "--no-approx",
                "--exact", "--json")
    assert only.exit_code == 0, only.output
    assert "confidence" not in json.loads(only.stdout) and json.loads(only.stdout)["exact"]["answer"] == out["answer"]


def test_load_fills_a_store_from_a_scenes_gt(tmp_path):
    write_scene(tmp_path / "scene", SceneConfig(cameras=2, seconds=3, seed=5, width=160, height=96))
    result = _run("load", str(tmp_path / "scene"), str(tmp_path / "t.duckdb"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows"] > 0 and out["hz"] == 10 and out["approaches"] == ["S01/c001", "S01/c002"]


def _error(result, *words: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    assert all(w in result.output for w in words), result.output


def test_bad_input_is_one_clear_message(generated, tmp_path):
    q = ("query", str(generated), "--intersection", "I01", "--approach", "N")
    _error(_run(*q, "--at", "08:15", "--tau", "1.5"), "--tau 1.5", "between 0 and 1")
    _error(_run(*q, "--at", "08:15", "--tau", "0"), "--tau 0")
    _error(_run(*q, "--at", "08:15", "--delta", "nan"), "--delta nan", "finite")
    _error(_run(*q, "--at", "08:15", "--delta", "inf"), "--delta inf", "finite")
    _error(_run(*q, "--at", "noon"), "--at 'noon'", "HH:MM")
    _error(_run(*q, "--at", "00:10"), "at least an hour after the first")
    _error(_run(*q, "--at", "08:15", "--no-approx"), "--no-approx leaves nothing to run")
    _error(_run("query", str(generated), "--intersection", "I09", "--approach", "N", "--at", "08:15"),
           "no intersection 'I09'", "I01")
    _error(_run("query", str(generated), "--intersection", "I01", "--approach", "X", "--at", "08:15"),
           "no approach 'X'", "E, N, S, W")
    _error(_run("query", str(tmp_path / "none.duckdb"), "--intersection", "I01", "--approach", "N", "--at", "08:15"),
           "none.duckdb: no such track store", "analytics generate")
    garbled = tmp_path / "garbled.duckdb"
    garbled.write_bytes(generated.read_bytes()[:5000])
    _error(_run("query", str(garbled), "--intersection", "I01", "--approach", "N", "--at", "08:15"),
           "garbled.duckdb", "rebuild")
    _error(_run("generate", str(generated), "--hz", "1"), "already exists", "--overwrite")
    _error(_run("generate", str(tmp_path / "g.duckdb"), "--hz", "nan"), "--hz nan")
    _error(_run("generate", str(tmp_path / "g.duckdb"), "--hz", "1", "--days", "0"), "--days")
    _error(_run("generate", str(tmp_path / "g.duckdb")), "exactly one of hz")
    _error(_run("load", str(tmp_path / "nodata"), str(tmp_path / "t.duckdb")), "nodata", "jellybean scene")


def test_a_malformed_gt_file_is_named_with_its_line(tmp_path):
    write_scene(tmp_path / "scene", SceneConfig(cameras=1, seconds=2, seed=5, width=160, height=96))
    gt = tmp_path / "scene" / "train" / "S01" / "c001" / "gt" / "gt.txt"
    gt.write_text("1,2,x,4,5,6,1,-1,-1,-1\n" + gt.read_text())
    result = _run("load", str(tmp_path / "scene"), str(tmp_path / "t.duckdb"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "gt.txt: line 1" in result.output and "expected numbers" in result.output
    assert not (tmp_path / "t.duckdb").exists()
