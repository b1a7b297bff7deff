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


def sim_matrix(configs, sims, ids, wide=lambda cfg, sim: False):
    """``(cfg, sim)`` parameters of a cocotb smoke matrix. Pairs for which ``wide(cfg, sim)``
    holds run only under ``-m wide`` (keep make test inside its time budget); each such
    config still runs in make test on the other simulator."""
    return [pytest.param(c, s, id=f"{ids(c)}-{s}", marks=[pytest.mark.wide] if wide(c, s) else [])
            for c in configs for s in sims]
