"""Check a study config: validate it against the schema and count its cells."""

from __future__ import annotations

from pathlib import Path


def run(args) -> None:
    import yaml

    from cotprobe.workflow import Grid

    config = yaml.safe_load(Path(args.configfile).read_text())
    grid = Grid.from_config(config, args.schema)
    n = len(list(grid.cells()))
    print(f"{args.configfile}: ok ({n} generation cells x {len(grid.judges)} judge(s))")
