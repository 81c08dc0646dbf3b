"""Which toonvae modules a stage script imports, found by reading the source (ast)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def toonvae_imports(script: Path) -> set[Path]:
    """Every file of the toonvae package that ``script`` imports, transitively."""
    seen: set[Path] = set()
    todo = [Path(script)]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        # A module's lazy attributes (PEP 562 __getattr__) import only when a caller asks.
        tree.body = [n for n in tree.body
                     if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if not name.startswith("toonvae"):
                    continue
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # a package's __init__ runs too
                    f = _module_file(".".join(parts[:i]))
                    if f and f not in seen:
                        seen.add(f)
                        todo.append(f)
    return seen
