import subprocess
import sys

from mlship.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_one_line_error():
    result = subprocess.run([sys.executable, "-m", "mlship", "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown command 'frobnicate'" in result.stderr

