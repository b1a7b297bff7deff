"""The LP format's golden model (golden/lp.py) and the baselines' (golden/mac.py).

Standard posit mode is checked against softposit exhaustively: for LP<n, es, rs=n-1,
sf=0> and every code except 0 and NaR, softposit's value (a float64, exact for n <= 16)
must equal ``(-1)^s * 2^(k * 2^es + e) * (1 + frac / 2^F)`` built from LP's decoded
fields. That pins the sign, the regime (k), the exponent (e) and every fraction bit;
LP's own value of the same fields is ``(-1)^s * 2^(k * 2^es + e) * 2^(frac / 2^F)``.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import GoldenError, lp, mac

softposit = pytest.importorskip("softposit", reason="softposit is a test dependency: pip install -e '.[test]'")


def standard_value(fmt, fields):
    s = np.where(fields["sign"] == 1, -1.0, 1.0)
    scale = (fields["k"] << fmt.es) + fields["e"]
    return s * np.ldexp(1.0 + fields["frac"] / float(1 << fmt.frac_bits), scale)


def check_against(fmt, softposit_value):
    codes = np.arange(1 << fmt.n)
    fields = fmt.fields(codes)
    posits = [softposit_value(int(c)) for c in codes]
    want = np.array([float(p) for p in posits])
    special = (codes == 0) | (codes == fmt.nar_code)
    assert want[0] == 0.0 and posits[fmt.nar_code].isNaR()
    assert not any(p.isNaR() for k, p in enumerate(posits) if k != fmt.nar_code)
    got = standard_value(fmt, fields)
    bad = np.flatnonzero((got != want) & ~special)
    assert bad.size == 0, f"{fmt}: code {bad[0]:#x}: softposit {want[bad[0]]}, LP fields give {got[bad[0]]}"
    # LP's value of the same fields: 2^frac instead of 1 + frac.
    lp_value = fmt.decode(codes)
    scale = (fields["k"] << fmt.es) + fields["e"]
    expect = np.where(fields["sign"] == 1, -1.0, 1.0) * np.exp2(scale + fields["frac"] / 2.0 ** fmt.frac_bits)
    assert np.allclose(lp_value[~special], expect[~special], rtol=1e-15, atol=0)
    assert lp_value[0] == 0.0 and math.isnan(lp_value[fmt.nar_code])
    return codes.size


def test_posit8_es0_matches_softposit():
    assert check_against(lp.LPFormat(8, 0, 7, 0), lambda c: softposit.posit8(bits=c)) == 256


def test_posit16_es1_matches_softposit():
    assert check_against(lp.LPFormat(16, 1, 15, 0), lambda c: softposit.posit16(bits=c)) == 65536


@pytest.mark.parametrize("n", range(3, 17))
def test_posit_n_es2_matches_softposit(n):
    check_against(lp.LPFormat(n, 2, n - 1, 0), lambda c: softposit.posit_2(x=n, bits=c))


def test_capped_regime_hand_worked():
    fmt = lp.LPFormat(6, 1, 2, 0)          # F = 6 - 1 - 2 - 1 = 2
    assert fmt.frac_bits == 2
    f = fmt.fields([0b011111, 0b000001, 0b010110, 0b001000])
    # 0 11 1 11: a run of rs=2 ones needs no terminator: k = 1, e = 1, frac = 0.11.
    # 0 00 0 01: a run of 2 zeros: k = -2, e = 0, frac = 0.01.
    # 0 10 1 10: run 1, terminator: k = 0, e = 1, frac = 0.10.  0 01 0 00: k = -1.
    assert f["k"].tolist() == [1, -2, 0, -1] and f["e"].tolist() == [1, 0, 1, 0]
    assert f["frac"].tolist() == [3, 1, 2, 0] and f["fw"].tolist() == [2, 2, 2, 2]
    assert fmt.decode([0b011111])[0] == 2 ** 3.75 == fmt.maxpos
    assert fmt.decode([0b000001])[0] == 2 ** -3.75 == fmt.minpos
    # Exponent bits cut off by the word's end are 0: LP<5, es=2, rs=4>, 0 1110 -> k=2, e=0.
    g = lp.LPFormat(5, 2, 4).fields([0b01110, 0b01111])
    assert g["k"].tolist() == [2, 3] and g["e"].tolist() == [0, 0] and g["fw"].tolist() == [0, 0]


FORMATS = st.builds(lambda n, es, rs_frac, sf: lp.LPFormat(n, es, max(1, round(rs_frac * (n - 1))), sf),
                    st.integers(3, 10), st.integers(0, 3), st.floats(0, 1), st.integers(-8, 8))


@settings(max_examples=60, deadline=None)
@given(FORMATS)
def test_table_is_monotonic_symmetric_and_round_trips(fmt):
    codes = np.arange(1 << fmt.n)
    table = fmt.table()
    signed_order = np.concatenate([codes[fmt.nar_code + 1:], codes[:fmt.nar_code]])
    assert np.all(np.diff(table[signed_order]) > 0)
    neg = (-codes) % (1 << fmt.n)
    ok = codes != fmt.nar_code
    assert np.array_equal(table[neg][ok], -table[ok])
    assert np.array_equal(fmt.encode(table[ok]), codes[ok])
    # sf divides every value by 2^sf.
    base = lp.LPFormat(fmt.n, fmt.es, fmt.rs, 0).table()
    assert np.allclose(table[ok], base[ok] / 2.0 ** fmt.sf, rtol=1e-15, atol=0)


@settings(max_examples=60, deadline=None)
@given(FORMATS, st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_encode_is_nearest_in_the_log_domain(fmt, xs):
    x = np.array(xs)
    codes = fmt.encode(x)
    q = fmt.decode(codes)
    pos = fmt.table()[1:fmt.nar_code]
    for xi, qi in zip(x, q):
        if abs(xi) <= fmt.minpos / 2:
            assert qi == 0.0
            continue
        assert np.sign(qi) == np.sign(xi)
        if abs(xi) < fmt.minpos:
            assert abs(qi) == fmt.minpos
            continue
        dist = np.abs(np.log2(pos) - math.log2(abs(xi)))
        assert abs(math.log2(abs(qi)) - math.log2(abs(xi))) <= dist.min() + 1e-12


def test_rounding_rules():
    fmt = lp.LPFormat(6, 2, 5, 0)          # standard posit<6,2>: sparse codes near maxpos
    logs = np.log2(fmt.table()[1:fmt.nar_code])
    assert logs[-1] == 16 and logs[-2] == 12   # codes 31 and 30: 2^16 and 2^12
    assert int(fmt.encode(2.0 ** 14)) == 30      # the log midpoint: tie to the even code
    assert int(fmt.encode(-(2.0 ** 14))) == 64 - 30
    assert int(fmt.encode(2.0 ** 14.01)) == 31
    # Saturation: never NaR, never beyond maxpos.
    assert fmt.encode([1e300, -1e300]).tolist() == [31, 33]
    # Underflow: linear rounding between 0 and minpos; the tie goes to 0 (even code).
    mp = fmt.minpos
    assert fmt.encode([mp / 2, mp / 2 * 1.0001, mp / 3, -mp / 2 * 1.0001, -mp / 3]).tolist() == [0, 1, 0, 63, 0]
    assert fmt.encode([0.0, -0.0]).tolist() == [0, 0]
    # Non-finite values: NaR, or an error on request.
    assert fmt.encode([np.nan, np.inf, -np.inf]).tolist() == [32, 32, 32]
    with pytest.raises(GoldenError, match="non-finite value inf"):
        fmt.encode([1.0, np.inf], nonfinite="error")


@pytest.mark.parametrize("args, message", [
    ((2, 0), "n must be in 3..16, not n=2"),
    ((17, 0), "n must be in 3..16, not n=17"),
    ((8, 4), "es must be in 0..3, not es=4"),
    ((8, -1), "es must be in 0..3, not es=-1"),
    ((8, 1, 0), "rs must be in 1..n-1=7, not rs=0"),
    ((8, 1, 8), "rs must be in 1..n-1=7, not rs=8"),
    ((8, 1, 4, 65), "sf must be in -64..64, not sf=65"),
    ((8.0, 1), "n must be an integer, not 8.0"),
])
def test_bad_format_parameters(args, message):
    with pytest.raises(GoldenError, match=message):
        lp.LPFormat(*args)


def test_bad_codes():
    fmt = lp.LPFormat(6, 1, 3)
    with pytest.raises(GoldenError, match="code 64 does not fit in n=6 bits"):
        fmt.decode([1, 64])
    with pytest.raises(GoldenError, match="code -1 does not fit"):
        fmt.decode([-1])
    with pytest.raises(GoldenError, match="LP codes must be integers, not float64"):
        fmt.decode([1.5])
    with pytest.raises(GoldenError, match="nonfinite must be"):
        fmt.encode([1.0], nonfinite="clip")


def test_exp2_table():
    for F, tb in [(0, 4), (3, 8), (5, 8), (6, 12)]:
        t = lp.exp2_table(F, tb)
        exact = 2.0 ** (np.arange(1 << F) / 2 ** F) * 2 ** tb
        assert len(t) == 1 << F and t[0] == 1 << tb
        assert np.all(np.abs(t - exact) <= 0.5)
    with pytest.raises(GoldenError, match="table_bits must be in 1..24, not table_bits=0"):
        lp.exp2_table(3, 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(4, 8), st.integers(0, 2), st.integers(0, 10**6), st.integers(-6, 6))
def test_fixed_products_approximate_the_real_product(n, es, seed, sf):
    rs = n - 2
    fw, fa = lp.LPFormat(n, es, rs, sf), lp.LPFormat(n, es, rs, 0)
    rng = np.random.default_rng(seed)
    w, a = rng.integers(0, 1 << n, (2, 64))
    tb, aw, af = 10, 48, 20
    prods, nar = lp.fixed_products(fw, w, fa, a, table_bits=tb, acc_width=aw, acc_frac=af)
    exact = fw.decode(w) * fa.decode(a)
    assert np.array_equal(nar, np.isnan(exact))
    ok = ~nar & (np.abs(np.nan_to_num(exact)) < 2.0 ** (aw - af - 2))     # no wrap-around
    got = prods[ok] / 2.0 ** af
    # Table rounding (relative 2^-(tb+1)) and truncation below 2^-af.
    assert np.all(np.abs(got - exact[ok]) <= np.abs(exact[ok]) * 2.0 ** -(tb + 1) + 2.0 ** -af)
    acc, any_nar = lp.fixed_dot(fw, w[None, ok], fa, a[None, ok], table_bits=tb, acc_width=aw, acc_frac=af)
    assert acc[0] == prods[ok].sum() and not any_nar[0]
    assert lp.fixed_dot(fw, w[None], fa, a[None], table_bits=tb, acc_width=aw, acc_frac=af)[1][0] == nar.any()


def test_fixed_dot_wraps_like_the_accumulator():
    fmt = lp.LPFormat(6, 1, 3, -10)
    w = np.full(100, fmt.maxpos_code)
    acc, _ = lp.fixed_dot(fmt, w, lp.LPFormat(6, 1, 3), w, table_bits=8, acc_width=16, acc_frac=4)
    prods, _ = lp.fixed_products(fmt, w, lp.LPFormat(6, 1, 3), w, table_bits=8, acc_width=64, acc_frac=4)
    total = int(prods.sum())
    assert total > 2 ** 15 and acc == (total + 2 ** 15) % 2 ** 16 - 2 ** 15
    with pytest.raises(GoldenError, match="one \\(n, es, rs\\)"):
        lp.fixed_products(fmt, w, lp.LPFormat(6, 0, 3), w, table_bits=8, acc_width=16, acc_frac=4)


def test_fp8_matches_torch_e4m3fn():
    codes = np.arange(256)
    want = torch.from_numpy(codes.astype(np.uint8)).view(torch.float8_e4m3fn).float().numpy()
    got = mac.fp8_decode(codes)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 30, 5000), rng.normal(0, 0.01, 5000),
                        (mac.fp8_decode(codes[:126])[1:] + mac.fp8_decode(codes[:126])[:-1]) / 2])
    x = x[np.abs(x) <= 440]
    ref = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy().astype(np.int64)
    assert np.array_equal(mac.fp8_encode(x), ref)
    assert mac.fp8_encode([1e6, -1e6, np.nan, np.inf]).tolist() == [0x7E, 0xFE, 0x7F, 0x7F]


def test_fp8_and_int8_products():
    codes = np.arange(256)
    w, a = (x.ravel() for x in np.meshgrid(codes, codes))
    prods, nan = mac.fp8_products(w, a, acc_width=64, acc_frac=18)       # every product exact
    exact = mac.fp8_decode(w) * mac.fp8_decode(a)
    assert np.array_equal(nan, np.isnan(exact))
    assert np.array_equal(prods[~nan] / 2.0 ** 18, exact[~nan])
    assert mac.int8_dot([[-128, 127]], [[-128, -128]]).tolist() == [128]
    assert mac.int8_dot([[-128] * 4], [[-128] * 4], acc_width=16).tolist() == [0]
    with pytest.raises(GoldenError, match="weight value 128 is outside"):
        mac.int8_dot([128], [1])
