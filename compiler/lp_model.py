"""An LPQ-quantized model onto the LP array (GEMM ``unit = 1``, docs/isa.md).

``compile_lp_model(model, genes, config, example)``: every ``nn.Conv2d`` / ``nn.Linear``
of ``model`` runs on the machine's LP array in the LP format LPQ chose for it
(:class:`golden.lpq.LayerGene`); everything between them (ReLU, pooling, flatten) and the
LP encoding of each layer's input runs on the host, in torch, as the model's own
forward does (the machine's POST requantizes to int8, not to LP codes).

Per layer
---------
* The layer's format must be the array's: ``(n, es, rs)`` are fixed when the machine is
  generated (:attr:`spec.accel.AcceleratorConfig.lp_format`); ``sf_w + sf_a`` is the
  GEMM's runtime ``sf`` field and must fit it (``-32..31``). Either failing is a
  :class:`compiler.CompileError` naming the layer.
* Weights: ``W[R, K]`` as LP codes (``LayerGene.weight_format().encode``; a convolution
  as ``[out, in * kh * kw]``, the order of ``torch.nn.functional.unfold``), padded with
  zero codes to whole ``rows`` x ``m`` tiles; in DRAM as activation rows, tile ``t = b * G
  + g`` at rows ``t * rows ... + rows - 1`` (row ``r``: output ``b * rows + r``, inputs
  ``g * m ...``).
* Inputs: ``X[C, K]`` codes (``input_format().encode``; a convolution's columns are its
  ``unfold`` patches, image by image), activation row ``c * G + g``.
* The program: single-buffered tiles of ``RB`` row blocks x ``CT`` columns x ``GT``
  groups (:func:`plan_lp_tiles`, the cheapest by the exact compute cycles plus one
  cycle per loaded row); per tile LOAD the weight tiles and the inputs into ``act``, GEMM
  on unit 1 (accumulating over K tiles), and after the last K tile STORE the
  accumulators (row ``b * C + c``, lane ``r``: int32 in units of ``2^-acc_frac``). Tokens
  hand ``act`` back to the loads and ``acc`` back to the next output tile.
* The output: ``acc / 2^acc_frac + bias`` (float; the bias is the layer's float bias, as
  ``golden.lpq.pe_accuracy`` adds it).

:meth:`LPCompiledModel.reference` computes the same accumulators without the machine
from ``golden.pe_array.array_products`` (each K group's row sum wrapped to the array's
accumulator, the groups summed in 32 bits): what the ISS must equal exactly.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from golden.lp import LPFormat
from golden.lpq import LayerGene, quantizable_layers
from golden.pe_array import array_products
from spec.accel import AcceleratorConfig
from spec.isa import Mem, Opcode
from spec.numerics import wrap

from . import CompileError
from .program import Program, act_rows, unpack_acc_rows

__all__ = ["LPLayer", "LPTiling", "LPCompiledModel", "compile_lp_model", "plan_lp_tiles", "check_lp_gene"]

#: The GEMM ``sf`` field's range (signed 6 bits, spec.isa).
SF_RANGE = range(-32, 32)


@dataclass(frozen=True)
class LPTiling:
    """Row blocks, columns and groups per tile."""

    rb: int
    ct: int
    gt: int


def check_lp_gene(config: AcceleratorConfig, name: str, gene: LayerGene) -> int:
    """The GEMM ``sf`` of layer ``name`` in ``gene`` on ``config``'s LP array; raises
    :class:`CompileError` unless the machine has the array, the layer's format is the
    array's, and ``sf + sf_a`` fits the field."""
    if not config.lp:
        raise CompileError(f"{name}: the machine has no LP array (AcceleratorConfig.lp is empty)")
    fmt = (gene.n, gene.es, gene.rs)
    if fmt != config.lp_format:
        raise CompileError(f"{name}: its LP format LP<{gene.n},{gene.es},{gene.rs}> is not the array's "
                           f"LP<{config.lp}> (n, es, rs are fixed when the machine is generated)")
    sf = gene.sf + gene.sf_a
    pe_range = config.lp_array.pe().sf_range
    if sf not in SF_RANGE or sf not in pe_range:
        raise CompileError(f"{name}: its scale sf_w + sf_a = {gene.sf} + {gene.sf_a} = {sf} does not fit "
                           f"the GEMM sf field ({SF_RANGE.start}..{SF_RANGE.stop - 1})")
    return sf


