import pytest

from benchmark.cli import main
from benchmark.errors import StereobenchError
from benchmark.registry import LazyRegistry


def test_registry_resolves_lazily_and_suggests():
    reg = LazyRegistry("thing", {"sqrt": "math:sqrt", "broken": "no_such_module_xyz:f"})
    assert reg["sqrt"](9.0) == 3.0
    with pytest.raises(StereobenchError, match="Did you mean 'sqrt'"):
        reg["sqrtt"]
    with pytest.raises(StereobenchError, match="cannot be imported"):
        reg["broken"]
    assert "sqrt" in reg and sorted(reg) == ["broken", "sqrt"]


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "stereobench" in out and "Typical use" in out


def test_cli_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
