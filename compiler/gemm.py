"""Lower one matrix product onto the accelerator: tiles, double buffering, tokens.

``Y[R, C] = requant(W[R, K] @ X[K, C])`` (int8 in, int8 out; or the int32 accumulators)
with ``W`` N':M-compressed (any N' <= the core's n, or a TASD series as ``passes`` terms).

DRAM layouts (the compiler's convention, one "column" = one token or pixel):

* ``X``: column-major groups: activation row ``c * G + g`` holds ``X[g*m:(g+1)*m, c]``
  (``G = K / m``), i.e. ``X.T`` row-major with channels innermost (NHWC).
* ``W``: weight row ``(b * P + p) * G + g`` holds pass ``p``'s group ``g`` of the ``B``
  output rows of block ``b`` (``B = rows``, or ``rows << pack`` packed: below).
* ``Y``: like ``X``: activation row ``c * (R / m) + r // m``; with ``acc_out`` the int32
  accumulators instead: accumulator row ``b * C + c`` (lanes ``0 .. B - 1``).

Packing (a machine with ``packing``, :func:`product_pack`): a product whose groups hold at
most ``n_active = n >> k`` non-zeros runs with ``pack = k``: each core row computes ``2^k``
logical rows, so a block is ``B = rows << k`` output rows and the product takes ``2^k``
times fewer beats. Logical row ``r * 2^k + q`` of a block sits in core row ``r``'s weight
slots ``q * n_active ...`` (:func:`spec.nm_core.logical_slot`; :func:`pack_slots`).

Tiling: ``RB`` row blocks x ``CT`` columns x ``GT`` groups per tile, chosen so that two of
everything fit the scratchpads (double buffering: tile ``t`` uses buffer ``t % 2``). The
loops run row-block tiles (weights stay resident while every column tile streams past),
then column tiles, then K tiles (accumulating). Tokens (docs/isa.md):

* load -> compute: the tile's weights (when a new row-block tile starts), activations and
  parameters are in;
* compute -> load: the compute unit is done with buffer ``t % 2`` (pushed by the tile's
  last instruction when tile ``t + 2`` will reload that buffer);
* compute -> store: the tile's output is in its buffer;
* store -> compute: the store unit is done with the output buffer (popped by the POST, or
  the first GEMM with ``acc_out``, of tile ``t + 2``).
"""

from dataclasses import dataclass

import numpy as np
from amaranth.utils import exact_log2

from spec.accel import AcceleratorConfig
from spec.isa import Mem, Opcode

from . import CompileError
from .program import Program, Region, act_rows, param_rows, wgt_rows

__all__ = ["GemmShape", "Tiling", "plan_tiles", "lower_gemm", "x_rows", "w_rows", "p_rows",
           "padded_rows", "product_pack", "pack_slots"]


@dataclass(frozen=True)
class GemmShape:
    """``R`` output rows (channels), ``K`` reduction length, ``C`` columns, ``P`` passes."""

    rows: int
    k: int
    cols: int
    passes: int = 1


@dataclass(frozen=True)
class Tiling:
    """Row blocks, columns and groups per tile, and how many tiles of each."""

    rb: int
    ct: int
    gt: int
    n_rb: int
    n_ct: int
    n_gt: int

    @property
    def tiles(self) -> int:
        return self.n_rb * self.n_ct * self.n_gt


def product_pack(cfg: AcceleratorConfig, n_active: int) -> int:
    """The ``pack`` of a product whose groups hold at most ``n_active`` non-zeros:
    ``log2(n / n_active)`` on a packing machine when ``n_active`` divides n (below n),
    else 0 (``spec.nm_core.NMCoreConfig.pack_factor``)."""
    return exact_log2(cfg.core.pack_factor(n_active)) if cfg.packing else 0


