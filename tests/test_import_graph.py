"""The package's import graph: no circles among module-level imports, and the runtime decided in one
place. Imports under TYPE_CHECKING and inside functions are left out (they run after every module
is loaded); `runtimes.REGISTRY` loads a runtime's module by name, as a plugin."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litedeploy"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules NAME imports at module level."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ImportFrom | ast.Import):
            continue  # an `if TYPE_CHECKING:` block, or code
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
            if node.level else node.module or ""
        found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {module for module in found if module in known and module != name}


def test_the_package_imports_in_no_circle():
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, f"an import circle: {' -> '.join(path[path.index(name):] + [name])}"
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert graph["litedeploy.runtimes"] == set(), "the registry imports no module of ours"


def test_the_runtime_is_decided_in_the_registry_alone():
    """No module outside runtimes/, nor a template, asks which runtime a host has: it asks the
    host's runtime."""
    asking = re.compile(r"\.runtime\s*(==|!=|in\b)|\bhost\.systemd\b(?!\.)|runtime\s*==\s*\"")
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "templates").glob("*.j2")]
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{number}" for path in sources
                 if "runtimes" not in path.parts
                 for number, line in enumerate(path.read_text().splitlines(), 1) if asking.search(line)]
    assert offenders == []


def test_each_registered_name_loads_a_whole_runtime():
    """A registry line names a module whose RUNTIME implements every method of the interface (the
    abstract base refuses to make one that lacks any)."""
    from litedeploy import runtimes
    from litedeploy.runtimes.base import Runtime
    loaded = {name: runtimes.named(name) for name in runtimes.REGISTRY}
    assert all(isinstance(runtime, Runtime) for runtime in loaded.values())
    assert len({type(runtime) for runtime in loaded.values()}) == len(loaded)
