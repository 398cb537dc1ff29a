"""The import contract: layers import downwards only, and the rules stay free of I/O.

Layers, lowest first (README, Development): tracker and detector_client (independent of each
other) -> the offline/media layer and the pure rules -> the service runtime -> its HTTP adapters
and composition -> deploy -> training -> loadtest -> the CLI (``service.cli``, the composition
root: nothing imports it). Every import counts, function-local ones and ``TYPE_CHECKING`` ones too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tracker", "detector_client", "service", "deploy", "training", "loadtest")

# Module prefix -> (rank, group). The longest matching prefix wins. Within one rank, modules of
# different groups must not import each other.
LAYERS: dict[str, tuple[int, str]] = {
    "tracker": (0, "tracker"),
    "detector_client": (0, "detector_client"),
    "service.errors": (1, "offline"),
    "service.media": (1, "offline"),
    "service.messages": (1, "rules"),
    "service.rules": (1, "rules"),
    "service": (2, "runtime"),
    "service.http": (3, "adapters"),
    "service.liveview": (3, "adapters"),
    "service.runner": (3, "adapters"),
    "service.demo": (3, "adapters"),
    "deploy": (4, "deploy"),
    "training": (5, "training"),
    "loadtest": (6, "loadtest"),
    "service.cli": (7, "cli"),
}
# Rules have no I/O, threads or clocks: time is passed in.
RULE_MODULES = ("service.rules", "detector_client.backoff")
NOT_IN_RULES = {
    "asyncio",
    "threading",
    "socket",
    "selectors",
    "subprocess",
    "time",
    "os",
    "concurrent",
    "ssl",
}
# Shipped to SageMaker (model.tar.gz) and used by the processing job: no service runtime there.
HANDLER_MODULES = ("deploy.sagemaker.inference", "deploy.sagemaker.processing")


def layer(module: str) -> tuple[int, str] | None:
    best = None
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return None if best is None else LAYERS[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    pkg = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                base = ".".join(up[: len(up) - node.level + 1] + ([base] if base else []))
            out.append((node.lineno, base))
            # ``from service import media`` imports service.media
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
    return out


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def violations(files: list[Path]) -> list[str]:
    out = []
    for path in files:
        mod = module_name(path)
        here = layer(mod)
        assert here is not None, f"{mod} is in no layer: add it to LAYERS"
        for line, target in imports(path):
            there = layer(target)
            if there is None or target.split(".")[0] not in PACKAGES:
                if mod.startswith(RULE_MODULES) and target.split(".")[0] in NOT_IN_RULES:
                    out.append(
                        f"{path.relative_to(ROOT)}:{line}: rule module imports {target} (I/O or clock)"
                    )
                continue
            if target in ("service", "deploy", "training", "loadtest", "tracker", "detector_client"):
                continue  # a package's __init__ (docstring only, or its own public names)
            if there[0] > here[0] or (there[0] == here[0] and there[1] != here[1] and
                                      {here[1], there[1]} != {"offline", "rules"}):  # fmt: skip
                out.append(
                    f"{path.relative_to(ROOT)}:{line}: {mod} ({here[1]}) imports {target} ({there[1]})"
                )
            if mod in HANDLER_MODULES and there[1] in ("runtime", "adapters"):
                out.append(
                    f"{path.relative_to(ROOT)}:{line}: the SageMaker code imports the service runtime: {target}"
                )
    return out


def test_imports_go_one_way() -> None:
    assert violations(sources()) == []


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an upward import, a function-local one, and a clock in a rule fail."""
    bad = ROOT / "tracker" / "_contract_probe.py"
    bad.write_text("def f():\n    from service.app import Service\n    return Service\n")
    rule = ROOT / "service" / "rules" / "_contract_probe.py"
    rule.write_text("import time\n\nfrom service.mqtt import Publisher\n")
    try:
        found = violations([bad, rule])
    finally:
        bad.unlink()
        rule.unlink()
    assert any("tracker._contract_probe (tracker) imports service.app" in v for v in found), found
    assert any("rule module imports time" in v for v in found), found
    assert any("service.rules._contract_probe (rules) imports service.mqtt (runtime)" in v for v in found), (
        found
    )
