"""Shared fixtures: small generated funnels, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnelrec.datasets import SyntheticFunnel, generate_funnel
from funnelrec.sequences import Sequences, load_sequences


@pytest.fixture(scope="session")
def funnel() -> SyntheticFunnel:
    return generate_funnel(n_customers=400, n_items=200, seed=7)


@pytest.fixture(scope="session")
def funnel_csv(funnel: SyntheticFunnel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("funnel") / "events.csv"
    funnel.events.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def seqs(funnel_csv: Path) -> Sequences:
    return load_sequences(funnel_csv)[0]
