"""Lower GEAR-compressed K/V tiles onto the reconstruction unit's input streams.

The unit (``hw.gear_unit``) rebuilds one (batch, head) tile at a time from a ``factors``
beat (B, rank > 0 only) and one row beat per token (more when a token has more outliers
than the unit has slots). For each tile, in order::

    factors beat: b[k][d] = fixed.b[batch, head]          (its own stream)
    for each token t:
        outliers of row t, by column, in chunks of `outlier_slots`:
            every chunk but the last: a beat with `more` set (only its slots matter)
            the last chunk: the row beat (codes, a[t], first/last flags)

and every row yields one output transfer. Scale/zero pairs are not sent with every row:
a beat with ``load`` set carries the pairs of the rows *after* it, so the compiler puts
a row's pairs on the beat just before it, and only when they change (every
``group_size`` rows for K tiles, every row for V tiles). The program's first row gets a
beat of its own for that (one extra beat per program), unless it already has a ``more``
beat before it. Words are packed with the hardware's own
layouts (:func:`spec.gear_unit.row_layout` etc.), so there is no second encoder to drift.
The integers come from :func:`golden.gear.to_fixed` (a unit computes in its config's
``fixed_format``) or from any :class:`golden.gear.GearFixed`.
"""

from dataclasses import dataclass, field

import numpy as np

from golden.gear import GearFixed
from spec.gear_unit import GearUnitConfig, factor_layout, out_layout, row_layout
from spec.packing import pack

from . import CompileError

__all__ = ["GearProgram", "lower", "unpack_output"]


@dataclass(frozen=True)
class GearProgram:
    """Tiles lowered onto one unit configuration.

    Members
    -------
    config : GearUnitConfig
    bits : int
        Value to drive on the unit's ``bits`` input.
    factors : list of dict
        ``factors`` payloads, one per tile (empty when ``config.rank == 0``).
    rows : list of dict
        Row-stream payloads in order (fields of :func:`spec.gear_unit.row_layout`).
    tiles : list of (batch, head)
        The tiles in stream order.
    shape : (batch, heads, tokens, head_dim) of the whole tensor
    beats_per_tile : list of int
    """

    config: GearUnitConfig
    bits: int
    factors: list
    rows: list
    tiles: list
    shape: tuple
    beats_per_tile: list = field(default_factory=list)

    @property
    def outputs(self) -> int:
        """Output transfers the program yields (one per row of every tile)."""
        return len(self.tiles) * self.shape[2]

    def packed_rows(self) -> list[int]:
        layout = row_layout(self.config)
        return [pack(layout, r, f"row beat {k}") for k, r in enumerate(self.rows)]

    def packed_factors(self) -> list[int]:
        layout = factor_layout(self.config)
        return [pack(layout, f, f"factor beat {k}") for k, f in enumerate(self.factors)]

    def assemble(self, transfers: list[list[int]]) -> np.ndarray:
        """Place the output rows into ``y[batch, heads, tokens, head_dim]`` (int64); tiles
        not in the program stay 0."""
        t = self.shape[2]
        if len(transfers) != self.outputs:
            raise CompileError(f"expected {self.outputs} output transfers, got {len(transfers)}")
        y = np.zeros(self.shape, dtype=np.int64)
        for n, (b, h) in enumerate(self.tiles):
            y[b, h] = np.asarray(transfers[n * t:(n + 1) * t], dtype=np.int64)
        return y


def _check_range(name, a, lo, hi):
    a = np.asarray(a)
    if a.size and (a.min() < lo or a.max() > hi):
        bad = int(a.min()) if a.min() < lo else int(a.max())
        raise CompileError(f"{name} value {bad} does not fit the unit's field [{lo}, {hi}]")


