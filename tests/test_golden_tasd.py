"""Properties of TASD (golden/tasd.py), its cost model, and TASDER (golden/tasder.py)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from golden import GoldenError, nm, tasd, tasder, tasder_search
from golden.lowering import (
    input_matrix,
    matmul_layers,
    output_from_matrix,
    weight_matrix,
)
from spec import SpecError
from spec.nm_core import NMCoreConfig

SERIES = st.sampled_from(["2:4", "1:4", "2:4+1:4", "2:4+2:4", "1:8+2:8", "2:8", "4:8+2:8",
                          "1:2+1:2", "2:4+2:8"])


def matrices(k_multiple=8):
    shape = st.tuples(st.integers(1, 4), st.integers(1, 4).map(lambda g: g * k_multiple))
    elements = st.integers(-128, 127) | st.integers(-2, 2)
    return shape.flatmap(lambda s: arrays(np.int64, s, elements=elements))


@settings(max_examples=150, deadline=None)
@given(matrices())
def test_two_terms_of_2_4_reproduce_any_tensor(a):
    assert np.array_equal(tasd.reconstruct(tasd.decompose(a, "2:4+2:4")), a)


@settings(max_examples=150, deadline=None)
@given(matrices(), st.data())
def test_exact_when_every_group_fits_the_series(a, data):
    # Make a 50%-unstructured tensor whose 4-groups hold <= 2 non-zeros: 2:4 is exact.
    sparse = nm.prune(a, 2, 4)
    assert tasd.relative_error(sparse, tasd.decompose(sparse, "2:4")) == 0.0
    # And any tensor whose 8-groups hold <= 3 non-zeros under 1:8+2:8.
    sparse8 = nm.prune(a, 3, 8)
    assert np.array_equal(tasd.reconstruct(tasd.decompose(sparse8, "1:8+2:8")), sparse8)


@settings(max_examples=150, deadline=None)
@given(matrices(), SERIES, SERIES)
def test_error_never_grows_when_a_term_is_appended(a, first, extra):
    series = f"{first}+{extra}"
    shorter = tasd.relative_error(a, tasd.decompose(a, first))
    longer = tasd.relative_error(a, tasd.decompose(a, series))
    assert longer <= shorter + 1e-12


@settings(max_examples=150, deadline=None)
@given(matrices(), SERIES)
def test_terms_never_overlap_and_are_n_m(a, series):
    terms = tasd.decompose(a, series)
    support = np.zeros(a.shape, dtype=int)
    for term in terms:
        dense = term.dense()
        assert nm.is_nm(dense, term.n, term.m)
        support += dense != 0
    assert support.max(initial=0) <= 1
    # Every kept value is the original value at its position.
    total = tasd.reconstruct(terms)
    assert np.all((total == 0) | (total == a))


def test_float_and_torch_inputs():
    a = torch.tensor([[0.5, -2.0, 1.0, 3.0, 0.25, 0.0, -1.0, 4.0]])
    terms = tasd.decompose(a, "1:4+1:4")
    # Group 1 keeps 3.0 then -2.0; group 2 keeps 4.0 then -1.0 (0.25 is dropped).
    assert tasd.reconstruct(terms).tolist() == [[0.0, -2.0, 0.0, 3.0, 0.0, 0.0, -1.0, 4.0]]
    assert 0 < tasd.relative_error(a, terms) < 1


@pytest.mark.parametrize("series, message", [
    ("", "empty series"), ([], "empty series"), ("2:4+", "is not of the form n:m"),
    ("5:4", "5:4 is invalid"), ("0:4", "0:4 is invalid"), ("2-4", "is not of the form n:m"),
])
def test_bad_series(series, message):
    """The series grammar is spec's (golden.tasd re-exports it): SpecError names the term."""
    with pytest.raises(SpecError, match=message):
        tasd.parse_series(series)


def test_reduction_axis_must_fit_every_m():
    with pytest.raises(GoldenError, match="12 elements, not a multiple of 8 .*2:4\\+2:8.*pad it with zeros to 16"):
        tasd.decompose(np.ones((2, 12)), "2:4+2:8")


def test_cost_model_on_the_core():
    core = NMCoreConfig(n=2, m=4, rows=8)
    assert tasd.term_fits_core(1, 4, core) and tasd.term_fits_core(1, 2, core)
    assert not tasd.term_fits_core(2, 8, core) and not tasd.term_fits_core(3, 4, core)
    assert tasd.dense_passes(core) == 2 and tasd.series_passes("2:4+1:4", core) == 2
    # 64 x 256 @ 256 x 64: one pass is 8 row blocks x 64 columns x 64 groups.
    one = 8 * 64 * 64
    assert tasd.series_cycles("2:4", core, 64, 256, 64) == one + core.latency
    assert tasd.series_cycles("dense", core, 64, 256, 64) == 2 * one + core.latency
    big = NMCoreConfig(n=4, m=8, rows=8)
    # Terms share a pass when their slots fit the core: 2:8+2:8 is one 4:8 pass,
    # 2:4 (four slots of 8) + 2:8 is two; on the 2:4 core 1:4+1:4 is one pass.
    assert tasd.series_passes("2:8+2:8", big) == 1
    assert tasd.series_passes("2:4+2:8", big) == 2
    assert tasd.pack_terms("2:8+2:4+1:8", big) == [[1], [0, 2]]
    assert tasd.series_passes("1:4+1:4", core) == 1 and tasd.series_passes("2:8+2:8", NMCoreConfig(n=2, m=8)) == 2
    with pytest.raises(GoldenError, match="term 2:8 cannot run on a 2:4 core"):
        tasd.series_passes("2:8", core)


