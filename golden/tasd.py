"""TASD: tensor approximation via structured decomposition (arXiv 2403.07953).

A tensor ``A`` is approximated by a short *series* of N:M terms, ``A ~= T1 + T2 + ...``,
so hardware that only runs N:M products can run any layer: ``A @ X = sum_i Ti @ X``.

Greedy decomposition under a series ``[(n1, m1), (n2, m2), ...]``::

    R = A
    for (n, m) in series:
        T = prune(R, n, m)        # top-n magnitudes of every m-group of R (ties: lower index)
        append compress(T, n, m)  # golden.nm's compressed form
        R = R - T

Groups run along the last (reduction) axis, as in :mod:`golden.nm`. Its length must be a
multiple of every ``m`` of the series: callers pad with zeros explicitly (zeros change
nothing: they are never kept ahead of a non-zero). Integer tensors decompose exactly in
integers; this is the arithmetic of the activation top-N unit (``hw.topn``).

Series are written ``"2:4+2:8"`` or given as ``[(2, 4), (2, 8)]`` (the grammar is
:func:`spec.numerics.parse_series`, re-exported here); ``"dense"`` (or ``""``/``None``
where allowed) means no decomposition.
"""

from dataclasses import dataclass
from math import lcm

import numpy as np

from spec.numerics import format_series, parse_series

from . import GoldenError, nm
from .arrays import to_numpy

__all__ = ["Term", "parse_series", "format_series", "decompose", "reconstruct",
           "relative_error", "term_fits_core", "pack_terms", "series_passes", "series_cycles",
           "dense_passes", "pass_groups", "series_cost"]


@dataclass(frozen=True)
class Term:
    """One N:M term in golden.nm's compressed form (``values``/``indices`` ``[..., K//m, n]``)."""

    n: int
    m: int
    values: np.ndarray
    indices: np.ndarray

    def dense(self) -> np.ndarray:
        return nm.decompress(self.values, self.indices, self.n, self.m)


def decompose(a, series) -> list[Term]:
    """Greedy TASD decomposition of ``a`` (numpy or torch, any dtype) under ``series``."""
    terms_nm = parse_series(series)
    r = to_numpy(a)
    if r.ndim == 0:
        raise GoldenError("cannot decompose a scalar: the tensor needs a reduction (last) axis")
    k = r.shape[-1]
    group = lcm(*(m for _, m in terms_nm))
    if k % group:
        raise GoldenError(f"the reduction axis has {k} elements, not a multiple of {group} "
                          f"(the series {format_series(terms_nm)}); pad it with zeros to "
                          f"{-(-k // group) * group} first")
    if r.dtype.kind == "f" and not np.all(np.isfinite(r)):
        raise GoldenError("cannot decompose a tensor with NaN or infinite values")
    terms = []
    for n, m in terms_nm:
        t = nm.prune(r, n, m)
        values, indices = nm.compress(t, n, m)
        terms.append(Term(n, m, values, indices))
        r = r - t
    return terms


def reconstruct(terms: list[Term]) -> np.ndarray:
    """The sum of the terms' dense forms."""
    if not terms:
        raise GoldenError("nothing to reconstruct: no terms")
    total = terms[0].dense().copy()
    for term in terms[1:]:
        total = total + term.dense()
    return total


def relative_error(a, terms: list[Term]) -> float:
    """``||a - reconstruct(terms)||_F / ||a||_F`` (0 for an all-zero ``a``)."""
    a = to_numpy(a).astype(np.float64)
    norm = np.linalg.norm(a)
    if norm == 0:
        return 0.0
    return float(np.linalg.norm(a - reconstruct(terms).astype(np.float64)) / norm)


# Cost model on the N:M tensor core (hw.nm_core). ``core`` is any object with the
# attributes n, m, rows and latency (an NMCoreConfig).