def plan_lp_tiles(cfg: AcceleratorConfig, blocks: int, groups: int, cols: int) -> LPTiling:
    """The tiling with the fewest cycles (compute exactly, plus a row per loaded row)
    whose weight tiles and inputs fit ``act`` together and whose outputs fit ``acc``."""
    rows, best = cfg.rows, None
    for rb in range(1, blocks + 1):
        for gt in range(1, groups + 1):
            room = cfg.act_rows - rb * gt * rows
            ct = min(cols, room // gt if room > 0 else 0, cfg.acc_rows // rb, 4095)
            if ct < 1:
                continue
            n_tiles = -(-blocks // rb) * -(-cols // ct) * -(-groups // gt)
            cost = n_tiles * (rb * gt * (2 * rows + ct + 4) + ct * gt + 3)
            if best is None or cost < best[0]:
                best = (cost, LPTiling(rb, ct, gt))
    if best is None:
        raise CompileError(f"no LP tile fits: {rows} act rows per weight tile plus one input column "
                           f"exceed act_rows={cfg.act_rows}")
    return best[1]


def _codes_as_bytes(codes: np.ndarray) -> np.ndarray:
    """LP codes (0..255) as the int8 values of their act bytes."""
    return codes.astype(np.uint8).view(np.int8).astype(np.int64)


@dataclass(eq=False)
class LPLayer:
    """One layer on the LP array: its codes, its program and where its data sit."""

    name: str
    gene: LayerGene
    sf: int
    weights: np.ndarray          # [blocks * rows, G * m] codes
    bias: np.ndarray             # float, [out]
    out: int                     # output features (channels)
    k: int                       # reduction length before padding
    cols: int                    # columns per run (batch * positions)
    dram: bytes = b""
    prog_addr: int = 0
    prog_len: int = 0
    regions: dict = field(default_factory=dict)
    tiling: LPTiling | None = None


class LPCompiledModel:
    """A model compiled onto the LP array (module docstring). ``segments`` are its layers
    in order (one program each), as ``verif.model_run.rtl_backend`` runs them."""

    def __init__(self, config, model, genes, layers, shapes):
        self.config, self.model, self.genes = config, model, genes
        self.layers = layers                     # name -> LPLayer
        self.segments = list(layers.values())
        self.shapes = shapes                     # name -> input shape (the example's)

    # ---- the host side of a layer ----------------------------------------------------
    def _columns(self, name: str, x: torch.Tensor) -> np.ndarray:
        """The layer's input codes ``[C, K]`` for input ``x`` (float)."""
        mod = dict(self.model.named_modules())[name]
        xin = x.detach().double()
        if isinstance(mod, nn.Conv2d):
            patches = nn.functional.unfold(xin, mod.kernel_size, padding=mod.padding, stride=mod.stride,
                                           dilation=mod.dilation).numpy()           # [N, K, L]
            xin = patches.transpose(0, 2, 1).reshape(-1, patches.shape[1])
        else:
            xin = xin.reshape(xin.shape[0], -1).numpy()
        return self.genes[name].input_format().encode(xin)

    def _input_dram(self, layer: LPLayer, codes: np.ndarray) -> bytes:
        cfg, m = self.config, self.config.m
        groups = layer.weights.shape[1] // m
        if codes.shape != (layer.cols, layer.k):
            raise CompileError(f"{layer.name}: the input has {codes.shape[0]} columns of {codes.shape[1]}, "
                               f"compiled for {layer.cols} of {layer.k} (the batch is fixed)")
        x = np.zeros((layer.cols, groups * m), np.int64)
        x[:, :layer.k] = codes
        blob = act_rows(cfg, _codes_as_bytes(x.reshape(-1, m)))
        dram = bytearray(layer.dram)
        r = layer.regions["input"]
        dram[r.addr:r.addr + len(blob)] = blob
        return bytes(dram)

    def _output(self, layer: LPLayer, dram: bytes, x: torch.Tensor, mod) -> torch.Tensor:
        r = layer.regions["output"]
        blocks = layer.weights.shape[0] // self.config.rows
        acc = unpack_acc_rows(self.config, dram[r.addr:r.addr + r.size], blocks * layer.cols)
        acc = acc[:, :self.config.rows].reshape(blocks, layer.cols, self.config.rows)
        acc = acc.transpose(0, 2, 1).reshape(blocks * self.config.rows, layer.cols)[:layer.out]   # [out, C]
        return self._to_tensor(acc, layer, x, mod)

    def _to_tensor(self, acc: np.ndarray, layer: LPLayer, x: torch.Tensor, mod) -> torch.Tensor:
        out = acc / float(1 << self.config.lp_array.acc_frac) + layer.bias[:, None]
        n = x.shape[0]
        if isinstance(mod, nn.Conv2d):
            side = out.shape[1] // n
            h = int(round(np.sqrt(side)))
            out = out.reshape(layer.out, n, h, side // h).transpose(1, 0, 2, 3)
        else:
            out = out.T
        return torch.from_numpy(np.ascontiguousarray(out)).float()

    # ---- running ---------------------------------------------------------------------
    def run(self, x, backend=None) -> tuple[torch.Tensor, list]:
        """The model's output on ``x`` (a batch of the compiled size) with every layer on
        ``backend(layer, [dram]) -> [(final dram, result)]`` (default: the ISS); returns
        the logits and each layer's result (the ISS's :class:`golden.iss.RunResult`)."""
        from .model import iss_backend

        backend = backend or iss_backend(self.config)
        results = []

        def layer_fn(name, mod, inp):
            layer = self.layers[name]
            (final, result), = backend(layer, [self._input_dram(layer, self._columns(name, inp))])
            results.append(result)
            return self._output(layer, final, inp, mod)
        return self._forward(x, layer_fn), results

    def reference(self, x) -> torch.Tensor:
        """The output the machine must give, without the machine (module docstring)."""
        arr = self.config.lp_array

        def layer_fn(name, mod, inp):
            layer = self.layers[name]
            m = self.config.m
            codes = self._columns(name, inp)
            groups = layer.weights.shape[1] // m
            xk = np.zeros((codes.shape[0], groups * m), np.int64)
            xk[:, :layer.k] = codes
            acc = np.zeros((layer.weights.shape[0], codes.shape[0]), np.int64)
            for g in range(groups):
                w = layer.weights[:, g * m:(g + 1) * m]
                prods, _ = array_products(arr, w[:, None, :], xk[None, :, g * m:(g + 1) * m], layer.sf)
                acc += wrap(prods.sum(axis=2), arr.acc_width)
            return self._to_tensor(wrap(acc, 32)[:layer.out], layer, inp, mod)
        return self._forward(x, layer_fn)

    def _forward(self, x, layer_fn) -> torch.Tensor:
        mods = dict(self.model.named_modules())
        handles = [mods[name].register_forward_hook(lambda mod, a, o, name=name: layer_fn(name, mod, a[0]))
                   for name in self.layers]
        try:
            with torch.no_grad():
                return self.model(torch.as_tensor(x, dtype=torch.float32))
        finally:
            for h in handles:
                h.remove()


def compile_lp_model(model: nn.Module, genes: dict, config: AcceleratorConfig, example) -> LPCompiledModel:
    """Compile ``model`` (its Conv2d/Linear layers in ``genes``' LP formats) for
    ``config``'s LP array, for batches shaped like ``example`` (module docstring)."""
    cfg = config
    names = quantizable_layers(model)
    missing = [n for n in names if n not in genes]
    if missing:
        raise CompileError(f"no LP format for layer(s) {', '.join(missing)}")
    sfs = {name: check_lp_gene(cfg, name, genes[name]) for name in names}
    mods = dict(model.named_modules())
    inputs = {}
    handles = [mods[n].register_forward_pre_hook(lambda mod, a, n=n: inputs.__setitem__(n, a[0])) for n in names]
    try:
        with torch.no_grad():
            model(torch.as_tensor(example, dtype=torch.float32))
    finally:
        for h in handles:
            h.remove()
    layers = {}
    for name in names:
        mod, gene = mods[name], genes[name]
        w = mod.weight.detach().double().numpy().reshape(mod.weight.shape[0], -1)
        codes = gene.weight_format().encode(w)
        out, k = codes.shape
        blocks, groups = -(-out // cfg.rows), -(-k // cfg.m)
        wc = np.zeros((blocks * cfg.rows, groups * cfg.m), np.int64)
        wc[:out, :k] = codes
        bias = (mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(out))
        x = inputs[name]
        if isinstance(mod, nn.Conv2d):
            cols = x.shape[0] * nn.functional.unfold(x[:1].double(), mod.kernel_size, padding=mod.padding,
                                                     stride=mod.stride, dilation=mod.dilation).shape[2]
        else:
            cols = x.shape[0]
        layer = LPLayer(name, gene, sfs[name], wc, bias, out, k, cols)
        _lower(cfg, layer)
        layers[name] = layer
    return LPCompiledModel(cfg, model, dict(genes), layers, {n: tuple(inputs[n].shape) for n in names})


def _lower(cfg: AcceleratorConfig, layer: LPLayer) -> None:
    """Build the layer's program (module docstring) into ``layer``."""
    rows, m = cfg.rows, cfg.m
    blocks, groups = layer.weights.shape[0] // rows, layer.weights.shape[1] // m
    C = layer.cols
    t = plan_lp_tiles(cfg, blocks, groups, C)
    prog = Program(cfg)
    pitch, acc_pitch = cfg.pitch("act"), cfg.pitch("acc")
    # weight tile (b, g) at act rows (b * G + g) * rows + r
    tiles = layer.weights.reshape(blocks, rows, groups, m).transpose(0, 2, 1, 3).reshape(-1, m)
    w = prog.put("weights", act_rows(cfg, _codes_as_bytes(tiles)), align=max(pitch, 16))
    x = prog.alloc("input", C * groups * pitch, align=max(pitch, 16))
    y = prog.alloc("output", blocks * C * acc_pitch, align=max(acc_pitch, 16))
    w_base, x_base = 0, t.rb * t.gt * rows
    order = [(b0, c0, g0) for b0 in range(0, blocks, t.rb) for c0 in range(0, C, t.ct)
             for g0 in range(0, groups, t.gt)]
    stored = False
    for i, (b0, c0, g0) in enumerate(order):
        rb, ct, gt = min(t.rb, blocks - b0), min(t.ct, C - c0), min(t.gt, groups - g0)
        first_k, last_k = g0 == 0, g0 + gt >= groups
        prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=w_base, dram=w.addr + (b0 * groups + g0) * rows * pitch,
                  y_size=rb, x_size=gt * rows, y_stride=groups * rows * pitch, pop_next=int(i > 0))
        prog.emit(Opcode.LOAD, mem=Mem.ACT, sram=x_base, dram=x.addr + (c0 * groups + g0) * pitch,
                  y_size=ct, x_size=gt, y_stride=groups * pitch, push_next=1)
        prog.emit(Opcode.GEMM, unit=1, sf=layer.sf, wgt=w_base, act=x_base, acc=0, row_blocks=rb, cols=ct,
                  k_groups=gt, passes=1, act_stride=gt, accumulate=int(not first_k),
                  pop_prev=1, pop_next=int(first_k and stored), push_prev=int(i < len(order) - 1),
                  push_next=int(last_k))
        if last_k:
            later = any(g == 0 for _, _, g in order[i + 1:])
            prog.emit(Opcode.STORE, mem=Mem.ACC, sram=0, dram=y.addr + (b0 * C + c0) * acc_pitch,
                      y_size=rb, x_size=ct, y_stride=C * acc_pitch, pop_prev=1, push_prev=int(later))
            stored = later
    prog.emit(Opcode.FINISH)
    layer.dram, layer.prog_addr, layer.prog_len = prog.image()
    layer.regions = {name: r for name, r in prog.regions.items()}
    layer.tiling = t
