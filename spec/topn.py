"""The activation top-N unit's contract: its config and its stream payloads.

The unit turns dense M-groups into the terms of a TASD series (``golden.tasd.decompose``
on integers); each term is a compressed group in the tensor core's own group layout
(:func:`spec.nm_core.group_layout`), so a term goes to an ``n_t:m`` core's weight port as
it is. The generator is ``hw.topn.TopN``.
"""

import dataclasses

from amaranth.hdl import signed
from amaranth.lib import data

from .config import BlockConfig, ConfigError, SpecError, param
from .nm_core import group_layout
from .numerics import format_series, parse_series

__all__ = ["TopNConfig", "topn_in_layout", "topn_term_layout", "topn_out_layout"]


@dataclasses.dataclass(frozen=True)
class TopNConfig(BlockConfig):
    """Parameters of a top-N unit (frozen; validated on construction).

    Parameters
    ----------
    series : str
        The terms, all with the same group size m (a power of two >= 2), e.g. "2:4+1:4";
        1 <= n_t <= m and the n_t add up to at most m. Stored in canonical form
        (``" 2 : 4 "`` becomes ``"2:4"``).
    width : int
        Activation width in bits (two's complement), >= 2.
    """

    block = "topn"
    ops_unit = "activation"

    series: str = param("2:4", "TASD series of the activations, e.g. 2:4 or 2:4+1:4 (one m)")
    width: int = param(8, "activation width in bits, >= 2")

    def validate(self):
        try:
            terms = parse_series(self.series)
        except SpecError as exc:
            raise ConfigError(str(exc)) from None
        self._canonical("series", format_series(terms))
        ms = {m for _, m in terms}
        if len(ms) != 1:
            raise ConfigError(f"all terms of a top-N unit share one m, not series={self.series!r}")
        (m,) = ms
        if m < 2 or m & (m - 1):
            raise ConfigError(f"m must be a power of two >= 2, not m={m} in series={self.series!r}")
        if sum(n for n, _ in terms) > m:
            raise ConfigError(f"the terms of series={self.series!r} keep more than m={m} elements")
        if self.width < 2:
            raise ConfigError(f"width must be >= 2, not width={self.width!r}")

    @property
    def terms(self) -> tuple[tuple[int, int], ...]:
        return parse_series(self.series)

    @property
    def m(self) -> int:
        return self.terms[0][1]

    @property
    def latency(self) -> int:
        """Cycles from accepting a group to ``o.valid`` (no back-pressure)."""
        return len(self.terms)

    @property
    def ops_per_cycle(self) -> int:
        """Activations decomposed per cycle: one m-group."""
        return self.m


def topn_in_layout(config: TopNConfig) -> data.StructLayout:
    """Input payload: one dense M-group and the ``last`` flag (passed through)."""
    return data.StructLayout({"act": data.ArrayLayout(signed(config.width), config.m), "last": 1})


def topn_term_layout(config: TopNConfig, t: int) -> data.StructLayout:
    """Term ``t``: the tensor core's compressed group for ``n_t:m``
    (:func:`spec.nm_core.group_layout`; no ``indices`` when ``n_t == m``)."""
    n, m = config.terms[t]
    return group_layout(n, m, config.width)


def topn_out_layout(config: TopNConfig) -> data.StructLayout:
    """Output payload: ``terms.t<t>`` per term (:func:`topn_term_layout`) and ``last``."""
    terms = {f"t{t}": topn_term_layout(config, t) for t in range(len(config.terms))}
    return data.StructLayout({"terms": data.StructLayout(terms), "last": 1})
