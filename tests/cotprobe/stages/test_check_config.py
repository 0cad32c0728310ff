"""The check-config verb: a study config validated, its cells counted."""

from pathlib import Path

from cotprobe import cli


def test_check_config(capsys):
    root = Path(__file__).resolve().parents[3]
    args = [
        "--configfile",
        str(root / "config/config.yaml"),
        "--schema",
        str(root / "workflow/schemas/config.schema.yaml"),
    ]
    assert cli.main(["check-config", *args]) == 0
    assert "config/config.yaml: ok (114 generation cells x 1 judge(s))" in capsys.readouterr().out
