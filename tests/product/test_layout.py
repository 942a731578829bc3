"""The product and the evaluator apart: no import cycle, and protecting a photo loads no evaluator module
and none of the heavy packages training and evaluation need."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("t2ue", "t2ue_eval")
HEAVY = ("open_clip", "transformers", "torchvision", "accelerate", "diffusers", "gradio", "sklearn", "kornia",
         "matplotlib", "skimage", "t2ue_eval")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every import between our modules, at module level or inside functions."""
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle_and_the_product_never_names_the_evaluator():
    graph = _edges(_modules())
    assert len(graph) > 30 and graph["t2ue_eval.runner"]  # the walk found the modules and their imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    product_to_eval = {(a, b) for a, targets in graph.items() for b in targets
                       if a.startswith("t2ue.") or a == "t2ue" if b.startswith("t2ue_eval")}
    assert not product_to_eval


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_protecting_a_photo_loads_nothing_heavy(tmp_path):
    code = ("import sys; from t2ue.cli import app; "
            f"app(['protect', {str(ROOT / 'demos' / 'samples' / 'astronaut.png')!r}, '--text', 'an astronaut', "
            f"'-o', {str(tmp_path)!r}], standalone_mode=False); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (tmp_path / "astronaut.png").is_file()
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
