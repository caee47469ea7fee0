"""examples/aicity's workflow, zoo and infrastructure as dicts for a test to edit, and written back
to a directory: file references are made absolute, so the copies plan from anywhere."""

from __future__ import annotations

from pathlib import Path

import yaml

AICITY = Path(__file__).resolve().parents[2] / "examples" / "aicity"


def aicity_specs() -> tuple[dict, dict, dict]:
    """(workflow, zoo, infrastructure) of examples/aicity, model and catalog paths absolute."""
    wf = yaml.safe_load((AICITY / "workflow.yaml").read_text())
    zoo = yaml.safe_load((AICITY / "zoo.yaml").read_text())
    for op in zoo["operators"]:
        for v in op["variants"]:
            if v.get("model"):
                v["model"] = str((AICITY / v["model"]).resolve())
    infra = yaml.safe_load((AICITY / "infrastructure.yaml").read_text())
    infra["hardware_catalog"] = [str((AICITY / c).resolve()) for c in infra["hardware_catalog"]]
    return wf, zoo, infra


def write_specs(directory: Path, wf: dict, zoo: dict, infra: dict) -> dict[str, Path]:
    """The three documents as workflow.yaml, zoo.yaml and infrastructure.yaml in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, doc in (("workflow", wf), ("zoo", zoo), ("infrastructure", infra)):
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(doc, sort_keys=False))
    return paths
