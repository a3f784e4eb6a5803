"""The package's shape: no private name used across modules, no import cycle among qlearn modules
(function-level imports included), and the package data that the library reads is in the package."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "qlearn"
# code outside the package that must use the public API too (tests may poke private helpers)
CALLERS = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "notebooks" / "src").glob("*.py")])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> str:
    """The absolute module of a ``from X import ...``."""
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_pkg else here.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path):
    """``(target module, imported name or None, line)`` for every import in ``path``, at any depth,
    plus ``bound``: local names bound to a qlearn module."""
    here = _module_name(path) if path.is_relative_to(PKG) else "__main__"
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "qlearn":
                    out.append((a.name, None, node.lineno))
                    if a.asname:
                        bound[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node, here, is_pkg)
            if mod.split(".")[0] != "qlearn":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in MODULES:  # `from . import readers`: the submodule itself
                    out.append((sub, None, node.lineno))
                    bound[a.asname or a.name] = sub
                else:
                    out.append((mod, a.name, node.lineno))
    return tree, out, bound


def test_no_private_name_is_used_across_modules():
    bad = []
    for path in [*MODULES.values(), *CALLERS]:
        here = _module_name(path) if path.is_relative_to(PKG) else None
        tree, imports, bound = _imports(path)
        rel = path.relative_to(ROOT)
        for mod, name, line in imports:
            if name and _private(name) and mod != here:
                bad.append(f"{rel}:{line}: from {mod} import {name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and _private(node.attr)
                    and bound[node.value.id] != here):
                bad.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr} "
                           f"({bound[node.value.id]})")
    assert not bad, "private names used across modules (make them public):\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for target, _, _ in _imports(path)[1]:
            if target in MODULES and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_qlearn_modules():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (function-level imports count):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The two detectors on made-up input: a private import, a private attribute, a cycle."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    src = tmp_path / "caller.py"
    src.write_text("from qlearn.train import _secret\nfrom qlearn.data import readers\n"
                   "def f():\n    return readers._hidden\n", encoding="utf-8")
    tree, imports, bound = _imports(src)
    assert ("qlearn.train", "_secret", 1) in imports and bound["readers"] == "qlearn.data.readers"
    assert any(isinstance(n, ast.Attribute) and n.attr == "_hidden" for n in ast.walk(tree))


def test_package_data_is_inside_the_package():
    """What the library reads at run time ships in the wheel (pyproject's package-data)."""
    from qlearn.data.download import load_manifest
    from qlearn.data.sources import downloadable
    from qlearn.evaluate.baselines import load_profile
    from qlearn.resources import resource

    assert resource("demo.yaml").is_file()
    for source in downloadable():
        assert load_manifest(source)["source"] == source
    assert "Ross" in load_profile("Ross")
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def _readme_tree() -> set[str]:
    """The files named in the README's "How the code is organised" tree, as paths."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## How the code is organised", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    names, stack = set(), []
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        entry = line.split()[0]
        stack = stack[:depth]
        if entry.endswith("/"):
            stack.append(entry.rstrip("/"))
        else:
            names.add("/".join([*stack, entry]))
    return names


def test_the_readme_tree_matches_the_package():
    tree = _readme_tree()
    modules = {str(p.relative_to(ROOT)) for p in MODULES.values()}
    assert tree == modules, (f"README's 'How the code is organised' lacks {sorted(modules - tree)} "
                             f"and names missing {sorted(tree - modules)}")
