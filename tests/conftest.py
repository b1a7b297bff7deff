"""Shared pytest fixtures: a per-session build root for simulator runs."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sim_root() -> Path:
    """Build directories for cocotb runs (one sub-folder per block, parameters, simulator)."""
    return ROOT / "sim_build"


def require_simulator(sim: str) -> None:
    """Skip (visibly, with the reason) when ``sim`` cannot run on this machine."""
    from verif.runner import simulator_missing

    missing = simulator_missing(sim)
    if missing:
        pytest.skip(missing)
