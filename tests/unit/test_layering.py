"""The import rules: only functions/, ops/ and local/ build wiring; the domain stays pure; local/ has no circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "qbo_health"
WIRING = "qbo_health.wiring"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports at run time, lazily or not (``if TYPE_CHECKING:`` blocks do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_only_functions_ops_and_local_import_the_composition_root():
    allowed = {PACKAGE / "wiring.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in allowed
        and "ops" not in path.relative_to(PACKAGE).parts[:1]
        and any(name == WIRING or name.startswith(WIRING + ".") for name in imports_of(path))
    ]
    assert offenders == []
    # The handlers do build from it (the rule is not vacuous).
    assert WIRING in imports_of(ROOT / "functions" / "api" / "app.py")


def test_the_domain_imports_no_aws_storage_or_http_library():
    forbidden = ("boto3", "botocore", "pynamodb", "requests", "requests_oauthlib")
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imports_of(path) if name.split(".")[0] in forbidden
        )
        for path in sorted((PACKAGE / "domain").rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_local_package_has_no_import_circle():
    local = ROOT / "local"
    modules = {module_name(path, ROOT): path for path in local.rglob("*.py")}
    graph = {
        name: {
            other
            for other in modules
            if other != name
            and any(imported == other or imported.startswith(other + ".") for imported in imports_of(path))
        }
        for name, path in modules.items()
    }
    # Packages import their own submodules (``local.intuit_sim`` re-exports its server): not a circle.
    graph = {
        name: {other for other in edges if not other.startswith(name + ".")} for name, edges in graph.items()
    }

    def circle_from(start: str) -> list[str] | None:
        path: list[str] = []

        def walk(node: str) -> list[str] | None:
            if node in path:
                return [*path[path.index(node) :], node]
            path.append(node)
            for neighbour in sorted(graph[node]):
                found = walk(neighbour)
                if found:
                    return found
            path.pop()
            return None

        return walk(start)

    circles = [circle for name in sorted(graph) if (circle := circle_from(name))]
    assert circles == []
