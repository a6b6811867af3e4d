"""The import graph of src/kefu goes one way: no cycles, and the layers import only downwards.

    cli, cli_*                          (glue: may import anything)
    flywheel                            logs -> data -> train -> eval -> versions: drives serve's store, data,
                                        train and eval through their run_* functions; nothing imports it
    serve | eval | chat | demo          faces: use kefu.answer, never each other; the demo, a guided run of the
                                        CLI's steps, scores with eval (eval never imports the demo)
    train                               uses kefu.answer for model loading; never serve or chat
    answer                              model loading, templates, engines, the answer pipeline
    guard | data | rag                  below the answer layer

Every import counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted((SRC / "kefu").rglob("*.py"))}
CLI = tuple(m for m in MODULES if m == "kefu.cli" or m.startswith("kefu.cli_"))  # the command line's modules
FACES = ("kefu.serve", "kefu.eval", "kefu.chat", "kefu.demo")
BELOW_ANSWER = ("kefu.guard", "kefu.data", "kefu.rag")
ABOVE_ANSWER = (*FACES, "kefu.train", *CLI)


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            pkg = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
            base = ".".join([*pkg, base] if base else pkg)
        # `from kefu.serve import audit` imports the module kefu.serve.audit
        yield from (f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)


def _resolve(name: str) -> str | None:
    """The kefu module an import name refers to (its longest known prefix), None for other packages."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found = {_resolve(n) for node in ast.walk(tree) for n in _imported(node, mod, path.name == "__init__.py")}
        graph[mod] = {m for m in found if m is not None and m != mod}
    return graph


GRAPH = _graph()


def _in(mod: str, layers: tuple[str, ...]) -> str | None:
    return next((layer for layer in layers if mod == layer or mod.startswith(layer + ".")), None)


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...], same_ok: bool = True) -> list[str]:
    bad = []
    for mod, deps in GRAPH.items():
        mine = _in(mod, importers)
        if mine is None:
            continue
        for dep in sorted(deps):
            theirs = _in(dep, forbidden)
            if theirs is not None and not (same_ok and theirs == mine):
                bad.append(f"{mod} imports {dep}")
    return bad


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_every_module_and_its_imports() -> None:
    assert len(MODULES) > 80 and "kefu.answer.pipeline" in MODULES
    assert {"kefu.answer.pipeline", "kefu.serve.audit"} <= GRAPH["kefu.serve.pipeline"]  # `from kefu.serve import`
    assert "kefu.eval.compare" in GRAPH["kefu.cli_gateway"]  # imports inside functions count
    assert {"kefu.cli", "kefu.cli_gateway", "kefu.cli_train"} <= set(CLI)


def test_no_import_cycles() -> None:
    assert _cycles() == []


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        (("kefu.serve", "kefu.eval", "kefu.chat"), FACES),  # serve, eval and chat do not import each other
        (("kefu.demo",), ("kefu.serve", "kefu.chat")),  # the demo runs eval, not the gateway or the chat
        (("kefu.answer",), ABOVE_ANSWER),
        (BELOW_ANSWER, ("kefu.answer", *ABOVE_ANSWER)),
        (("kefu.train",), ("kefu.serve", "kefu.chat")),
        ((*FACES, "kefu.train", "kefu.answer", *BELOW_ANSWER), ("kefu.flywheel",)),
    ],
    ids=["faces", "demo", "answer", "below-answer", "train", "flywheel"],
)
def test_layers_import_downwards(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    assert _violations(importers, forbidden) == []


def test_faces_answer_through_the_answer_layer() -> None:
    for face in ("kefu.serve.pipeline", "kefu.eval.generate", "kefu.chat"):
        assert "kefu.answer.pipeline" in GRAPH[face], face


def test_sft_and_the_fast_path_are_not_in_a_cycle() -> None:
    fast = {m for m in GRAPH if m.startswith("kefu.train.fast")}
    for comp in _cycles():
        assert not ("kefu.train.sft" in comp and fast & set(comp)), comp
