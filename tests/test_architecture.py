"""The layering the code promises (docs/architecture.md), checked from the source.

- no import cycles between modules (function-level imports count: they are cycles too);
- layers: api, web and cli use services; services use schedulers; schedulers know
  nothing of services, HTTP or the web;
- no service asks which scheduler it talks to: differences live in the adapters;
- small modules: none over about 500 lines except the pure parsers.
"""
from __future__ import annotations

import ast
import re

from tests.conftest import PROJECT_DIR

PACKAGE = PROJECT_DIR / "soca_api"
MAX_LINES = 520
# Pure parsers of a scheduler's or a script's language: long because the language is.
LONG_PARSERS = {"soca_api.pbs.script"}


def _modules() -> dict[str, object]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PROJECT_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """Modules of soca_api that `module` imports, at any level of its code. Importing a
    submodule (`from pkg import sub`) depends on `sub`, not on the package's own code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = [f"{base}.{alias.name}" for alias in node.names]
            names = subs if all(sub in MODULES for sub in subs) else [base, *subs]
        else:
            continue
        for name in names:
            if name.startswith("soca_api"):
                owner = _owner(name)
                if owner and owner != module:
                    targets.add(owner)
    return targets


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles() == []


def test_schedulers_know_nothing_of_services_http_or_web():
    for module, targets in GRAPH.items():
        if module.startswith("soca_api.schedulers"):
            above = sorted(t for t in targets if t.split(".")[1] in ("services", "api", "web", "cli"))
            assert above == [], f"{module} imports {above}"
            source = MODULES[module].read_text()
            assert not re.search(r"^\s*(from|import) (flask_restful|werkzeug)", source, re.M), module


def test_services_never_ask_which_scheduler_they_talk_to():
    offenders = []
    for module, path in MODULES.items():
        if module.startswith("soca_api.services"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "adapter.name" in line or re.search(r"\.name\s*[!=]=\s*[\"'](local|pbs|slurm)[\"']", line):
                    offenders.append(f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}")
    assert offenders == []


def test_modules_stay_small():
    long = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()
            if module not in LONG_PARSERS}
    assert {m: n for m, n in long.items() if n > MAX_LINES} == {}


def test_every_document_a_comment_cites_is_in_the_repository():
    cited = set()
    for folder in ("soca_api", "tests", "scripts", "bench"):
        for path in (PROJECT_DIR / folder).rglob("*.py"):
            cited |= set(re.findall(r"\bdocs/[\w./-]+\.md\b", path.read_text()))
        for path in (PROJECT_DIR / folder).rglob("*.sh"):
            cited |= set(re.findall(r"\bdocs/[\w./-]+\.md\b", path.read_text()))
    assert cited, "the scan finds the citations"
    assert sorted(doc for doc in cited if not (PROJECT_DIR / doc).is_file()) == []
