"""The layout holds: no import cycle among the project's modules, a report that loads no
Lightning, and models from the Python API without side effects in their forward."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("convnext_steps", "convnext_roadmap")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports, at any depth (late imports in functions count),
    leaving out `if TYPE_CHECKING:` blocks, which never run."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    hit = resolve(alias.name)
                    if hit:
                        found.add(hit)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    hit = resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else resolve(base)
                    if hit:
                        found.add(hit)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(me)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                strongconnect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_project_modules():
    graph = import_graph()
    assert len(graph) > 40 and "convnext_roadmap.study.plan" in graph["convnext_roadmap.study.execute"]
    assert cycles(graph) == []


def test_the_model_package_does_not_import_the_runner():
    graph = import_graph()
    for module, imported in graph.items():
        if module.startswith("convnext_steps"):
            assert not any(m.startswith("convnext_roadmap") for m in imported), module


@pytest.mark.slow
def test_the_report_loads_no_lightning(tmp_path):
    """Tables, figures and compare of a shipped study, in a fresh interpreter: no lightning
    module is imported."""
    code = f"""
import sys, shutil
from pathlib import Path
import convnext_roadmap.report as report
from convnext_roadmap.report.compare import compare_studies
out = Path({str(tmp_path)!r})
for name in ("cpu", "small_images"):
    shutil.copytree(Path({str(ROOT)!r}) / "results" / name, out / name,
                    ignore=shutil.ignore_patterns("logs"))
report.write_tables(out / "small_images")
report.draw_figures(out / "small_images", out / "plots")
compare_studies(["cpu", "small_images"], out, out / "plots")
print(sorted(m for m in sys.modules if "lightning" in m))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_flop_counter_on_a_fresh_machine_gives_table10_and_writes_nothing(tmp_path):
    """A user on a machine with no kernel-choice cache counts a model of the Python API with
    torch's FlopCounterMode (no helper of ours): Table 10's multiply-adds for all 16 steps, and
    no file is written."""
    code = """
import json, torch
from torch.utils.flop_counter import FlopCounterMode
from convnext_steps import build_model, list_steps
out = {}
for step in list_steps():
    model = build_model(step.slug)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    out[step.slug] = counter.get_total_flops() / 2e9
print(json.dumps(out))
"""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "CONVNEXT_ROADMAP_CACHE": str(home / "pointwise.json"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counted = json.loads(result.stdout.strip().splitlines()[-1])
    from convnext_steps import list_steps
    from convnext_steps.complexity import gmacs_at_224

    for step in list_steps():
        assert counted[step.slug] == gmacs_at_224(step), step.slug  # our convention, exactly
        # Table 10 to its rounding (ConvNeXt-T: 4.46 counted, 4.49 printed, docs/roadmap.md)
        assert abs(counted[step.slug] - step.paper_gmacs) <= (0.04 if step.slug == "convnext_t" else 0.02), step.slug
    assert list(home.rglob("*")) == [], "nothing written on a fresh machine"


def test_the_record_schema_is_documented_field_by_field():
    """docs/records.md's schema table names every written field of Record, and no other."""
    import re
    from dataclasses import fields

    from convnext_roadmap.store.record import _NOT_WRITTEN, Record

    text = (ROOT / "docs" / "records.md").read_text()
    table = text[text.index("## The record schema") : text.index("## Studies side by side")]
    documented = {name for cell in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`(\w+)`", cell)}
    written = {f.name for f in fields(Record)} - set(_NOT_WRITTEN)
    assert documented == written, (written - documented, documented - written)
