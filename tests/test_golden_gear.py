"""The GEAR golden model (golden/gear.py): bad input, exactness properties, error trends,
bit accounting, the streaming cache, the fixed-point path and the cycle model, on
synthetic K/V (keys with a few large-magnitude channels) and, when the optional minilm
extra is installed, on real all-MiniLM-L6-v2 K/V of all 6 layers."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import GoldenError, gear, minilm
from spec.gear_unit import GearFixedFormat


def synthetic_k(rng, shape=(2, 3, 128, 32), outlier_channels=3):
    """Keys: Gaussian channels, a few of them large-magnitude and offset."""
    x = rng.standard_normal(shape)
    big = rng.choice(shape[-1], size=outlier_channels, replace=False)
    x[..., big] = x[..., big] * 10 + 4
    return x


def synthetic_v(rng, shape=(2, 3, 128, 32)):
    return rng.standard_normal(shape) * 0.7 + rng.standard_normal(shape[:-2] + (1, shape[-1])) * 0.3


def fp16(x):
    return x.astype(np.float16).astype(np.float64)


@pytest.fixture(scope="module")
def k():
    return synthetic_k(np.random.default_rng(0))


@pytest.fixture(scope="module")
def v():
    return synthetic_v(np.random.default_rng(1))


# ---------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, message", [
    (dict(bits=5), r"bits must be one of \(2, 3, 4, 8\), not bits=5"),
    (dict(bits=1), "not bits=1"),
    (dict(group_size=48), r"group_size=48 does not divide the grouped axis \(tokens=128"),
    (dict(group_size=5, axis="token"), r"group_size=5 does not divide the grouped axis \(head_dim=32"),
    (dict(group_size=0), "group_size must be >= 1, not group_size=0"),
    (dict(rank=33), r"rank must be <= min\(tokens, head_dim\) = 32, not rank=33"),
    (dict(rank=-1), "rank must be >= 0, not rank=-1"),
    (dict(outlier_ratio=0.5), r"outlier_ratio must be in \[0, 0.5\), not outlier_ratio=0.5"),
    (dict(outlier_ratio=-0.01), "not outlier_ratio=-0.01"),
    (dict(outlier_ratio=float("nan")), "not outlier_ratio=nan"),
    (dict(axis="row"), "axis must be 'channel' .* not axis='row'"),
    (dict(outlier_scope="group"), "outlier_scope must be one of .* not 'group'"),
    (dict(power_iters=-1), "power_iters must be >= 0, not power_iters=-1"),
])
def test_bad_arguments_raise(kwargs, message):
    args = dict(bits=4, group_size=64, outlier_ratio=0.02, rank=4)
    args.update(kwargs)
    with pytest.raises(GoldenError, match=message):
        gear.compress(np.zeros((1, 1, 128, 32)), **args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises_with_position(bad):
    x = np.zeros((1, 2, 8, 4))
    x[0, 1, 3, 2] = bad
    with pytest.raises(GoldenError, match=rf"non-finite value {bad}.* at \(0, 1, 3, 2\)"):
        gear.compress(x, 4, 4, 0.0, 0)


def test_shape_errors():
    with pytest.raises(GoldenError, match=r"shape \(batch, heads, tokens, head_dim\), got shape \(8, 4\)"):
        gear.compress(np.zeros((8, 4)), 4, 4, 0.0, 0)
    with pytest.raises(GoldenError, match="rank must be <= min.* = 4"):
        gear.compress(np.zeros((1, 1, 4, 32)), 4, 4, 0.0, 5)


# ---------------------------------------------------------------------- exactness

def test_high_bits_and_full_rank_reproduce_the_input(k):
    x = fp16(k)
    for axis, group in (("channel", 64), ("token", 32)):
        comp = gear.compress(x, 8, group, 0.02, 32, axis=axis)
        err = gear.relative_error(x, comp.reconstruct())
        # Only the fp16 storage of the low-rank factors is left (about 1e-4 of the residual).
        assert err < 1e-4, (axis, err)
        assert err < gear.relative_error(x, gear.compress(x, 8, group, 0.02, 0, axis=axis).reconstruct()) / 10


def test_constant_input_is_exact():
    x = np.full((1, 2, 16, 8), 3.25)
    comp = gear.compress(x, 2, 8, 0.1, 2)
    assert np.array_equal(comp.reconstruct(), x)
    assert np.all(comp.scale == 0) and np.all(comp.codes == 0)


@pytest.mark.parametrize("axis, group", [("channel", 64), ("token", 32)])
@pytest.mark.parametrize("scope", ["tile", "row"])
def test_outliers_are_the_extremes_reproduced_exactly(k, axis, group, scope):
    x = fp16(k)
    comp = gear.compress(x, 2, group, 0.08, 4, axis=axis, outlier_scope=scope)
    b, h, t, d = x.shape
    per_line = t * d if scope == "tile" else (t if axis == "channel" else d)
    side = math.floor(0.04 * per_line)
    lines = 1 if scope == "tile" else (d if axis == "channel" else t)
    assert comp.n_outliers == 2 * side * lines > 0
    mask = comp.outlier_mask()
    x_hat = comp.reconstruct()
    assert np.array_equal(x_hat[mask], x[mask])                   # exactly
    if scope == "tile":
        flat = x.reshape(b, h, -1)
        for i in range(b):
            for j in range(h):
                kept = np.sort(flat[i, j][mask.reshape(b, h, -1)[i, j]])
                ordered = np.sort(flat[i, j])
                assert np.array_equal(kept, np.concatenate([ordered[:side], ordered[-side:]]))


def test_outliers_are_excluded_from_min_max(k):
    x = fp16(k)
    comp = gear.compress(x, 4, 64, 0.02, 0, axis="channel")
    mask = comp.outlier_mask()
    # Group (0, 0, tokens 0..63, channel c) for every channel: scale/zero from the rest.
    for c in range(x.shape[-1]):
        col, keep = x[0, 0, :64, c], ~mask[0, 0, :64, c]
        lo, hi = col[keep].min(), col[keep].max()
        assert comp.zero[0, 0, 0, c] == fp16(np.array(lo))
        assert comp.scale[0, 0, 0, c] == fp16(np.array((hi - lo) / 15))
    assert mask[0, 0, :64].any()


# ---------------------------------------------------------------------- error trends

def test_error_falls_as_bits_grow(k, v):
    for x, axis, group in ((k, "channel", 64), (v, "token", 32)):
        errs = [gear.relative_error(x, gear.compress(x, b, group, 0.02, 4, axis=axis).reconstruct())
                for b in (2, 3, 4, 8)]
        assert all(a > b for a, b in zip(errs, errs[1:])), errs


def test_error_falls_as_rank_grows(k, v):
    for x, axis, group in ((k, "channel", 64), (v, "token", 32)):
        errs = [gear.relative_error(x, gear.compress(x, 2, group, 0.02, r, axis=axis).reconstruct())
                for r in (0, 2, 4, 8, 16, 32)]
        assert all(a > b for a, b in zip(errs, errs[1:])), errs


@pytest.mark.parametrize("bits", [2, 4])
def test_gear_beats_gear_l_beats_kivi_on_keys_with_outlier_channels(k, bits):
    kivi = gear.relative_error(k, gear.kivi(k, bits, 64, "channel").reconstruct())
    gear_l = gear.relative_error(k, gear.compress(k, bits, 64, 0.0, 4).reconstruct())
    full = gear.relative_error(k, gear.compress(k, bits, 64, 0.02, 4).reconstruct())
    assert full < gear_l < kivi


def test_kivi_is_compress_without_outliers_or_rank(v):
    a = gear.kivi(v, 2, 32, "token")
    b = gear.compress(v, 2, 32, 0.0, 0, axis="token")
    assert np.array_equal(a.reconstruct(), b.reconstruct())
    assert a.n_outliers == 0 and a.rank == 0


def test_seeded_and_torch_inputs(k):
    a = gear.compress(k, 4, 64, 0.02, 4, seed=3)
    b = gear.compress(torch.from_numpy(k), 4, 64, 0.02, 4, seed=3)
    assert np.array_equal(a.reconstruct(), b.reconstruct())
    c = gear.compress(k, 4, 64, 0.02, 4, seed=4)
    assert not np.array_equal(a.factor_a, c.factor_a)


# ---------------------------------------------------------------------- bit accounting

def test_bits_per_element_counts_everything():
    x = np.random.default_rng(2).standard_normal((2, 3, 128, 32))
    comp = gear.compress(x, 4, 64, 0.02, 4, axis="channel")
    n = x.size
    tiles, tokens, dim = 6, 128, 32
    side = math.floor(0.01 * tokens * dim)                     # 40 per side per tile
    expected = (4 * n                                          # codes
                + 32 * (n // 64)                                # fp16 scale + zero per group
                + tiles * 2 * side * (16 + 12)                  # fp16 value + 12-bit position
                + tiles * 4 * (tokens + dim) * 16)              # fp16 factors
    assert comp.bits_per_element() == pytest.approx(expected / n)
    assert comp.compression_ratio() == pytest.approx(16 * n / expected)
    kivi = gear.kivi(x, 2, 32, "token")
    assert kivi.bits_per_element() == pytest.approx(2 + 32 / 32)


def test_long_context_amortises_the_low_rank_factors():
    """fp16 factors cost 16 * r * (tokens + head_dim) bits per tile: 2.5 bits/element on a
    128 x 32 MiniLM tile, 0.52 on 4096 x 128 (the head_dim term stays)."""
    short = gear.compress(np.random.default_rng(3).standard_normal((1, 1, 128, 32)), 2, 64, 0.02, 4)
    long = gear.compress(synthetic_k(np.random.default_rng(3), (1, 1, 4096, 128), 6), 2, 64, 0.02, 4)
    assert short.bit_counts()["low_rank"] / short.codes.size == pytest.approx(2.5)
    assert long.bit_counts()["low_rank"] / long.codes.size == pytest.approx(16 * 4 * 4224 / 4096 / 128)
    assert long.compression_ratio() > 4 > short.compression_ratio()


# ---------------------------------------------------------------------- streaming cache

def test_streaming_cache_compresses_full_chunks(k):
    cache = gear.GearCache(4, 32, 0.02, 4, buffer=64, axis="channel")
    pieces = [k[:, :, :10], k[:, :, 10:70], k[:, :, 70:128], k[:, :, 128:]]
    for p in pieces[:3]:
        cache.append(p)
    assert cache.tokens == 128 and len(cache.chunks) == 2 and cache.buffered.shape[2] == 0
    cache = gear.GearCache(4, 16, 0.02, 4, buffer=48, axis="channel")
    for p in pieces[:3]:
        cache.append(p)
    assert len(cache.chunks) == 2 and cache.buffered.shape[2] == 32
    x_hat = cache.reconstruct()
    assert x_hat.shape == k.shape
    assert np.array_equal(x_hat[:, :, 96:], k[:, :, 96:])      # the buffer is exact
    for n, chunk in enumerate(cache.chunks):                    # each chunk as compress() does it
        want = gear.compress(k[:, :, 48 * n:48 * (n + 1)], 4, 16, 0.02, 4, seed=n)
        assert np.array_equal(chunk.reconstruct(), want.reconstruct())
    bits = sum(sum(c.bit_counts().values()) for c in cache.chunks) + 16 * k[:, :, 96:].size
    assert cache.bits_per_element() == pytest.approx(bits / k.size)
    assert gear.relative_error(k, x_hat) < gear.relative_error(k, gear.kivi(k, 4, 16).reconstruct())


def test_streaming_cache_errors():
    with pytest.raises(GoldenError, match="group_size=64 does not divide .*tokens=48"):
        gear.GearCache(4, 64, 0.02, 4, buffer=48)
    with pytest.raises(GoldenError, match="buffer must be >= 1, not buffer=0"):
        gear.GearCache(4, 16, 0.02, 4, buffer=0)
    cache = gear.GearCache(4, 16, 0.0, 2, buffer=16, axis="token")
    with pytest.raises(GoldenError, match="cache is empty"):
        cache.reconstruct()
    with pytest.raises(GoldenError, match="group_size=16 does not divide .*head_dim=8"):
        cache.append(np.zeros((1, 1, 4, 8)))
    cache.append(np.zeros((1, 1, 4, 32)))
    with pytest.raises(GoldenError, match="appended tokens have shape"):
        cache.append(np.zeros((1, 2, 4, 32)))


# ---------------------------------------------------------------------- fixed-point path

@pytest.mark.parametrize("axis, group, bits", [("channel", 64, 4), ("token", 32, 2)])
def test_fixed_point_path_is_close_to_float(k, v, axis, group, bits):
    x = k if axis == "channel" else v
    comp = gear.compress(x, bits, group, 0.02, 4, axis=axis)
    fixed = gear.to_fixed(comp)
    y = fixed.reconstruct_int()
    assert y.min() >= -128 and y.max() <= 127
    sat = fixed.saturated
    assert sat["scale"] == sat["zero"] == sat["outliers"] == sat["factor_a"] == 0, sat
    # 5-bit factors may clip a few of B's values at 2 bits (counted, and rare).
    assert sat["factor_b"] <= 0.01 * fixed.b.size, sat
    # int8 output, per-channel scale: small, and it barely adds to the method's own error.
    assert gear.relative_error(comp.reconstruct(), fixed.reconstruct()) < 0.02
    assert gear.relative_error(x, fixed.reconstruct()) < 1.1 * gear.relative_error(x, comp.reconstruct())
    # Outliers come out as round(x / s_out) exactly.
    d = x.shape[-1]
    channel = comp.outlier_pos % d
    want = np.floor(comp.outlier_val / np.take_along_axis(fixed.out_scale, channel, -1) + 0.5)
    got = np.take_along_axis(y.reshape(*y.shape[:2], -1), comp.outlier_pos, -1)
    assert np.array_equal(got, want)


def test_fixed_point_coarse_output_group_costs_accuracy(k):
    comp = gear.compress(k, 4, 64, 0.02, 4)
    per_channel = gear.relative_error(comp.reconstruct(), gear.to_fixed(comp).reconstruct())
    per_tile = gear.relative_error(comp.reconstruct(), gear.to_fixed(comp, out_group=32).reconstruct())
    assert per_channel < per_tile
    with pytest.raises(GoldenError, match="out_group=5 does not divide head_dim=32"):
        gear.to_fixed(comp, out_group=5)
    with pytest.raises(GoldenError, match="frac_bits must be in 0..24, not frac_bits=30"):
        gear.to_fixed(comp, GearFixedFormat(frac_bits=30))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 10), st.integers(2, 10), st.integers(0, 3),
       st.sampled_from([2, 4]), st.booleans())
def test_reconstruct_int_matches_a_scalar_model(seed, frac, out_width, rank, bits, extreme):
    """The vectorised integer path equals a plain per-element Python computation."""
    rng = np.random.default_rng(seed)
    fmt = GearFixedFormat(frac_bits=frac, out_width=out_width, scale_width=12, zero_width=16,
                           factor_width=6, factor_frac=frac // 2)
    fixed = gear.random_fixed(rng, (1, 1, 3, 4), rank, fmt, bits, max_outliers=5, extreme=extreme)
    got = fixed.reconstruct_int()
    lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    outliers = dict(zip(fixed.outlier_pos[0, 0].tolist(), fixed.outlier_val[0, 0].tolist()))
    for t in range(3):
        for d in range(4):
            acc = int(fixed.codes[0, 0, t, d]) * int(fixed.scale[0, 0, t, d]) + int(fixed.zero[0, 0, t, d])
            lr = sum(int(fixed.a[0, 0, t, r]) * int(fixed.b[0, 0, r, d]) for r in range(rank))
            acc += lr * 2 ** (frac - frac // 2)
            y = (acc + (1 << (frac - 1))) // (1 << frac)          # round half up
            y = min(max(y, lo), hi)
            assert got[0, 0, t, d] == outliers.get(t * 4 + d, y)


def test_cycle_model():
    unit = SimpleNamespace(outlier_slots=2, latency=3)
    # One extra beat loads the first row's scale/zero pairs ...
    assert gear.cycles(unit, [0, 1, 2, 3, 5]) == 1 + (1 + 1 + 1 + 2 + 3) + 3
    assert gear.cycles(SimpleNamespace(outlier_slots=0, latency=3), [0, 0]) == 1 + 2 + 3
    # ... unless that row already has a `more` beat to carry them.
    assert gear.cycles(unit, [5, 0]) == (3 + 1) + 3
    with pytest.raises(GoldenError, match="without outlier slots cannot take a row with 1"):
        gear.cycles(SimpleNamespace(outlier_slots=0, latency=3), [0, 1])


# ---------------------------------------------------------------------- real MiniLM K/V

@pytest.fixture(scope="module")
def minilm_kv():
    missing = minilm.available()
    if missing:
        pytest.skip(missing)
    return minilm.kv_cache(128, 2)


def test_minilm_kv_shapes(minilm_kv):
    k, v = minilm_kv
    assert k.shape == v.shape == (6, 2, 12, 128, 32)
    assert np.isfinite(k).all() and k.std() > 0.1 and not np.allclose(k, v)


@pytest.mark.parametrize("bits", [2, 4])
def test_minilm_gear_beats_kivi_on_every_layer(minilm_kv, bits):
    k, v = minilm_kv
    for x, axis, group in ((k, "channel", 64), (v, "token", 32)):
        for layer in range(6):
            kivi = gear.relative_error(x[layer], gear.kivi(x[layer], bits, group, axis).reconstruct())
            full = gear.compress(x[layer], bits, group, 0.02, 4, axis=axis)
            err = gear.relative_error(x[layer], full.reconstruct())
            assert err < kivi, (axis, layer, err, kivi)
            fixed = gear.to_fixed(full)
            assert gear.relative_error(full.reconstruct(), fixed.reconstruct()) < 0.02
    # Error falls with bits on real keys.
    e = [gear.relative_error(k[0], gear.compress(k[0], b, 64, 0.02, 4).reconstruct()) for b in (2, 4, 8)]
    assert e[0] > e[1] > e[2]
