"""Every command in the README's console blocks runs as written, and the figures it shows are the
figures it prints (issue 12, item 1).

Blocks run in README order in one scratch directory that sees the repository's folders, as a user
in a fresh clone after `make demo` would. A comment just before a block may say
`<!-- readme-test: skip: WHY -->`, `check: FIGURE; FIGURE` (beyond the $/h figures, which are
always checked) or `quicker: OLD => NEW` (a timing option a test need not run at full length).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ("configs", "examples", "tiers", "model_zoo", "benchmarks")

BLOCK = re.compile(r"(?:<!--\s*readme-test:(?P<directive>.*?)-->\s*\n)?```console\n(?P<body>.*?)```", re.S)
COST = re.compile(r"\d+\.\d{4} \$/h")


@dataclass
class Command:
    line: str
    shown: list[str] = field(default_factory=list)

    @property
    def expects_error(self) -> bool:
        return any(s.startswith("error:") for s in self.shown)


@dataclass
class Block:
    number: int
    line: int
    commands: list[Command]
    skip: str | None = None
    checks: list[str] = field(default_factory=list)
    quicker: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Block]:
    blocks = []
    for k, match in enumerate(BLOCK.finditer(text)):
        block = Block(k + 1, text[: match.start("body")].count("\n") + 1, [])
        for directive in (match.group("directive") or "").split("|"):
            key, _, value = directive.strip().partition(":")
            if key == "skip":
                block.skip = value.strip()
            elif key == "check":
                block.checks += [c.strip() for c in value.split(";") if c.strip()]
            elif key == "quicker":
                old, _, new = value.partition("=>")
                block.quicker.append((old.strip(), new.strip()))
        lines = match.group("body").splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ "):
                command = lines[i][2:]
                while command.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command.rstrip()[:-1] + " " + lines[i].strip()
                block.commands.append(Command(command))
            elif block.commands:
                block.commands[-1].shown.append(lines[i])
            i += 1
        blocks.append(block)
    return blocks


def test_the_parser_reads_commands_outputs_and_directives():
    text = ("<!-- readme-test: check: 1.5 $/h | quicker: --rounds 5 => --rounds 1 -->\n```console\n"
            "$ jellybean plan -w a \\\n    -i b\ncost 1.5000 $/h\n$ jellybean validate x\nerror: x: bad\n```\n")
    (block,) = parse(text)
    assert [c.line for c in block.commands] == ["jellybean plan -w a  -i b", "jellybean validate x"]
    assert block.commands[0].shown == ["cost 1.5000 $/h"] and block.commands[1].expects_error
    assert block.checks == ["1.5 $/h"] and block.quicker == [("--rounds 5", "--rounds 1")]


BLOCKS = parse(README.read_text())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A fresh working directory that sees the repository's shipped folders and its .venv."""
    work = tmp_path_factory.mktemp("readme")
    for name in SHARED:
        (work / name).symlink_to(ROOT / name)
    # the environment running the tests is the README's .venv (`make test` runs them from it)
    (work / ".venv").symlink_to(Path(sys.prefix))
    assert (work / ".venv" / "bin" / "jellybean").exists(), "the package is not installed in this environment"
    return work


def test_the_readme_has_console_blocks():
    assert len(BLOCKS) >= 4 and sum(len(b.commands) for b in BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"block{b.number}-line{b.line}")
def test_readme_block_runs_as_written(block: Block, scratch: Path):
    if block.skip:
        pytest.skip(block.skip)
    env = {**os.environ, "PATH": f"{scratch / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "COLUMNS": "100", "NO_COLOR": "1"}
    printed = ""
    for command in block.commands:
        line = command.line
        for old, new in block.quicker:
            line = line.replace(old, new)
        proc = subprocess.run(["bash", "-c", line], cwd=scratch, env=env, capture_output=True, text=True,
                              timeout=600)
        out = proc.stdout + proc.stderr
        printed += out
        where = f"README.md line {block.line}: `{shlex.split(command.line)[0]} ...`"
        if command.expects_error:
            assert proc.returncode != 0, f"{where} should fail as shown:\n{out}"
            for shown in command.shown:
                if shown.startswith("error:"):
                    assert shown[:70] in " ".join(out.split()), f"{where}: shown `{shown}`, printed:\n{out}"
        else:
            assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{out[-3000:]}"
        for figure in COST.findall("\n".join(command.shown)):
            assert figure in out, f"{where}: README shows {figure}, the command printed:\n{out[-3000:]}"
    for figure in block.checks:
        assert figure in printed, f"README.md line {block.line}: expected `{figure}` in:\n{printed[-3000:]}"
