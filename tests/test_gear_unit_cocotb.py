"""The GEAR unit's cocotb bench (verif/gear_unit_tb.py) on the emitted Verilog, on
Verilator and Icarus: a smoke matrix of configurations with random and compressed tiles;
the MiniLM-shaped default unit also runs real all-MiniLM-L6-v2 K/V tiles (all 6 layers)
in the same build when the optional ``minilm`` extra is installed (a visible skip says
when it is not). The wide matrix runs behind ``-m wide``."""

import numpy as np
import pytest

from golden import gear, minilm
from hw.gear_unit import GearUnit
from spec.gear_unit import GearUnitConfig
from verif.gear_unit_tb import TILES_PARAM, load_tiles, save_tiles
from verif.runner import run_bench

from .conftest import require_simulator, sim_matrix

SIMS = ["verilator", "icarus"]
#: Odd lane count, shared scale/zero pairs, one slot (crowded rows take several beats),
#: narrow fields (saturation everywhere in the full-range tiles), unaligned products.
SMALL = GearUnitConfig(head_dim=6, group_size=3, rank=1, outlier_slots=1, frac_bits=4,
                       scale_width=10, zero_width=12, factor_width=5, factor_frac=1, out_width=6)
#: The MiniLM-shaped default: 32 lanes, rank 4, two outlier slots.
DEFAULT = GearUnitConfig()
SMOKE = [SMALL, DEFAULT]
WIDE = [GearUnitConfig(head_dim=8, rank=0, outlier_slots=0),
        GearUnitConfig(head_dim=8, rank=8, outlier_slots=8, max_bits=8, group_size=8),
        GearUnitConfig(head_dim=16, rank=2, outlier_slots=3, out_width=12, frac_bits=12,
                       zero_width=26, scale_width=20, factor_width=8, factor_frac=12),
        GearUnitConfig(head_dim=1, rank=1, outlier_slots=1)]
BENCH_TESTS = {"random_tiles_with_stalls", "compressed_tiles", "full_rate_cycles"}


def run(cfg, sim, root, **kwargs):
    require_simulator(sim)
    return run_bench(cfg, GearUnit(cfg), "gear_unit", "verif.gear_unit_tb", sim=sim,
                     build_root=root, quiet=True, **kwargs)


@pytest.fixture(scope="module")
def minilm_tiles(tmp_path_factory):
    """One K tile (4 bits) and one V tile (2 bits) from every MiniLM layer, GEAR with the
    issue's settings (K: group 64 along tokens, V: group 32 along channels; s = 2 %,
    r = 4), in the default unit's fixed-point formats; None without the minilm extra."""
    if minilm.available():
        return None
    k, v = minilm.kv_cache(128, 2)
    fmt = DEFAULT.fixed_format
    tiles = []
    for layer in range(k.shape[0]):
        head = (5 * layer) % k.shape[2]
        for name, x, bits, group, axis in (("K", k, 4, 64, "channel"), ("V", v, 2, 32, "token")):
            tile = np.array(x[layer, :1, head:head + 1])
            fixed = gear.to_fixed(gear.compress(tile, bits, group, 0.02, 4, axis=axis), fmt)
            tiles.append((f"MiniLM layer {layer} head {head} {name} {bits}-bit", bits, fixed))
    path = tmp_path_factory.mktemp("gear_tiles") / "minilm.npz"
    save_tiles(path, tiles)
    return path


# The default (32-lane) unit's Verilator build takes ~75 s: Icarus runs it (with the
# MiniLM tiles) in make test, Verilator under -m wide.
@pytest.mark.parametrize("cfg,sim", sim_matrix(SMOKE, SIMS, lambda c: "default" if c == DEFAULT else "small",
                                               wide=lambda c, s: c == DEFAULT and s == "verilator"))
def test_gear_unit_bench(cfg, sim, sim_root, minilm_tiles):
    with_tiles = cfg == DEFAULT and minilm_tiles is not None
    params = {TILES_PARAM: str(minilm_tiles)} if with_tiles else None
    result = run(cfg, sim, sim_root, params=params)
    want = BENCH_TESTS | ({"file_tiles"} if with_tiles else set())
    assert result.passed and {name for name, _ in result.cases} == want


@pytest.mark.wide
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg", WIDE, ids=lambda c: c.tag)
def test_gear_unit_bench_wide(cfg, sim, sim_root):
    result = run(cfg, sim, sim_root)
    assert result.passed and {name for name, _ in result.cases} == BENCH_TESTS


def test_minilm_tiles_for_the_rtl(minilm_tiles):
    """Skips visibly when the real-data tiles cannot be made (no minilm extra), in which
    case test_gear_unit_bench[default-*] runs without them. Otherwise checks the tiles it
    simulated: 6 layers x (K, V), and rows with more outliers than the default unit's
    two slots, so the multi-beat rows meet real data."""
    if minilm_tiles is None:
        pytest.skip(minilm.available())
    tiles = load_tiles(minilm_tiles, DEFAULT.fixed_format)
    assert len(tiles) == 12 and {bits for _, bits, _ in tiles} == {2, 4}
    crowded = max(int(fixed.outliers_per_row().max()) for _, _, fixed in tiles)
    assert crowded > DEFAULT.outlier_slots
