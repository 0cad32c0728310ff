"""envs/link_torch.py: the verl venv takes the main venv's torch stack as hard links (one copy on disk),
only the stack's distributions, and nothing half-linked when a link fails."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "envs" / "link_torch.py"
spec = importlib.util.spec_from_file_location("link_torch", SCRIPT)
link_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(link_torch)


def _dist(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: its files and a dist-info whose RECORD lists them."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    record = [f"{rel},," for rel in files] + [f"{info}/RECORD,,", f"../../../bin/{name}-cli,,"]
    (site / info / "RECORD").write_text("\n".join(record) + "\n")


def _venvs(tmp: Path) -> tuple[Path, Path]:
    source, target = tmp / "src-venv", tmp / "dst-venv"
    site = link_torch.site_packages(source)
    site.mkdir(parents=True)
    link_torch.site_packages(target).mkdir(parents=True)
    _dist(site, "torch", "2.14.1", {"torch/__init__.py": "T", "torch/lib/libtorch.so": "L"})
    _dist(site, "nvidia-cublas", "13.1", {"nvidia/cublas/lib/libcublas.so": "C"})
    _dist(site, "transformers", "5.21.0", {"transformers/__init__.py": "X"})  # pinned apart: not linked
    return source, target


def test_the_stack_is_linked_and_the_rest_left_to_pip(tmp_path):
    source, target = _venvs(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), str(target)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "7 files of the torch stack linked" in proc.stdout
    src, dst = link_torch.site_packages(source), link_torch.site_packages(target)
    for rel in ("torch/lib/libtorch.so", "nvidia/cublas/lib/libcublas.so", "torch-2.14.1.dist-info/RECORD"):
        assert os.path.samefile(src / rel, dst / rel)
    assert not (dst / "transformers").exists() and not list(dst.glob("transformers-*"))
    assert not (target / "bin").exists()  # console scripts name their own venv's python
    from importlib import metadata

    versions = {d.metadata["Name"]: d.version for d in metadata.distributions(path=[str(dst)])}
    assert versions == {"torch": "2.14.1", "nvidia-cublas": "13.1"}


def test_a_failed_link_leaves_nothing_half_linked(tmp_path, monkeypatch):
    source, target = _venvs(tmp_path)
    real_link, calls = os.link, []

    def link(src, dst):  # the third file lies on another file system
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(18, "Invalid cross-device link")
        real_link(src, dst)

    monkeypatch.setattr(link_torch.os, "link", link)
    with pytest.raises(OSError):
        link_torch.link(link_torch.site_packages(source), link_torch.site_packages(target))
    dst = link_torch.site_packages(target)
    assert [p for p in dst.rglob("*") if p.is_file()] == []
    calls.clear()  # the script says so and succeeds: pip then installs the stack itself
    assert link_torch.main([str(source), str(target)]) == 0
    assert [p for p in dst.rglob("*") if p.is_file()] == []
