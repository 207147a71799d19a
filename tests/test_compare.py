"""Peers' scores come back as files and are judged by the same code as funnelrec's models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funnelrec.config import SplitConfig
from funnelrec.evaluate import evaluate, evaluate_scores, make_split
from funnelrec.models import Markov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
compare = pytest.importorskip("benchmarks.compare")


@pytest.fixture(scope="module")
def split(seqs):
    return make_split(seqs, SplitConfig(protocol="loo", target="any"))


@pytest.mark.parametrize("mask", [False, True])
def test_score_file_gives_the_harness_figures(split, tmp_path, mask) -> None:
    model = Markov().fit(split.train)
    path = tmp_path / "scores.npy"
    np.save(path, model.score(split.test.contexts(split.full)))
    scores = np.load(path, mmap_mode="r")
    from_file = evaluate_scores(lambda _, sl: scores[sl], split, mask_history=mask)
    direct = evaluate(model, split, mask_history=mask)
    assert from_file["metrics"] == direct["metrics"]
    assert from_file["by_history_length"] == direct["by_history_length"]


def test_implicit_peer_round_trip(split, tmp_path) -> None:
    """Hand-off written, ALS trained in its own process, scores ranked here."""
    hand = tmp_path / "handoff"
    fp = compare.write_handoff(split, "fixture", hand)
    assert compare.write_handoff(split, "fixture", hand) == fp  # reused, not rewritten
    out = tmp_path / "als"
    c = compare.CONTENDERS["implicit_als"]
    r = compare.run_one(c, "fixture", hand, out, ["--seed", "0"], timeout=300)
    assert r["peak_rss_mb"] > 10 and r["fit_seconds"] > 0
    m = compare.score_file(split, False, out / "scores.npy")
    # Well above chance (10 / n_items) on data with strong item-to-item structure.
    assert m["HR@10"] > 5 * 10 / split.full.n_items
    with pytest.raises(ValueError, match="shape"):
        np.save(tmp_path / "bad.npy", np.zeros((3, 4), dtype=np.float32))
        compare.score_file(split, False, tmp_path / "bad.npy")


def test_handoff_keeps_test_targets_back(split, tmp_path) -> None:
    compare.write_handoff(split, "fixture", tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "test_targets.npy" not in names
    from benchmarks.peers import handoff

    h = handoff.load(tmp_path)
    # Each test context is the full prefix the harness shows a model, nothing more.
    ctx = split.test.contexts(split.full)
    assert np.array_equal(h.test.items, ctx.items)
    assert np.array_equal(h.test.offsets, ctx.offsets)
    assert len(h.test) == len(split.test)


def test_contender_commands_point_at_existing_runners() -> None:
    for c in compare.CONTENDERS.values():
        cmd = c.command("python", Path("h"), Path("o"), "d", [])
        script = next((a for a in cmd if a.endswith(".py")), None)
        if script:
            assert Path(script).exists(), script
        else:
            assert (
                subprocess.run(
                    [sys.executable, "-c", f"import {cmd[2]}"], cwd=ROOT, capture_output=True
                ).returncode
                == 0
            )


def test_summary_reports_the_interval_of_the_median_run() -> None:
    """Three runs: the NDCG@10 is their median and the interval is that run's, not run 0's."""
    from benchmarks.compare import summarise

    def run(ndcg: float, seconds: float) -> dict:
        m = {"HR@10": ndcg, "NDCG@10": ndcg, "MRR": ndcg, "NDCG@10_ci95": [ndcg - 0.01, ndcg]}
        return {
            "metrics": m,
            "library": "funnelrec",
            "fit_seconds": seconds,
            "seconds_to_best_epoch": seconds,
            "score_seconds": 1.0,
        }

    runs = {"funnel": [run(0.10, 4.0), run(0.30, 2.0), run(0.20, 3.0)]}
    s = summarise(runs, n_test=100)["funnel"]
    assert s["NDCG@10"] == pytest.approx(0.20)
    assert s["NDCG@10_ci95"] == pytest.approx([0.19, 0.20])
    assert s["seconds_to_best_epoch"] == pytest.approx(3.0)


def test_added_seeds_join_the_stored_runs(split, tmp_path, monkeypatch) -> None:
    """`--first-seed 1 --runs 2` after one stored run: three runs summarised, none twice."""
    import argparse

    monkeypatch.setattr(compare, "RESULTS", tmp_path)
    monkeypatch.setattr(compare, "plot", lambda *a, **k: None)

    def run(seed: int, ndcg: float) -> dict:
        m = {"HR@10": ndcg, "NDCG@10": ndcg, "MRR": ndcg, "NDCG@10_ci95": [ndcg - 0.01, ndcg]}
        return {
            "metrics": m,
            "library": "funnelrec",
            "fit_seconds": 1.0,
            "seed": seed,
            "seconds_to_best_epoch": 1.0,
            "score_seconds": 1.0,
            "epochs": [seed],
        }

    def save(first: int, runs: list[dict]) -> dict:
        args = argparse.Namespace(dataset="toy", first_seed=first, threads=1)
        monkeypatch.setattr(sys, "argv", ["compare", "--first-seed", str(first)])
        path = compare.save(args, split, False, {"funnel": runs})
        return compare.json.loads(path.read_text())["contenders"]["funnel"]

    save(0, [run(0, 0.10)])
    save(1, [run(1, 0.30)])  # saved after each run of an invocation...
    c = save(1, [run(1, 0.30), run(2, 0.20)])  # ...and again with both
    assert [r["seed"] for r in c["per_run"]] == [0, 1, 2]
    assert c["epochs"] == [[0], [1], [2]]
    assert c["runs"] == 3 and c["NDCG@10"] == pytest.approx(0.20)
    assert len(c["commands"]) == 2
    c = save(0, [run(0, 0.40)])  # a fresh invocation from seed 0 replaces the entry
    assert c["runs"] == 1 and len(c["commands"]) == 1
