"""Lower a 2-D convolution onto the accelerator without an im2col copy.

Layouts (channels innermost, m-groups: ``CG = ceil(C / m)`` activation rows per pixel):

* input: each image a zero-bordered NHWC block of ``Hp x Wp`` pixels (``Hp = H + 2p``),
  pixel ``(y, x)`` at rows ``(y * Wp + x) * CG_in``: the producer writes the interior, the
  border stays zero;
* weights: per kernel row ``ky``, every output block's rows, pass after pass:
  row ``ky * (blocks * P * G) + (b * P + p) * G + g`` with ``G = kw * CG_in`` groups
  ordered ``(kx, cg)``;
* output: per image ``(Ho + 2q) x (Wo + 2q)`` pixels of ``CG_out`` rows (``q``: the
  padding the consumer needs), the interior written.

For output row ``oy`` and kernel row ``ky``, the groups an output pixel ``ox`` needs are
the ``kw * CG_in`` consecutive rows from pixel ``(oy*s + ky, ox*s)``, and the next pixel's
start ``s * CG_in`` rows later: one GEMM (``cols = Wo``, ``act_stride = s * CG_in``) per
``(oy, ky)``, the ``kh`` of an output row accumulating, then one POST per output row.

Tiles are ``(image, block tile)``; the weights of a block tile, the image and the output
are double buffered when two of each fit (``nbuf = 2``), else single (``nbuf = 1``). The
token rules are those of :mod:`compiler.gemm` with ``nbuf`` in place of 2. With ``pack``
(a packing machine, :func:`compiler.gemm.product_pack`) a block is ``rows << pack``
output channels, as in :mod:`compiler.gemm`.
"""

from dataclasses import dataclass

import numpy as np

from spec.accel import AcceleratorConfig
from spec.isa import Mem, Opcode

from . import CompileError
from .gemm import pack_slots
from .program import Program, Region, wgt_rows

__all__ = ["ConvShape", "conv_plan", "lower_conv", "conv_weight_rows"]


