"""spec.packing.pack's compiled packers give exactly Amaranth's ``layout.const(v).as_bits()``
for every layout in spec/, and refuse exactly what spec.packing.check refuses (with its
message), so the fast path changes speed only."""

import copy
import re

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from spec import SpecError
from spec.gear_unit import GearUnitConfig, factor_layout, out_layout as gear_out, row_layout
from spec.lp_pe import LPPEConfig, beat_layout as lp_beat
from spec.nm_core import NMCoreConfig, beat_layout, out_layout
from spec.packing import _packer, check, leaves, pack
from spec.pe import pe_out_layout
from spec.sgs_buffer import Op, SGSBufferConfig, fetch_layout, read_layout, request_layout
from spec.topn import TopNConfig, topn_in_layout, topn_out_layout

LAYOUTS = {
    "nm beat 2:4x3": beat_layout(NMCoreConfig(n=2, m=4, rows=3)),
    "nm beat 4:4 dense": beat_layout(NMCoreConfig(n=4, m=4, rows=2)),
    "nm out acc16": out_layout(NMCoreConfig(rows=3, acc_width=16)),
    "topn in": topn_in_layout(TopNConfig(series="2:8")),
    "topn out 2:4+1:4": topn_out_layout(TopNConfig(series="2:4+1:4")),
    "topn out 4:4": topn_out_layout(TopNConfig(series="4:4")),
    "lp beat": lp_beat(LPPEConfig(n=6, es=1, rs=3)),
    "pe out": pe_out_layout(40),
    "gear row": row_layout(GearUnitConfig()),
    "gear factors": factor_layout(GearUnitConfig()),
    "gear out": gear_out(GearUnitConfig(head_dim=6, group_size=3, rank=1, outlier_slots=1, out_width=6)),
    "sgs request": request_layout(SGSBufferConfig()),
    "sgs fetch": fetch_layout(SGSBufferConfig()),
    "sgs read": read_layout(SGSBufferConfig(word_width=16)),
}


def random_value(layout, rng):
    """A random value of ``layout`` in the nested dict/list form (numpy ints included)."""
    if isinstance(layout, data.StructLayout):
        return {name: random_value(field.shape, rng) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        return [random_value(layout.elem_shape, rng) for _ in range(layout.length)]
    if layout is Op:
        return Op(int(rng.integers(0, 4))) if rng.random() < 0.5 else int(rng.integers(0, 4))
    shape = Shape.cast(layout)
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    v = int(rng.choice([lo, hi, 0, int(rng.integers(lo, hi + 1))]))
    return np.int64(v) if rng.random() < 0.3 else v


@pytest.mark.parametrize("name", LAYOUTS)
def test_pack_equals_amaranth_const(name):
    layout, rng = LAYOUTS[name], np.random.default_rng(len(name))
    for _ in range(40):
        value = random_value(layout, rng)
        want = _const_bits(layout, value)
        assert pack(layout, value) == want
        assert _packer(layout)(value) == want       # the compiled path took it, no fallback


def _const_bits(layout, value):
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v if isinstance(v, Op) else int(v)
    return layout.const(plain(value)).as_bits()


@pytest.mark.parametrize("name", LAYOUTS)
def test_pack_refuses_what_check_refuses(name):
    """Each leaf one past its range, a missing field, an extra field, a float: pack raises
    check's SpecError, naming the field."""
    layout, rng = LAYOUTS[name], np.random.default_rng(7)
    base = random_value(layout, rng)
    for leaf in leaves(layout)[:12]:
        if leaf.enum is not None:
            continue
        for bad in (leaf.range[1] + 1, leaf.range[0] - 1, 1.0):
            value = _set(base, leaf.path, bad)
            with pytest.raises(SpecError) as err:
                check(layout, value, "v")
            with pytest.raises(SpecError, match=_escape(str(err.value))):
                pack(layout, value, "v")
    if isinstance(layout, data.StructLayout):
        first = next(iter(base))
        with pytest.raises(SpecError, match="lacks field"):
            pack(layout, {k: v for k, v in base.items() if k != first})
        with pytest.raises(SpecError, match="unknown field"):
            pack(layout, {**base, "bogus": 0})


def _escape(text):
    return re.escape(text)


def _set(value, path, new):
    """A copy of ``value`` with the leaf at ``path`` (``a.b[2].c``) replaced."""
    out = copy.deepcopy(value)
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    if not parts:
        return new
    node = out
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = new
    else:
        node[last] = new
    return out
