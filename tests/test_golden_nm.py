"""Properties of the N:M format's golden model (golden/nm.py)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from golden import GoldenError, nm

NM = st.sampled_from([(1, 2), (1, 4), (2, 4), (3, 4), (4, 4), (1, 8), (2, 8), (4, 8), (8, 8)])


@st.composite
def int8_matrix_and_nm(draw):
    n, m = draw(NM)
    rows = draw(st.integers(1, 4))
    groups = draw(st.integers(1, 6))
    # Small value ranges make ties and zeros common, which is where rules matter.
    elements = st.integers(-128, 127) | st.integers(-2, 2)
    w = draw(arrays(np.int64, (rows, groups * m), elements=elements))
    return w, n, m


@settings(max_examples=200, deadline=None)
@given(int8_matrix_and_nm())
def test_prune_gives_n_m_and_keeps_the_largest(case):
    w, n, m = case
    p = nm.prune(w, n, m)
    assert nm.is_nm(p, n, m)
    groups, kept = w.reshape(-1, m), p.reshape(-1, m)
    for g, k in zip(groups, kept):
        dropped = np.abs(g[(k == 0) & (g != 0)])
        survivors = np.abs(k[k != 0])
        # Nothing dropped is larger than anything kept, and kept values are unchanged.
        if dropped.size and survivors.size:
            assert dropped.max() <= survivors.min()
        assert np.all((k == 0) | (k == g))
        assert np.count_nonzero(k) == min(n, np.count_nonzero(g))


def test_prune_ties_go_to_the_lower_index():
    w = np.array([[5, -5, 5, 5, 0, 1, -1, 1]])
    assert nm.prune(w, 2, 4).tolist() == [[5, -5, 0, 0, 0, 1, -1, 0]]
    assert nm.prune(w, 1, 4).tolist() == [[5, 0, 0, 0, 0, 1, 0, 0]]


def test_prune_handles_minus_128_magnitude():
    # |-128| must not overflow int8 into -128 (which would sort it last).
    w = np.array([[-128, 127, 1, 0]], dtype=np.int8)
    assert nm.prune(w, 1, 4).tolist() == [[-128, 0, 0, 0]]


@settings(max_examples=200, deadline=None)
@given(int8_matrix_and_nm())
def test_compress_then_decompress_is_identity_on_n_m_tensors(case):
    w, n, m = case
    p = nm.prune(w, n, m)
    values, indices = nm.compress(p, n, m)
    assert values.shape == indices.shape == (w.shape[0], w.shape[1] // m, n)
    assert np.array_equal(nm.decompress(values, indices, n, m), p)
    # Slots name distinct positions in ascending order.
    assert np.all(np.diff(indices, axis=-1) > 0)


@settings(max_examples=200, deadline=None)
@given(int8_matrix_and_nm(), st.integers(1, 5), st.data())
def test_matmul_equals_dense_int64_matmul(case, cols, data):
    w, n, m = case
    p = nm.prune(w, n, m)
    x = data.draw(arrays(np.int64, (w.shape[1], cols), elements=st.integers(-128, 127)))
    values, indices = nm.compress(p, n, m)
    got = nm.matmul(values, indices, x, n, m)
    assert got.dtype == np.int32
    assert np.array_equal(got, p.astype(np.int64) @ x)


def test_matmul_wraps_like_the_accumulator():
    k = 8
    w = np.full((1, k), -128)
    x = np.full((k, 1), -128)
    values, indices = nm.compress(w, 4, 4)
    # 8 * 16384 = 131072 wraps in 16 bits to 0; in 18 bits to -131072.
    assert nm.matmul(values, indices, x, 4, 4, acc_width=16).tolist() == [[0]]
    assert nm.matmul(values, indices, x, 4, 4, acc_width=18).tolist() == [[-131072]]
    assert nm.matmul(values, indices, x, 4, 4).tolist() == [[131072]]


def test_torch_tensors_round_trip():
    w = torch.tensor([[0.5, -2.0, 1.0, 3.0, 0.0, 0.0, -1.0, 0.25]])
    p = nm.prune(w, 2, 4)
    assert isinstance(p, torch.Tensor)
    assert p.tolist() == [[0.0, -2.0, 0.0, 3.0, 0.0, 0.0, -1.0, 0.25]]
    values, indices = nm.compress(p, 2, 4)
    assert isinstance(values, torch.Tensor) and indices.dtype == torch.int64
    assert torch.equal(nm.decompress(values, indices, 2, 4), p)


def test_compress_names_the_first_group_with_too_many_non_zeros():
    w = np.zeros((3, 8), dtype=int)
    w[1, 4:7] = [1, 2, 3]
    with pytest.raises(GoldenError, match=r"group \(1, 1\) \(elements 4\.\.7 .*\) holds 3 non-zeros, more than n=2"):
        nm.compress(w, 2, 4)


def test_decompress_rejects_repeated_and_out_of_range_indices():
    values = np.ones((1, 2, 2), dtype=int)
    with pytest.raises(GoldenError, match=r"group \(0, 1\) repeats a position"):
        nm.decompress(values, np.array([[[0, 1], [3, 3]]]), 2, 4)
    with pytest.raises(GoldenError, match="index 4 .* outside"):
        nm.decompress(values, np.array([[[0, 4], [0, 1]]]), 2, 4)


@pytest.mark.parametrize("n, m, message", [(5, 4, "1 <= n <= m"), (0, 4, "1 <= n <= m"),
                                           (1, 0, "m must be >= 1")])
def test_bad_n_m_raise(n, m, message):
    with pytest.raises(GoldenError, match=message):
        nm.prune(np.zeros((1, 4)), n, m)


def test_reduction_axis_must_be_a_multiple_of_m():
    with pytest.raises(GoldenError, match="6 elements, not a multiple of m=4; pad it with zeros to 8"):
        nm.prune(np.zeros((2, 6)), 2, 4)


def test_matmul_rejects_values_outside_int8():
    values, indices = nm.compress(np.array([[1, 0, 0, 0]]), 1, 4)
    with pytest.raises(GoldenError, match="activation value 128 does not fit in int8"):
        nm.matmul(values, indices, np.array([128, 0, 0, 0]), 1, 4)


def test_cycles_model():
    class Cfg:
        rows, m, latency = 8, 4, 4
    # 64x256 @ 256x64 on 8 rows: 8 row blocks x 64 columns x 64 groups, plus the drain.
    assert nm.cycles(Cfg, 64, 256, 64) == 8 * 64 * 64 + 4
    assert nm.cycles(Cfg, 9, 4, 1) == 2 + 4
