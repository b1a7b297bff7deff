"""spec/: the shared numeric rules, the range-checked packer and the configs."""

from decimal import Decimal, getcontext

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from hypothesis import given
from hypothesis import strategies as st

from compiler import CompileError
from compiler.nm_stream import lower_matmul
from spec import ConfigError, SpecError, numerics
from spec.gear_unit import GearUnitConfig
from spec.lp_pe import LPPEConfig
from spec.mac_pe import FP8PEConfig, Int8PEConfig
from spec.nm_core import NMCoreConfig, beat_layout
from spec.packing import check_array, leaves, pack
from spec.sgs_buffer import Op, SGSBufferConfig, request_layout
from spec.topn import TopNConfig

CONFIGS = [NMCoreConfig(), TopNConfig(), LPPEConfig(), Int8PEConfig(), FP8PEConfig(),
           GearUnitConfig(), SGSBufferConfig()]


@given(st.integers(-(1 << 70), 1 << 70), st.integers(1, 64))
def test_wrap_is_twos_complement_for_ints_and_arrays(x, bits):
    want = ((x + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
    assert numerics.wrap(x, bits) == want
    assert numerics.wrap(np.array([x % (1 << 64)], dtype=np.uint64), bits)[0] == want


@given(st.integers(-10**6, 10**6), st.integers(0, 12))
def test_shift_round_half_up_is_floor_of_x_over_2s_plus_half(x, s):
    want = int(np.floor(Decimal(x) / Decimal(2 ** s) + Decimal("0.5")))
    assert numerics.shift_round_half_up(x, s) == want
    assert numerics.shift_round_half_up(np.array([x]), s)[0] == want


def test_saturate_clips_to_the_signed_or_unsigned_range():
    assert numerics.saturate(np.array([-300, 5, 300]), 8).tolist() == [-128, 5, 127]
    assert numerics.saturate(300, 8, signed=False) == 255 and numerics.saturate(-1, 8, signed=False) == 0


@pytest.mark.parametrize("frac_bits, table_bits", [(0, 1), (1, 8), (3, 8), (4, 9), (5, 12), (6, 16)])
def test_lp_exp2_table_rounds_to_nearest_exactly(frac_bits, table_bits):
    """Every entry is round(2^(j/2^F) * 2^tb): within half an LSB of the 60-digit value."""
    getcontext().prec = 60
    table = numerics.lp_exp2_table(frac_bits, table_bits)
    assert len(table) == 1 << frac_bits
    for j, entry in enumerate(table):
        exact = (Decimal(2) ** (Decimal(j) / (1 << frac_bits))) * (1 << table_bits)
        assert abs(Decimal(entry) - exact) <= Decimal("0.5"), (j, entry, exact)
        assert 1 << table_bits <= entry <= 1 << (table_bits + 1)


def test_lp_exp2_table_rejects_out_of_range_arguments():
    with pytest.raises(SpecError, match="table_bits must be in 1..24, not table_bits=0"):
        numerics.lp_exp2_table(3, 0)
    with pytest.raises(SpecError, match="frac_bits must be in 0..14"):
        numerics.lp_exp2_table(15, 8)


def test_fp8_fields_give_the_e4m3_values():
    sign, mant, exp, nan = numerics.fp8_fields(np.array([0x38, 0xBC, 0x01, 0x7E, 0x7F]))
    value = np.where(sign == 1, -1, 1) * mant * 2.0 ** (exp - numerics.FP8_EXP_OFFSET)
    assert value[:4].tolist() == [1.0, -1.5, 2.0 ** -9, numerics.FP8_MAX] and nan.tolist() == [0, 0, 0, 0, 1]


@pytest.mark.parametrize("text, canonical", [(" 2 : 4 ", "2:4"), ("2:4 + 1:4", "2:4+1:4"),
                                             ([(2, 8), (2, 8)], "2:8+2:8")])
def test_series_grammar_canonical_form(text, canonical):
    assert numerics.format_series(text) == canonical


def test_topn_config_stores_the_canonical_series():
    assert TopNConfig(series=" 2 : 4 + 1:4").series == "2:4+1:4"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.block)
def test_every_config_round_trips_through_json(config):
    assert type(config).from_json(config.to_json()) == config


def test_configs_take_numpy_integers_as_the_golden_models_do():
    cfg = NMCoreConfig(n=np.int64(2), m=np.int32(4), rows=np.uint8(3))
    assert cfg == NMCoreConfig(n=2, m=4, rows=3) and type(cfg.n) is int
    with pytest.raises(ConfigError, match="n must be an integer, not True"):
        NMCoreConfig(n=True)
    with pytest.raises(ConfigError, match="must be an integer, not 2.0"):
        NMCoreConfig(n=2.0)


def test_pack_checks_every_field_against_its_layout():
    cfg = NMCoreConfig(n=2, m=4, rows=1)
    layout = beat_layout(cfg)
    good = {"act": [1, -2, 3, 127], "weights": [{"values": [-128, 5], "indices": [0, 3]}], "last": 1}
    assert pack(layout, good) == layout.const(good).as_bits()
    cases = [
        ({**good, "act": [300, 0, 0, 0]}, r"act\[0\] = 300 does not fit signed\(8\) \[-128, 127\]"),
        ({**good, "act": [1.5, 0, 0, 0]}, r"act\[0\] = 1.5 is not an integer"),
        ({**good, "weights": [{"values": [1, 2], "indices": [0, 4]}]},
         r"weights\[0\].indices\[1\] = 4 does not fit unsigned\(2\)"),
        ({**good, "act": [0, 0, 0]}, r"act has 3 element\(s\), the layout 4"),
        ({k: v for k, v in good.items() if k != "last"}, "lacks field"),
        ({**good, "bogus": 1}, "unknown field"),
    ]
    for value, message in cases:
        with pytest.raises(SpecError, match=message):
            pack(layout, value, "beat")


def test_pack_checks_enum_fields():
    layout = request_layout(SGSBufferConfig())
    assert pack(layout, {"op": Op.PIN, "block": 37, "slot": 4}) == 0x10095
    with pytest.raises(SpecError, match="op = 7 is not one of Op.s values"):
        pack(layout, {"op": 7, "block": 0, "slot": 0})


def test_check_array_refuses_floats_and_out_of_range_values():
    assert check_array("x", np.array([1, -128]), signed(8)).dtype == np.int64
    with pytest.raises(SpecError, match="x must be integers, not float64"):
        check_array("x", np.array([1.0]), signed(8))
    with pytest.raises(SpecError, match=r"x value 4 at \(1,\) does not fit unsigned\(2\)"):
        check_array("x", np.array([0, 4]), unsigned(2))


@pytest.mark.parametrize("acts, message", [
    (np.full((4, 1), 300), "activation value 300"),
    (np.full((4, 1), 2.7), "activation must be integers, not float64"),
])
def test_the_core_lowering_refuses_what_would_pack_truncated(acts, message):
    """Activations of 300 used to pack identical to 44 and floats were floored."""
    cfg = NMCoreConfig(n=2, m=4)
    values, indices = np.zeros((1, 1, 2), int), np.array([[[0, 1]]])
    with pytest.raises(CompileError, match=message):
        lower_matmul(cfg, values, indices, acts)
    with pytest.raises(CompileError, match="index value 4"):
        lower_matmul(cfg, values, np.array([[[0, 4]]]), np.ones((4, 1), int))


def test_leaves_list_fields_lsb_first_with_offsets():
    names = [(leaf.path, leaf.offset, leaf.width, leaf.signed) for leaf in leaves(beat_layout(NMCoreConfig()))]
    assert names == [("act[0]", 0, 8, True), ("act[1]", 8, 8, True), ("act[2]", 16, 8, True),
                     ("act[3]", 24, 8, True), ("weights[0].values[0]", 32, 8, True),
                     ("weights[0].values[1]", 40, 8, True), ("weights[0].indices[0]", 48, 2, False),
                     ("weights[0].indices[1]", 50, 2, False), ("last", 52, 1, False)]