def lower(config: GearUnitConfig, fixed: GearFixed, bits: int, *, tiles=None,
          filler: np.random.Generator | None = None) -> GearProgram:
    """Lower ``fixed`` (all tiles, or the (batch, head) pairs in ``tiles``) onto ``config``.

    ``bits`` is the code width in use (2 or 4, at most ``config.max_bits``). Factors of a
    lower rank than the unit's are padded with zeros (KIVI and GEAR-L tiles run on a GEAR
    unit). ``filler`` fills what the hardware must ignore with random bits: code bits at
    and above ``bits``, the data fields of ``more`` beats and unused outlier slots
    (testbenches use this).

    Raises
    ------
    CompileError
        A field that does not fit its width, a rank above the unit's, scale/zero pairs that
        differ inside one of the unit's lane groups, a row with outliers on a unit without
        outlier slots, or a tile whose head_dim is not the unit's.
    """
    cfg = config
    bsz, heads, tokens, head_dim = fixed.codes.shape
    if head_dim != cfg.head_dim:
        raise CompileError(f"tiles have head_dim={head_dim}, the unit has head_dim={cfg.head_dim}")
    if not 0 <= bits <= cfg.max_bits:
        raise CompileError(f"bits={bits} is not in 0..max_bits={cfg.max_bits}")
    rank = fixed.a.shape[-1]
    if rank > cfg.rank:
        raise CompileError(f"tiles have rank {rank}, more than the unit's rank={cfg.rank}")
    _check_range("code", fixed.codes, 0, (1 << bits) - 1)
    _check_range("scale", fixed.scale, 0, (1 << cfg.scale_width) - 1)
    zlim = 1 << (cfg.zero_width - 1)
    _check_range("zero", fixed.zero, -zlim, zlim - 1)
    flim = 1 << (cfg.factor_width - 1)
    _check_range("factor a", fixed.a, -flim, flim - 1)
    _check_range("factor b", fixed.b, -flim, flim - 1)
    olim = 1 << (cfg.out_width - 1)
    _check_range("outlier", fixed.outlier_val, -olim, olim - 1)
    if tiles is None:
        tiles = [(b, h) for b in range(bsz) for h in range(heads)]

    g = cfg.group_size
    scale = fixed.scale.reshape(bsz, heads, tokens, cfg.pairs, g)
    zero = fixed.zero.reshape(bsz, heads, tokens, cfg.pairs, g)
    if g > 1 and (np.any(scale != scale[..., :1]) or np.any(zero != zero[..., :1])):
        where = tuple(int(i) for i in np.argwhere((scale != scale[..., :1]) | (zero != zero[..., :1]))[0])
        raise CompileError(f"scale/zero differ inside a group of group_size={g} lanes at "
                           f"(batch, head, token, group, lane)={where}: this tile needs a unit "
                           f"with a smaller group_size (K tiles need group_size=1)")
    a = np.zeros((bsz, heads, tokens, cfg.rank), dtype=np.int64)
    b = np.zeros((bsz, heads, cfg.rank, head_dim), dtype=np.int64)
    a[..., :rank] = fixed.a
    b[:, :, :rank] = fixed.b

    def rand(lo, hi, size=None):
        return filler.integers(lo, hi, size) if filler is not None else (0 if size is None else np.zeros(size, dtype=np.int64))

    slots = cfg.outlier_slots

    def ignored_pairs():
        return {"scale": [int(v) for v in rand(0, 1 << cfg.scale_width, cfg.pairs)],
                "zero": [int(v) for v in rand(-zlim, zlim, cfg.pairs)]}

    def extra_beat(flags):
        """A beat that yields no row: its data fields are ignored."""
        beat = {"codes": [int(v) for v in rand(0, 1 << cfg.max_bits, head_dim)],
                **ignored_pairs(), "load": 0, "more": 1}
        if cfg.rank:
            beat["a"] = [int(v) for v in rand(-flim, flim, cfg.rank)]
            beat.update(flags)      # `first` gates every beat of a tile's first row
        if slots:
            beat["outliers"] = [empty_slot() for _ in range(slots)]
        return beat

    def empty_slot():
        return {"col": int(rand(0, 1 << cfg.col_width)), "value": int(rand(-olim, olim)), "valid": 0}

    factors, beats, needs, beats_per_tile = [], [], [], []
    for (bi, hi_) in tiles:
        if cfg.rank:
            factors.append({"b": [[int(v) for v in b[bi, hi_, k]] for k in range(cfg.rank)]})
        pos = fixed.outlier_pos[bi, hi_]
        val = fixed.outlier_val[bi, hi_]
        order = np.argsort(pos, kind="stable")
        pos, val = pos[order], val[order]
        n_beats = 0
        for t in range(tokens):
            sel = (pos // head_dim) == t
            cols, vals = (pos[sel] % head_dim).tolist(), val[sel].tolist()
            if cols and not slots:
                raise CompileError(f"row {t} of tile (batch={bi}, head={hi_}) has {len(cols)} "
                                   f"outliers but the unit has outlier_slots=0")
            chunks = [list(zip(cols[i:i + slots], vals[i:i + slots]))
                      for i in range(0, len(cols), max(slots, 1))] or [[]]
            flags = {"first": int(t == 0), "last": int(t == tokens - 1)} if cfg.rank else {}
            for n, chunk in enumerate(chunks):
                beat = extra_beat(flags)
                if n == len(chunks) - 1:          # the row's data
                    codes = fixed.codes[bi, hi_, t]
                    if bits < cfg.max_bits and filler is not None:
                        codes = codes + (filler.integers(0, 1 << (cfg.max_bits - bits), head_dim) << bits)
                    beat["codes"] = [int(c) for c in codes]
                    beat["more"] = 0
                    if cfg.rank:
                        beat["a"] = [int(v) for v in a[bi, hi_, t]]
                for j, (col, value) in enumerate(chunk):
                    beat["outliers"][j] = {"col": int(col), "value": int(value), "valid": 1}
                beats.append(beat)
                needs.append((tuple(int(v) for v in scale[bi, hi_, t, :, 0]),
                              tuple(int(v) for v in zero[bi, hi_, t, :, 0])) if not beat["more"] else None)
                n_beats += 1
        beats_per_tile.append(n_beats)

    # Scale/zero pairs load with the beat *before* the row that needs them (a register
    # loaded at that beat's transfer); the program's first row gets a beat of its own
    # unless it already has one before it.
    if beats and needs[0] is not None:
        beats.insert(0, extra_beat({k: beats[0][k] for k in ("first", "last") if k in beats[0]}))
        needs.insert(0, None)
        beats_per_tile[0] += 1
    current = None
    for n, need in enumerate(needs):
        if need is not None and need != current:
            beats[n - 1].update({"scale": list(need[0]), "zero": list(need[1]), "load": 1})
            current = need
    rows = beats
    return GearProgram(cfg, bits, factors, rows, list(tiles), (bsz, heads, tokens, head_dim),
                       beats_per_tile)


def unpack_output(config: GearUnitConfig, bits: int) -> list[int]:
    """Split an output payload into its ``head_dim`` signed values."""
    word = out_layout(config).from_bits(bits)
    return [word[d] for d in range(config.head_dim)]
