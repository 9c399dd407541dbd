"""The ``omnitalker`` CLI: every command's module imports and answers --help with its own prog name."""

from __future__ import annotations

import pytest

from pipeline.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"omnitalker {name}" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["nosuch"]) == 2
    assert "unknown command" in capsys.readouterr().err
