"""Hard-link the torch stack of one venv into another before pip fills the second.

`.venv` and `.venv-verl` pin the same CUDA build of torch (torch, torchvision, triton and the nvidia/cuda
wheels: 5.3 GB). Unpacked twice they are what ran a CI machine out of disk; linked, the second venv's
copy costs no space, and pip finds the pins already satisfied and installs only the rest. Pip replaces
files by unlinking, never writes into one, so the two venvs stay independent. Only files inside
site-packages are linked (not the console scripts, whose shebang names the source venv).

Usage: python envs/link_torch.py SOURCE_VENV TARGET_VENV   (both made with the same Python)
Prints what it linked; links nothing, and says so, where a link is impossible (another file system).
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

# The distributions of the torch stack, by normalized name.
STACK = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def site_packages(venv: Path) -> Path:
    rel = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return venv / rel


def stack_files(source: Path) -> list[Path]:
    """Files (relative to site-packages) of the torch stack's distributions installed in `source`."""
    files = []
    for dist in metadata.distributions(path=[str(source)]):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if not STACK.match(name):
            continue
        for f in dist.files or ():
            if not str(f).startswith(".."):
                files.append(Path(str(f)))
    return files


def link(source: Path, target: Path) -> int:
    """Link the stack's files from site-packages `source` into `target`; return how many were linked."""
    linked: list[Path] = []
    try:
        for rel in stack_files(source):
            src, dst = source / rel, target / rel
            if not src.is_file() or dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
            linked.append(dst)
    except OSError:
        for dst in linked:  # half a distribution would pass pip's check and break the import
            dst.unlink()
        raise
    return len(linked)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python envs/link_torch.py SOURCE_VENV TARGET_VENV", file=sys.stderr)
        return 2
    source, target = (site_packages(Path(a)) for a in argv)
    if not source.is_dir() or not target.is_dir():
        print(f"link_torch: no site-packages at {source} or {target}", file=sys.stderr)
        return 2
    try:
        count = link(source, target)
    except OSError as err:  # EXDEV (another file system) and the like: pip installs the stack itself
        print(f"link_torch: linking nothing ({err}); pip installs torch into {argv[1]}")
        return 0
    print(f"link_torch: {count} files of the torch stack linked from {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