@dataclass(frozen=True)
class ConvShape:
    """``images`` images of ``c_in x h x w`` (already padded by ``pad``) -> ``c_out``
    channels, ``kernel`` ``kh x kw``, ``stride``; ``out_pad``: the consumer's padding."""

    images: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    stride: int
    pad: int
    out_pad: int = 0
    passes: int = 1

    def groups(self, m: int) -> tuple[int, int]:
        return -(-self.c_in // m), -(-self.c_out // m)

    @property
    def hp(self) -> int:
        return self.h + 2 * self.pad

    @property
    def wp(self) -> int:
        return self.w + 2 * self.pad

    @property
    def ho(self) -> int:
        return (self.hp - self.kh) // self.stride + 1

    @property
    def wo(self) -> int:
        return (self.wp - self.kw) // self.stride + 1


@dataclass(frozen=True)
class ConvPlan:
    rb: int             # blocks per block tile
    n_bt: int           # block tiles
    nbuf: int           # 1 or 2


def conv_plan(cfg: AcceleratorConfig, s: ConvShape, pack: int = 0) -> ConvPlan:
    """Block tiles and buffering that fit the scratchpads."""
    cg_in, cg_out = s.groups(cfg.m)
    br = cfg.block_rows(pack)
    blocks = -(-s.c_out // br)
    per_block = s.kh * s.passes * s.kw * cg_in                  # weight rows per block
    image_rows = s.hp * s.wp * cg_in
    out_rows = s.ho * s.wo * cg_out
    c_pad = blocks * br
    if c_pad > cfg.param_rows:
        raise CompileError(f"{s.c_out} output channels need {c_pad} parameter rows, the machine has "
                           f"{cfg.param_rows}")
    step = max(1, cfg.m // br)
    for nbuf in (2, 1):
        if nbuf * (image_rows + out_rows) > cfg.act_rows:
            continue
        top = min(blocks, cfg.wgt_rows // (nbuf * per_block))
        rb = top - top % step if top >= step else 0
        if rb >= 1 and rb * s.wo <= cfg.acc_rows:
            return ConvPlan(rb, -(-blocks // rb), nbuf)
        if rb >= 1:
            rb = max(step, (cfg.acc_rows // s.wo) // step * step)
            if rb * s.wo <= cfg.acc_rows and nbuf * rb * per_block <= cfg.wgt_rows:
                return ConvPlan(rb, -(-blocks // rb), nbuf)
    raise CompileError(f"a {s.c_in}x{s.h}x{s.w} -> {s.c_out} convolution ({s.kh}x{s.kw}) does not fit the "
                       f"scratchpads: an image needs {image_rows} + {out_rows} activation rows "
                       f"(the machine has {cfg.act_rows}), a block {per_block} weight rows ({cfg.wgt_rows})")


def conv_weight_rows(cfg: AcceleratorConfig, values: np.ndarray, indices: np.ndarray | None,
                     s: ConvShape, pack: int = 0) -> bytes:
    """Compressed weights ``values[P, C_out, kh, kw*CG_in, n]`` (``indices`` likewise, or
    None for a dense core) -> weight rows in the layout of the module docstring (with
    ``pack``: slots ``< n >> pack`` only, :func:`compiler.gemm.pack_slots`)."""
    v = np.asarray(values)
    passes, c_out, kh, g, n = v.shape
    if pack and np.any(v[..., cfg.n >> pack:]):
        raise CompileError(f"pack={pack} leaves {cfg.n >> pack} slots per logical row; the weights use more")
    br = cfg.block_rows(pack)
    blocks = -(-c_out // br)
    full_v = np.zeros((passes, blocks * br, kh, g, cfg.n), np.int64)
    full_i = np.zeros_like(full_v)
    full_v[:, :c_out, :, :, :n] = v
    if indices is not None:
        full_i[:, :c_out, :, :, :n] = indices
    full_v, full_i = pack_slots(cfg, full_v, pack), pack_slots(cfg, full_i, pack)
    # row ky * (B P G) + (b P + p) G + g, lane r  <-  [p, b*rows + r, ky, g]
    def shaped(a):
        return a.reshape(passes, blocks, cfg.rows, kh, g, cfg.n).transpose(3, 1, 0, 4, 2, 5) \
            .reshape(kh * blocks * passes * g, cfg.rows, cfg.n)
    return wgt_rows(cfg, shaped(full_v), shaped(full_i) if cfg.core.sparse else None)


def lower_conv(prog: Program, s: ConvShape, *, x: Region, w: Region, params: Region, y: Region,
               n_active: int, relu: bool, first_pop: bool = False, last_push: bool = False,
               pack: int = 0) -> ConvPlan:
    """Append the instructions of one convolution (module docstring) to ``prog``."""
    cfg = prog.config
    plan = conv_plan(cfg, s, pack)
    cg_in, cg_out = s.groups(cfg.m)
    br = cfg.block_rows(pack)
    blocks = -(-s.c_out // br)
    g = s.kw * cg_in
    per_block = s.kh * s.passes * g
    image_rows, out_rows = s.hp * s.wp * cg_in, s.ho * s.wo * cg_out
    nbuf = plan.nbuf
    pitch = {mem: cfg.pitch(mem) for mem in ("act", "wgt", "param")}
    wgt_buf = plan.rb * per_block
    wop, hop = s.wo + 2 * s.out_pad, s.ho + 2 * s.out_pad
    total = s.images * plan.n_bt
    t = 0
    for image in range(s.images):
        ib = image % nbuf
        image_base = ib * image_rows
        out_base = nbuf * image_rows + ib * out_rows
        for j in range(plan.n_bt):
            b0 = j * plan.rb
            rb = min(plan.rb, blocks - b0)
            wb = (t % nbuf) * wgt_buf
            # ---- loads
            pop = t >= nbuf or (first_pop and t == 0)
            for ky in range(s.kh):
                prog.emit(Opcode.LOAD, mem=Mem.WGT, sram=wb + ky * rb * s.passes * g,
                          dram=w.addr + (ky * blocks * s.passes * g + b0 * s.passes * g) * pitch["wgt"],
                          y_size=1, x_size=rb * s.passes * g, pop_next=int(pop and ky == 0))
            if j == 0:
                prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=image_base, dram=x.addr + image * image_rows * pitch["act"],
                          y_size=1, x_size=image_rows)
            if t == 0:
                prog.emit(Opcode.LOAD, mem=Mem.PARAM, sram=0, dram=params.addr, y_size=1, x_size=blocks * br)
            prog.emit(Opcode.LOAD, mem=Mem.ACT, push_next=1)
            # ---- compute: per output row, kh GEMMs then a POST
            lanes = min(rb * br, -(-s.c_out // cfg.m) * cfg.m - b0 * br)
            last_tile_of_image = j == plan.n_bt - 1
            for oy in range(s.ho):
                for ky in range(s.kh):
                    first = oy == 0 and ky == 0
                    prog.emit(Opcode.GEMM, wgt=wb + ky * rb * s.passes * g,
                              act=image_base + ((oy * s.stride + ky) * s.wp) * cg_in, acc=0,
                              row_blocks=rb, cols=s.wo, k_groups=g, passes=s.passes, act_stride=s.stride * cg_in,
                              n_active=n_active, pack=pack, accumulate=int(ky > 0), pop_prev=int(first))
                last = oy == s.ho - 1
                prog.emit(Opcode.POST, acc=0, act=out_base + oy * s.wo * cg_out + b0 * br // cfg.m, param=b0 * br,
                          row_blocks=rb, cols=s.wo, out_stride=cg_out, lanes=lanes, relu=int(relu), pack=pack,
                          pop_next=int(oy == 0 and j == 0 and image >= nbuf),
                          push_prev=int(last and t + nbuf < total),
                          push_next=int(last and last_tile_of_image))
            t += 1
        # ---- store the image's output into the consumer's zero-bordered layout
        push = image + nbuf < s.images or (image == s.images - 1 and last_push)
        prog.emit(Opcode.STORE, mem=Mem.ACT, sram=out_base,
                  dram=y.addr + (image * hop * wop + s.out_pad * wop + s.out_pad) * cg_out * pitch["act"],
                  y_size=s.ho, x_size=s.wo * cg_out, y_stride=wop * cg_out * pitch["act"], pop_prev=1,
                  push_prev=int(push))
    return plan
