"""Every command of the README's "Command line" table runs, at small sizes on the world model,
each step reading the previous one's output (sample -> prune --calib, generate -> filter ->
similarity, prune -> evaluate, run -> results). The table's rows are read from README.md, so a
command added there without a run here fails."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from calib.cli import main

ROOT = Path(__file__).resolve().parent.parent
# run elsewhere, with the reason
SKIPPED = {
    "python -m calib.book": "builds the book: the smoke book in CI runs it (its --plan is run here)",
    "papermill": "executes a chapter notebook: the smoke book in CI runs every notebook",
}


def table_commands() -> list[str]:
    """The first cell of each row of README.md's "Command line" table, without its backticks."""
    text = (ROOT / "README.md").read_text()
    part = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)`", part, re.M)]


def _head(cmd: str) -> str:
    words = cmd.split()
    if words[0] == "calib":
        return " ".join(words[:3] if words[1] == "world" else words[:2])
    return "python -m calib.book" if words[:3] == ["python", "-m", "calib.book"] else words[0]


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    t = tmp_path
    grid = t / "grid.yaml"
    grid.write_text("model: world\nmethod: magnitude\nsparsity: 0.5\n"
                    "calibration: {nsamples: 2, seqlen: 32}\nsuite: {name: world, limit: 2, n_alpaca: 2, n_heldout: 2}\n")
    runs = {
        "calib world build": [["world", "build", "--no-report"]],
        "calib world sources": [["world", "sources"], ["world", "show", "world/pretrain", "-n", "1"],
                                ["world", "tasks", "--out", str(t / "tasks")]],
        "calib sample": [["sample", "world/pretrain", "--model", "world", "--nsamples", "4", "--seqlen", "32",
                          "--seed", "0", "--out", str(t / "set.pt")]],
        "calib generate": [["generate", "world/web", "--model", "world", "--out", str(t / "gen.jsonl"), "--ndocs", "5",
                            "--max-new-tokens", "24", "--no-progress"]],
        "calib filter": [["filter", str(t / "gen.jsonl"), "--model", "world", "--k", "20", "--out",
                          str(t / "kept.jsonl"), "--no-progress"]],
        "calib similarity": [["similarity", "world/web", str(t / "kept.jsonl"), "--ndocs", "20"]],
        "calib prune": [["prune", "--model", "world", "--method", "wanda", "--pattern", "2:4", "--calib",
                         str(t / "set.pt"), "--out", str(t / "pruned"), "--no-progress"]],
        "calib evaluate": [["evaluate", "--model", str(t / "pruned"), "--tasks", "world_boolq", "--limit", "2",
                            "--ppl", "2", "--heldout", "2", "--json", str(t / "eval.json")]],
        "calib run": [["run", str(grid), "--store", str(t / "x.db"), "--no-progress"],
                      ["run", str(grid), "--store", str(t / "x.db"), "--plan"]],
        "calib results": [["results", "--store", str(t / "x.db"), "--csv", str(t / "out.csv")]],
    }
    heads = [_head(c) for c in table_commands()]
    assert heads, "README.md has no Command line table"
    missing = sorted(set(heads) - set(runs) - set(SKIPPED))
    assert not missing, f"README commands without a run here: {missing}"
    for head in dict.fromkeys(heads):
        for argv in runs.get(head, []):
            assert main(argv) == 0, (argv, capsys.readouterr().err[-2000:])
    rep = json.loads((t / "pruned" / "prune_report.json").read_text())
    assert rep["sparsity"] == 0.5 and rep["calibration"]["source"] == str(t / "set.pt")
    assert json.loads((t / "eval.json").read_text())["suite"] == "world"  # the pruned world model's own suite
    assert (t / "out.csv").read_text().count("\n") == 2
    plan = subprocess.run([sys.executable, "-m", "calib.book", "--profile", "smoke", "--plan"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-2000:]
