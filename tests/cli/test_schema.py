"""`jellybean schema KIND`: JSON Schemas that accept the shipped files and catch what validate catches."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.spec.loader import KINDS

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
SHIPPED = {
    "workflow": [REPO / "configs/aicity/workflow.yaml", REPO / "examples/aicity/workflow.yaml"],
    "model-zoo": [REPO / "configs/aicity/zoo.yaml", REPO / "examples/aicity/zoo.yaml"],
    "hardware": sorted((REPO / "tiers").glob("*.yaml")),
    "infrastructure": [REPO / "configs/aicity/infrastructure.yaml", REPO / "examples/aicity/infrastructure.yaml"],
}


def schema(kind: str) -> dict:
    result = runner.invoke(app, ["schema", kind])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_the_shipped_files_pass_their_schema(kind):
    validator = jsonschema.Draft202012Validator(schema(kind))
    for path in SHIPPED[kind]:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, [e.message for e in errors[:3]])


def test_a_misspelled_key_fails_the_schema_as_it_fails_validate():
    doc = yaml.safe_load((REPO / "examples/aicity/workflow.yaml").read_text())
    doc["operators"][0]["inptus"] = doc["operators"][0].pop("inputs")
    errors = list(jsonschema.Draft202012Validator(schema("workflow")).iter_errors(doc))
    assert any("inptus" in e.message for e in errors)


def test_every_kind_has_a_schema_and_an_unknown_kind_is_a_clear_error():
    assert all(schema(kind)["$schema"].endswith("2020-12/schema") for kind in KINDS)
    bad = runner.invoke(app, ["schema", "workflw"])
    assert bad.exit_code == 1 and "did you mean 'workflow'" in bad.output