def term_fits_core(n: int, m: int, core) -> bool:
    """An n:m term runs on an n_c:m_c core when m divides m_c and the term, read in
    m_c-groups, needs at most n_c slots: n * (m_c / m) <= n_c (e.g. 2:4 is 4:8)."""
    return core.m % m == 0 and n * (core.m // m) <= core.n


def pack_terms(series, core) -> list[list[int]]:
    """Group the series' terms into passes of ``core``: lists of term indices.

    Terms never overlap, so terms whose slot needs add up to at most the core's n can
    share one pass: their sum is an n_c:m_c tensor. A term n:m needs ``n * m_c / m``
    slots. Packing is first-fit decreasing (ties in series order), which is optimal for
    the short series TASD uses. A wider core is thus "several term units in parallel":
    2:8+2:8 is two passes on a 2:8 core and one on a 4:8 core.

    Raises
    ------
    GoldenError
        If a term cannot run on the core (the term and the core are named).
    """
    terms = parse_series(series)
    for n, m in terms:
        if not term_fits_core(n, m, core):
            raise GoldenError(f"term {n}:{m} cannot run on a {core.n}:{core.m} core "
                              f"(needs m dividing {core.m} and n*{core.m}/m <= {core.n})")
    need = [n * (core.m // m) for n, m in terms]
    passes: list[list[int]] = []
    used: list[int] = []
    for i in sorted(range(len(terms)), key=lambda i: (-need[i], i)):
        for b, u in enumerate(used):
            if u + need[i] <= core.n:
                used[b] += need[i]
                passes[b].append(i)
                break
        else:
            used.append(need[i])
            passes.append([i])
    return [sorted(p) for p in passes]


def series_passes(series, core) -> int:
    """Passes (M-group streams per output) the series takes on ``core`` (:func:`pack_terms`)."""
    return len(pack_terms(series, core))


def pass_groups(series, core) -> list[tuple[int, list[list[int]]]]:
    """The passes of :func:`pack_terms` grouped by the ``n_active`` they run at:
    ``[(n_active, [pass, ...]), ...]``, unpacked passes (``n_active = core.n``) first.

    On a packing core (``core.packing``) a pass whose terms need u slots in all, u
    dividing the core's n, runs at ``n_active = u`` and packs ``n / u`` logical rows per
    physical row (``core.pack_factor``); every other pass runs at the core's n. Each
    group is one product (one dot product per output), the groups' results add up.
    """
    terms = parse_series(series)
    groups: dict[int, list[list[int]]] = {}
    for members in pack_terms(series, core):
        need = sum(terms[k][0] * (core.m // terms[k][1]) for k in members)
        factor = core.pack_factor(need) if hasattr(core, "pack_factor") else 1
        groups.setdefault(need if factor > 1 else core.n, []).append(members)
    return sorted(groups.items(), key=lambda item: -item[0])


def series_cost(series, core) -> float:
    """Full-rate passes the series costs on ``core``: each pass counts 1 / its pack
    factor (:func:`pass_groups`), so 2:4+1:4 costs 1.5 on a packing 2:4 core, 2 without
    packing; ``"dense"`` costs :func:`dense_passes`."""
    if series in (None, "", "dense"):
        return float(dense_passes(core))
    factor = core.pack_factor if hasattr(core, "pack_factor") else (lambda n_active: 1)
    return sum(len(passes) / factor(n_active) for n_active, passes in pass_groups(series, core))


def dense_passes(core) -> int:
    """Passes a dense operand takes on ``core``: ceil(m / n) terms of n:m are exact."""
    return -(-core.m // core.n)


def series_cycles(series, core, out_rows: int, k: int, cols: int = 1) -> int:
    """Cycles of ``A[out_rows, K] @ X[K, cols]`` with ``A`` decomposed under ``series``
    (``"dense"`` for no decomposition) on ``core``.

    The terms of one output accumulate in the core's accumulator: the compiler streams
    the groups of every pass of a :func:`pass_groups` group back to back inside one dot
    product, so a group of P passes is a dot product P times as long (K padded to a
    multiple of the core's m), priced at its ``n_active`` (:func:`golden.nm.cycles`: a
    packed group covers ``n / n_active`` times the rows per beat). Without packing there
    is one group, at the core's n.
    """
    k_padded = -(-k // core.m) * core.m
    if series in (None, "", "dense"):
        return nm.cycles(core, out_rows, dense_passes(core) * k_padded, cols)
    return sum(nm.cycles(core, out_rows, len(passes) * k_padded, cols, n_active=n_active)
               for n_active, passes in pass_groups(series, core))
