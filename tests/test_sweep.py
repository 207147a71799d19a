"""The settings sweep keeps one run per data set, setting and seed, and reports medians."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sweep = pytest.importorskip("benchmarks.sweep")


def _run(setting: str, seed: int, ndcg: float) -> dict:
    return {
        "dataset": "toys",
        "target": "any",
        "setting": setting,
        "kw": {},
        "seed": seed,
        "best_epoch": 3,
        "NDCG@10": ndcg,
        "HR@10": 2 * ndcg,
    }


def test_a_rerun_replaces_its_seed_and_medians_cover_every_seed(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    for seed, ndcg in ((0, 0.10), (1, 0.30), (2, 0.20), (1, 0.40)):  # seed 1 is re-run
        sweep._store(out, _run("a", seed, ndcg))
    sweep._store(out, _run("b", 0, 0.05))
    table = sweep.markdown(out)
    assert "#### toys (target any)" in table
    row_a = next(line for line in table.splitlines() if line.startswith("| a "))
    assert "| 3 | 0.2000 | 0.1000, 0.4000, 0.2000 |" in row_a
    assert any(line.startswith("| b ") and "| 1 | 0.0500 |" in line for line in table.splitlines())
