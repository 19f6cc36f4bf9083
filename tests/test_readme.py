"""Every ``python -m harness`` command in the README's code blocks still parses.

Parsing with the CLI's own parser is cheap and catches renamed commands, options and
choices; running them would train for minutes.
"""

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.tables.study import get_spec, is_study

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)  # (language, body) of each fenced block
_COMMAND = "python -m harness"


def readme_commands() -> list[str]:
    """The harness commands of the README's code blocks, one per ``&&`` part, comments
    cut; usage synopses (with ``[optional]`` parts or continuation lines) are left out."""
    commands = []
    for language, block in _BLOCK.findall(README.read_text()):
        if language not in ("", "bash", "sh"):
            continue
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            for part in (p.strip() for p in line.split("&&")):
                if part.startswith(_COMMAND) and "[" not in part and not part.endswith("\\"):
                    commands.append(part)
    return commands


def test_the_readme_has_commands():
    assert len(readme_commands()) >= 5


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    args = build_parser().parse_args(shlex.split(command)[len(_COMMAND.split()) :])
    names = getattr(args, "tables", None) or [getattr(args, "table", None)]
    for name in filter(None, names):  # tables and studies exist and have the profile asked for
        spec = get_spec(str(README.parent / name) if is_study(name) else name)
        spec.protocol(getattr(args, "profile", None) or "paper")
