"""The library's shape: imports go one way (variables -> collections -> gradients -> nn/train), no cycle,
every module declares its public surface (__all__), and no private name crosses a module boundary."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "jaxgraph"
MODULES = {
    ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(ROOT.rglob("*.py"))
}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _imports(name: str) -> list[tuple[str, list[str]]]:
    """``[(imported module, [names imported from it])]`` for every jaxgraph import in module ``name``."""
    out = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names if alias.name.startswith("jaxgraph")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxgraph"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.append((sub, []) if sub in MODULES else (node.module, [alias.name]))
    return out


def _edges() -> dict[str, set[str]]:
    return {name: {target for target, _ in _imports(name) if target not in PACKAGES}
            for name in MODULES if name not in PACKAGES}


def test_no_import_cycle():
    edges = _edges()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            visit(target, path + [node])
        state[node] = 2

    for module in sorted(edges):
        visit(module, [])


@pytest.mark.parametrize("lower, higher", [
    ("jaxgraph.variables", "jaxgraph.variable_collections"),
    ("jaxgraph.variables", "jaxgraph.gradients"),
    ("jaxgraph.variable_collections", "jaxgraph.gradients"),
    ("jaxgraph.variable_index", "jaxgraph.gradients"),
    ("jaxgraph.gradients", "jaxgraph.nn"),
    ("jaxgraph.gradients", "jaxgraph.train"),
    ("jaxgraph.capture", "jaxgraph.gradients"),
])
def test_dependencies_point_one_way(lower, higher):
    edges = _edges()
    reachable, todo = set(), [lower]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in reachable:
                reachable.add(target)
                todo.append(target)
    assert not {m for m in reachable if m == higher or m.startswith(higher + ".")}, (lower, higher)


HIGHER = ("jaxgraph.nn", "jaxgraph.train", "jaxgraph.losses")


def test_core_modules_import_neither_nn_nor_train():
    # The core (variables, gradients, sparse values, sharding, summaries) is what nn and train build on.
    upward = {name: sorted(t for t in targets if t.startswith(HIGHER))
              for name, targets in _edges().items() if not name.startswith(HIGHER)}
    assert not {name: t for name, t in upward.items() if t}, "core modules import nn/train/losses"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_declares_all_and_imports_no_private_name(name):
    tree = ast.parse(MODULES[name].read_text())
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)}
    assert "__all__" in assigned, f"{name} has no __all__"
    private = [n for _, names in _imports(name) for n in names if n.startswith("_")]
    assert not private, f"{name} imports private names {private}"
    attribute_uses = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and isinstance(node.value, ast.Name) and node.value.id in {"gradients", "summary", "Variable",
                                                                                  "variable_collections"}
                      and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert not attribute_uses, f"{name} uses private attributes {attribute_uses} of another module"