def test_cost_model_prices_packed_passes():
    """On a packing core a pass of u slots, u dividing n, costs u/n of a full pass."""
    core = NMCoreConfig(n=2, m=4, rows=8, packing=True)
    plain = NMCoreConfig(n=2, m=4, rows=8)
    one = 8 * 64 * 64                                # one full pass, 64 x 256 @ 256 x 64
    assert tasd.pass_groups("2:4+1:4", core) == [(2, [[0]]), (1, [[1]])]
    assert tasd.pass_groups("2:4+1:4", plain) == [(2, [[0], [1]])]
    assert tasd.series_cost("2:4+1:4", core) == 1.5 and tasd.series_cost("2:4+1:4", plain) == 2
    assert tasd.series_cost("1:4", core) == 0.5 and tasd.series_cost("dense", core) == 2
    # 2:4 + 1:4: a 2:4 product and a packed 1:4 product, each with its pipeline drain.
    assert tasd.series_cycles("2:4+1:4", core, 64, 256, 64) == one + one // 2 + 2 * core.latency
    assert tasd.series_cycles("2:4+1:4", plain, 64, 256, 64) == 2 * one + plain.latency
    assert tasd.series_cycles("1:4+1:4", core, 64, 256, 64) == one + core.latency   # one 2:4 pass
    # 4:8 core: 4:8+2:8 is 1.5 passes; 1:8 packs four rows per row.
    big = NMCoreConfig(n=4, m=8, rows=8, packing=True)
    assert tasd.series_cost("4:8+2:8", big) == 1.5 and tasd.series_cost("1:8", big) == 0.25
    # 6:8: 2:4 needs 4 slots, which does not divide 6: a full pass.
    assert tasd.series_cost("2:4", NMCoreConfig(n=6, m=8, packing=True)) == 1
    assert tasder.default_menu(core) == ["1:4", "2:4", "2:4+1:4"] and tasder.default_menu(plain) == ["2:4"]


def test_conv_lowering_matches_torch_and_groups_input_channels():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 5, 3, padding=1, stride=2)
    x = torch.randn(2, 8, 7, 7)
    w = weight_matrix(conv, 4)
    assert w.shape == (5, 72)
    # K order (kh, kw, C): element k*8 + c is channel c at kernel position k.
    assert torch.equal(w[:, 8 * 4 + 3], conv.weight.detach()[:, 3, 1, 1])
    y = output_from_matrix(conv, x, input_matrix(conv, x, 4) @ w.T)
    assert torch.allclose(y, conv(x), atol=1e-5)


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(2, 2, 3))
    with pytest.raises(GoldenError, match="layer '1' \\(Conv1d\\) is not supported"):
        matmul_layers(model)
    with pytest.raises(GoldenError, match="groups=2"):
        matmul_layers(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_tasder_respects_budget_and_is_deterministic():
    torch.manual_seed(0)
    model = TinyMLP().eval()
    x = torch.randn(64, 16)
    core = NMCoreConfig(n=2, m=4, rows=4)
    menu = ["2:4", "1:4", "2:4+1:4"]
    first = tasder_search.search(model, x, core, menu, max_output_error=0.2)
    again = tasder_search.search(model, x, core, menu, max_output_error=0.2)
    assert first.to_json() == again.to_json()
    assert first.metric <= 0.2 and first.cycles <= first.dense_cycles
    out = tasder.approximate(model, first.choices, x)
    with torch.no_grad():
        ref = model(x)
    assert float(torch.linalg.norm(out - ref) / torch.linalg.norm(ref)) == pytest.approx(first.metric)
    # A zero budget keeps every layer dense; a huge one takes the cheapest option everywhere.
    assert tasder_search.search(model, x, core, menu, max_output_error=0.0).cycles == first.dense_cycles
    loose = tasder_search.search(model, x, core, menu, max_output_error=10.0)
    assert loose.cycles < first.dense_cycles
    assert all(l["weights"] != "dense" or l["activations"] != "dense" for l in loose.layers)


def test_tasder_bad_input():
    model, x = TinyMLP(), torch.randn(4, 16)
    core = NMCoreConfig(n=2, m=4)
    with pytest.raises(GoldenError, match="exactly one budget"):
        tasder_search.search(model, x, core, ["2:4"])
    with pytest.raises(GoldenError, match="term 2:8 cannot run on a 2:4 core"):
        tasder_search.search(model, x, core, ["2:8"], max_output_error=0.1)
    with pytest.raises(GoldenError, match="no Linear/Conv2d layer named 'c'"):
        tasder.approximate(model, {"c": tasder.LayerChoice(weights="2:4")}, x)
    with pytest.raises(GoldenError, match="one operand per layer"):
        tasder.LayerChoice(weights="2:4", activations="2:4")