def pack_slots(cfg: AcceleratorConfig, a: np.ndarray, pack: int) -> np.ndarray:
    """Per-logical-row groups ``a[P, B * blocks, ..., n]`` (slots beyond ``n >> pack``
    empty) -> per-core-row groups ``a[P, rows * blocks, ..., n]``: logical row ``r * 2^pack
    + q`` of a block into core row ``r``'s slots ``q * (n >> pack) ...``."""
    if not pack:
        return a
    k, slots = 1 << pack, cfg.n >> pack
    passes, logical, *mid, _ = a.shape
    a = a[..., :slots].reshape(passes, logical // k, k, *mid, slots)
    return np.moveaxis(a, 2, -2).reshape(passes, logical // k, *mid, cfg.n)


def _blocks(cfg: AcceleratorConfig, shape: GemmShape, pack: int = 0) -> tuple[int, int]:
    if shape.k % cfg.m:
        raise CompileError(f"K={shape.k} is not a multiple of the core's m={cfg.m}: pad it first")
    return -(-shape.rows // cfg.block_rows(pack)), shape.k // cfg.m


def plan_tiles(cfg: AcceleratorConfig, shape: GemmShape, *, acc_out: bool = False, pack: int = 0) -> Tiling:
    """The largest tiles that fit twice in every scratchpad (see the module docstring):
    all of K if possible, then as many columns as possible (the weights are reused across
    them), then row blocks (of ``rows << pack`` output rows)."""
    blocks, groups = _blocks(cfg, shape, pack)
    br = cfg.block_rows(pack)
    p = shape.passes
    half = {mem: cfg.depth(mem) // 2 for mem in ("act", "wgt", "acc", "param")}
    out_rows_per_col = lambda rb: -(-rb * br // cfg.m)          # noqa: E731
    for gt in _divisor_sizes(groups):
        if p * gt > half["wgt"]:
            continue
        # Output tiles start at whole m-groups of channels: rb * br is a multiple of m.
        step = max(1, cfg.m // br)
        top = min(blocks, half["wgt"] // (p * gt), half["param"] // br)
        for rb in range(top - top % step if top >= step else 0, 0, -step):
            # act: the input tile (ct * gt rows) and the output tile (ct * rows_per_col) per buffer
            per_col = gt + (0 if acc_out else out_rows_per_col(rb))
            ct = min(shape.cols, half["act"] // per_col, half["acc"] // rb, 4095)
            if ct >= 1:
                return Tiling(rb, ct, gt, -(-blocks // rb), -(-shape.cols // ct), -(-groups // gt))
    raise CompileError(f"a {shape.rows}x{shape.k}x{shape.cols} product does not fit the scratchpads "
                       f"(act {cfg.act_rows}, wgt {cfg.wgt_rows}, acc {cfg.acc_rows} rows) even in the "
                       "smallest tiles")


def _divisor_sizes(groups: int) -> list[int]:
    """K-tile sizes to try, largest first: all of K, then halves (the last tile may be short)."""
    sizes, g = [], groups
    while g >= 1:
        sizes.append(g)
        g = g // 2 if g > 1 else 0
    return sizes


def lower_gemm(prog: Program, shape: GemmShape, *, x: Region, w: Region, params: Region | None,
               y: Region, n_active: int, relu: bool = False, acc_out: bool = False,
               tiling: Tiling | None = None, first_pop: bool = False, last_push: bool = False,
               pack: int = 0) -> Tiling:
    """Append the instructions of one product to ``prog`` (regions in its DRAM layout,
    module docstring; ``w`` and ``params`` written with the same ``pack``). ``first_pop``:
    the first load waits for a compute->load token (a previous layer's output is in DRAM);
    ``last_push``: the last store pushes a store->compute token (for whatever runs next).
    Returns the tiling used."""
    cfg = prog.config
    blocks, groups = _blocks(cfg, shape, pack)
    br = cfg.block_rows(pack)
    t = tiling or plan_tiles(cfg, shape, acc_out=acc_out, pack=pack)
    p = shape.passes
    half = {mem: cfg.depth(mem) // 2 for mem in ("act", "wgt", "acc", "param")}
    pitch = {mem: cfg.pitch(mem) for mem in ("act", "wgt", "acc", "param")}
    out_per_col = -(-t.rb * br // cfg.m)
    in_size, out_size = t.ct * t.gt, t.ct * out_per_col     # act rows of one input / output buffer
    r_groups = -(-shape.rows // cfg.m)                     # output rows (m-groups) per column in DRAM
    total, n_out = t.tiles, t.n_rb * t.n_ct
    index = out_index = 0
    for ri in range(t.n_rb):
        b0 = ri * t.rb
        rb = min(t.rb, blocks - b0)
        lanes = min(rb * br, shape.rows - b0 * br)
        # Output rows per column of this row tile: POST writes them, STORE takes them, at
        # the same stride (a short last row tile has fewer than out_per_col).
        out_groups = -(-lanes // cfg.m)
        for ci in range(t.n_ct):
            c0 = ci * t.ct
            ct = min(t.ct, shape.cols - c0)
            obuf = out_index % 2                               # accumulators, output, parameters
            acc_base, param_base = obuf * half["acc"], obuf * half["param"]
            act_out = 2 * in_size + obuf * out_size
            out_reuse = out_index + 2 < n_out                  # output tile + 2 reuses obuf
            last_out = out_index == n_out - 1
            for gi in range(t.n_gt):
                g0 = gi * t.gt
                gt = min(t.gt, groups - g0)
                buf = index % 2                                # activations and weights in
                act_in, wgt_base = buf * in_size, buf * half["wgt"]
                reuse = index + 2 < total
                last_k = gi == t.n_gt - 1
                # ---- loads: weights, activations (and, for the last K tile, parameters)
                pop_free = index >= 2 or (first_pop and index == 0)
                prog.emit(Opcode.LOAD, mem=Mem.WGT, sram=wgt_base,
                          dram=w.addr + (b0 * p * groups + g0) * pitch["wgt"],
                          y_size=rb * p, x_size=gt, y_stride=groups * pitch["wgt"], pop_next=int(pop_free))
                prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=act_in, dram=x.addr + (c0 * groups + g0) * pitch["act"],
                          y_size=ct, x_size=gt, y_stride=groups * pitch["act"])
                if params is not None and last_k and not acc_out:
                    prog.emit(Opcode.LOAD, mem=Mem.PARAM, sram=param_base,
                              dram=params.addr + b0 * br * pitch["param"], y_size=1,
                              x_size=min(-(-lanes // cfg.m) * cfg.m, rb * br))
                prog.emit(Opcode.LOAD, mem=Mem.ACT, push_next=1)
                # ---- compute
                prog.emit(Opcode.GEMM, wgt=wgt_base, act=act_in, acc=acc_base, row_blocks=rb, cols=ct, k_groups=gt,
                          passes=p, act_stride=gt, n_active=n_active, pack=pack, accumulate=int(gi > 0), pop_prev=1,
                          pop_next=int(acc_out and gi == 0 and out_index >= 2),
                          push_prev=int(reuse and (acc_out or not last_k)),
                          push_next=int(acc_out and last_k))
                if last_k and not acc_out:
                    whole = min(-(-lanes // cfg.m) * cfg.m, rb * br)    # pad lanes give 0
                    prog.emit(Opcode.POST, acc=acc_base, act=act_out, param=param_base, row_blocks=rb, cols=ct,
                              out_stride=out_groups, lanes=whole, relu=int(relu), pack=pack,
                              pop_next=int(out_index >= 2), push_prev=int(reuse), push_next=1)
                index += 1
            # ---- store the finished output tile
            push = int(out_reuse or (last_out and last_push))
            if acc_out:
                prog.emit(Opcode.STORE, mem=Mem.ACC, sram=acc_base, dram=y.addr + (b0 * shape.cols + c0) * pitch["acc"],
                          y_size=rb, x_size=ct, y_stride=shape.cols * pitch["acc"], pop_prev=1, push_prev=push)
            else:
                prog.emit(Opcode.STORE, mem=Mem.ACT, sram=act_out,
                          dram=y.addr + (c0 * r_groups + b0 * br // cfg.m) * pitch["act"],
                          y_size=ct, x_size=out_groups, y_stride=r_groups * pitch["act"],
                          pop_prev=1, push_prev=push)
            out_index += 1
    return t


def padded_rows(cfg: AcceleratorConfig, rows: int, pack: int = 0) -> int:
    """Output rows (channels) a product occupies: whole blocks and whole m-groups."""
    step = max(cfg.block_rows(pack), cfg.m)
    return -(-rows // step) * step


def x_rows(cfg: AcceleratorConfig, x: np.ndarray) -> bytes:
    """``X[K, C]`` int8 -> activation rows in the module's layout (K a multiple of m)."""
    k, c = x.shape
    if k % cfg.m:
        raise CompileError(f"K={k} is not a multiple of m={cfg.m}: pad it first")
    return act_rows(cfg, np.asarray(x).T.reshape(c * (k // cfg.m), cfg.m))


def w_rows(cfg: AcceleratorConfig, values: np.ndarray, indices: np.ndarray | None, pack: int = 0) -> bytes:
    """Compressed weights ``values[P, R, G, n]`` (and ``indices``; ``P`` passes) -> weight
    rows in the module's layout, the rows padded with zero weights to whole blocks; with
    ``pack``, only slots ``< n >> pack`` may hold weights (:func:`pack_slots`)."""
    v = np.asarray(values)
    if v.ndim == 3:
        v = v[None]
        indices = None if indices is None else np.asarray(indices)[None]
    passes, rows, groups, n = v.shape
    if n > cfg.n:
        raise CompileError(f"{n} weight slots do not fit the core's n={cfg.n}")
    if pack and np.any(v[..., cfg.n >> pack:]):
        raise CompileError(f"pack={pack} leaves {cfg.n >> pack} slots per logical row; the weights use more")
    blocks = -(-rows // cfg.block_rows(pack))
    full_v = np.zeros((passes, blocks * cfg.block_rows(pack), groups, cfg.n), np.int64)
    full_i = np.zeros_like(full_v)
    full_v[:, :rows, :, :n] = v
    if indices is not None:
        full_i[:, :rows, :, :n] = indices
    full_v, full_i = pack_slots(cfg, full_v, pack), pack_slots(cfg, full_i, pack)
    # row (b * P + p) * G + g, lane r  <-  [p, b * rows + r, g, :]
    shaped = lambda a: a.reshape(passes, blocks, cfg.rows, groups, cfg.n).transpose(1, 0, 3, 2, 4) \
        .reshape(blocks * passes * groups, cfg.rows, cfg.n)                 # noqa: E731
    return wgt_rows(cfg, shaped(full_v), shaped(full_i) if cfg.core.sparse else None)


def p_rows(cfg: AcceleratorConfig, bias, mult, shift, rows: int, pack: int = 0) -> bytes:
    """Per-channel POST parameters padded to :func:`padded_rows` with zeros (mult 0: the
    padding channels come out 0)."""
    padded = padded_rows(cfg, rows, pack)
    out = [np.zeros(padded, np.int64) for _ in range(3)]
    for o, a in zip(out, (bias, mult, shift)):
        o[:rows] = np.asarray(a).reshape(-1)
    return param_rows(cfg, *out)
