"""The package's import graph, drawn from every import: at module level, under TYPE_CHECKING, inside
functions, and modules loaded by name (a module that calls `importlib.import_module` depends on
every module of ours it names in a string). No circle, no import running back up the layers, the
runtime resolved at the top and passed down, the front door decided in one place, and a runtime's
interface in small parts."""

import ast
import inspect
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litedeploy"
# The layers, lowest first: a module imports only from its own layer or below.
LAYERS = [
    # Records and pure rules everything reads.
    ("errors", "facts", "envfile", "images", "audit", "clients", "shapes", "host", "secrets", "catalog", "settings",
     "enterprise", "tls",
     "masterkey", "advisories", "composefile", "shared", "plan", "inventory", "sopsfile"),
    # Command builders: every word quoted in one place.
    ("commands", "commands.*"),
    # What runs the gateway: the interface in parts, its implementations, the registry.
    ("runtimes", "runtimes.*"),
    # The front door and the pure readings across runtimes.
    ("frontdoor", "render", "releases", "status", "project"),
    # The shell: the executor, the gateway's API, one task's hold on a host.
    ("remote", "verify", "session", "locking", "fleet"),
    # Changes as steps with their undo.
    ("steps", "switch", "acme_certificate", "deploy"),
    # Invoke's tasks.
    ("tasks", "tasks.*"),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules NAME imports anywhere in its text, or loads by name."""
    package = ["litedeploy", *name.split(".")] if path.name == "__init__.py" else ["litedeploy", *name.split(".")[:-1]]
    package = [part for part in package if part]
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
    if any(isinstance(node, ast.Attribute) and node.attr == "import_module" for node in ast.walk(tree)):
        found |= {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    ours = {module.removeprefix("litedeploy").lstrip(".") for module in found if module.startswith("litedeploy")}
    return {module for module in ours if module in known and module != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def layer(name: str) -> int:
    matches = [index for index, names in enumerate(LAYERS)
               if name in names or any(pattern.endswith(".*") and name.startswith(pattern[:-1]) for pattern in names)]
    assert len(matches) == 1, f"{name or 'litedeploy'} is in {len(matches)} layers of LAYERS; name it in one"
    return matches[0]


def test_the_package_imports_in_no_circle_counting_every_import():
    edges = graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, f"an import circle: {' -> '.join(path[path.index(name):] + [name])}"
        if name in done:
            return
        for other in sorted(edges[name]):
            visit(other, path + [name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])


def test_no_import_runs_back_up_the_layers():
    upward = [f"{name} -> {other}" for name, others in sorted(graph().items()) if name
              for other in sorted(others) if other and layer(other) > layer(name)]
    assert upward == []


def test_the_extraction_sees_type_only_function_level_and_by_name_imports():
    """The rule above is only as good as the graph: each kind of import is found."""
    edges = graph()
    assert "runtimes.base" in edges["render"]  # only under TYPE_CHECKING
    assert "deploy" in edges["tasks.compose"]  # only inside a function
    assert {"runtimes.compose", "runtimes.systemd"} <= edges["runtimes"]  # loaded by name from REGISTRY


def test_the_runtime_is_resolved_at_the_top_and_passed_down():
    """`runtimes.of` and `runtimes.named` are called by the session and above, never below it."""
    calls = re.compile(r"\bruntimes\.(of|named)\(")
    session = layer("session")
    below = [name for name, path in modules().items() if name and layer(name) < session and calls.search(path.read_text())]
    assert below == []


def test_the_runtime_is_decided_in_the_registry_alone():
    """No module outside runtimes/ and host.py, nor a template, asks which runtime a host has: it
    asks the host's runtime."""
    asking = re.compile(r"\.runtime\s*(==|!=|in\b)|runtime\s*==\s*\"")
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "templates").glob("*.j2")]
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{number}" for path in sources
                 if "runtimes" not in path.parts and path.name != "host.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if asking.search(line)]
    assert offenders == []


def test_whether_the_front_door_is_on_is_decided_in_one_place():
    """vars.zero_downtime is read by `frontdoor.front_door` alone (settings.py holds its rule and the
    preset that sets it), and only `frontdoor` builds the door from hosts.yaml; the rest asks the
    host's topology."""
    reading = re.compile(r"""["']zero_downtime["']|\bfront_door\(""")
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "templates").glob("*.j2")]
    readers = sorted({path.name for path in sources for line in path.read_text().splitlines()
                      if reading.search(line.split("#")[0])})
    assert readers == ["frontdoor.py", "settings.py"]
    settings = (PACKAGE / "settings.py").read_text()
    assert len(re.findall(r"""["']zero_downtime["']""", settings)) == 2  # its rule, and the production preset


def test_each_part_of_a_runtime_has_about_a_dozen_methods_at_most():
    from litedeploy.commands import ServiceCommands
    from litedeploy.frontdoor import Topology
    from litedeploy.runtimes.base import DoorPart, Driver, ServiceFile, WhatRuns
    for part in (ServiceFile, WhatRuns, Driver, DoorPart, ServiceCommands, Topology):
        methods = [name for name, member in inspect.getmembers(part, inspect.isfunction) if not name.startswith("_")]
        assert len(methods) <= 12, f"{part.__name__} has {len(methods)} methods: {', '.join(methods)}"


def test_each_registered_name_loads_a_whole_runtime():
    """A registry line names a module whose RUNTIME has every part (the abstract bases refuse to make
    a part that lacks a method), and a settings record of its own."""
    from litedeploy import runtimes
    from litedeploy.host import RUNTIME_SETTINGS
    from litedeploy.runtimes.base import DoorPart, Driver, Runtime, ServiceFile, WhatRuns
    loaded = {name: runtimes.named(name) for name in runtimes.REGISTRY}
    assert all(isinstance(runtime, Runtime) for runtime in loaded.values())
    for runtime in loaded.values():
        parts = (runtime.service, runtime.release, runtime.driver, runtime.door)
        assert [isinstance(part, kind) for part, kind in zip(parts, (ServiceFile, WhatRuns, Driver, DoorPart))] == [True] * 4
    assert len({id(runtime) for runtime in loaded.values()}) == len(loaded)
    assert set(runtimes.REGISTRY) == set(RUNTIME_SETTINGS)
