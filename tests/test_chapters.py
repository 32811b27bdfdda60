"""Every chapter runs top to bottom with the worked solutions filled in, and every checker in it
prints PASS. (That each checker *fails* on a planted wrong answer is tested in
tests/test_exercises.py.)

Exercise cells carry the tag ``exercise`` and define one function; the test replaces such a
cell's source with the function of the same name from ``chapters/solutions/<notebook>.py``.
"""

import ast
import json
import os
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
#: A guard against a cell that hangs, not a speed test: the slowest chapter takes 40-80 s in all,
#: but once (2026-12-02) a stall of this shared VM held a 5 s cell past the old 120 s.
CELL_TIMEOUT_S = 300


def solution_sources(notebook: Path) -> dict[str, str]:
    """The worked solutions a notebook's exercise cells take: its own file's functions, and for
    an exercise that pastes an earlier chapter's function (chapter 12), that chapter's."""
    sources = {}
    for earlier in NOTEBOOKS[: NOTEBOOKS.index(notebook) + 1]:
        path = CHAPTERS / "solutions" / (earlier.stem + ".py")
        if path.exists():
            text = path.read_text()
            sources.update({node.name: ast.get_source_segment(text, node)
                            for node in ast.parse(text).body
                            if isinstance(node, ast.FunctionDef)})
    return sources


def exercise_name(source: str) -> str:
    defs = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    assert len(defs) == 1, f"an exercise cell must define exactly one function, got {defs}"
    return defs[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(notebook):
    nb = json.loads(notebook.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{notebook.name}: cells {dirty} carry outputs; strip them"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_solutions_and_every_checker_passes(notebook, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat (with nbclient) runs notebooks")
    nbclient = pytest.importorskip("nbclient", reason="nbclient runs the notebooks")
    nb = nbformat.read(notebook, as_version=4)
    solutions = solution_sources(notebook)
    exercises = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "exercise" in cell.metadata.get("tags", []):
            name = exercise_name(cell.source)
            assert name in solutions, f"no solution for {name} in chapters/solutions/"
            cell.source = solutions[name]
            exercises += 1
    assert exercises >= 1, f"{notebook.name} has no exercise cell"
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The chapters' work folders (tempfile.mkdtemp) go under pytest's tmp_path, not /tmp: a
    # learner keeps theirs to look at, a test run leaves nothing behind.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "\n".join(out.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for out in c.get("outputs", []) if out.get("output_type") == "stream")
    assert "NOT YET" not in text, f"{notebook.name}: a checker failed on the solution:\n{text}"
    assert text.count("PASS") >= exercises, f"{notebook.name}: expected a PASS per exercise"
