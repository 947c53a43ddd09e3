"""The package's shape: no module imports another module's private names, nor another package's private modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "python" / "rtrec"


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # rtrec.<package>


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _private(name: str) -> bool:
    # _native is the compiled core's public face; __version__ and the like are public by convention.
    return name.startswith("_") and name != "_native" and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_private_names_of_another() -> None:
    offences = []
    for path in sorted(ROOT.rglob("*.py")):
        here = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("rtrec"):
                continue
            target = node.module or ""
            private = [a.name for a in node.names if _private(a.name)]
            hidden = [p for p in target.split(".")[1:] if _private(p)] if package_of(target) != package_of(here) else []
            if private or hidden:
                offences.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: from {target} import {private}")
    assert not offences, "\n".join(offences)


def test_modules_stay_small_enough_to_hold_in_mind() -> None:
    sizes = {str(p.relative_to(ROOT.parent)): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert max(sizes.values()) <= 500, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    assert sizes["rtrec/serve/daemon.py"] < 400  # it wires the parts and runs the lifecycle, nothing else
