"""The model compiler: a PyTorch model in, programs for the accelerator out.

``compile_model(exported, calib, config)``:

1. front end (:mod:`compiler.graph`): supported ops, BN folded, ReLUs fused;
2. calibration: the float graph on the calibration set gives every tensor's range;
3. quantization (:mod:`compiler.quant`): int8 activations and weights, int32 biases,
   per-channel POST parameters; the last layer returns its accumulators;
4. compression per layer: weights that are already N':M (N' <= the core's n) run as they
   are; with an accuracy budget, TASDER (:mod:`golden.tasder_search`) picks a series per
   layer; the rest run dense, as the exact series of ``ceil(m / n)`` n:m terms;
5. segments: each maximal chain of accelerator layers is one program (layers joined by
   a token bridge, data through DRAM in the consumer's layout: :mod:`compiler.conv`,
   :mod:`compiler.gemm`); host ops (:mod:`compiler.hostops`) run between segments;
6. output: per segment the program words and the DRAM image, and a manifest (config,
   layers with their instruction ranges and expected cycles, regions, host ops).

:class:`CompiledModel` runs it (:meth:`CompiledModel.run`, on the ISS; ``verif.model_run``
runs the same segments on the RTL) and computes the fake-quant reference
(:meth:`CompiledModel.reference`): the same integer arithmetic in numpy, which the ISS
must equal exactly.
"""

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from golden import nm, tasd
from golden.iss import Machine
from spec.accel import AcceleratorConfig
from spec.isa import WORD_BYTES, Opcode, bytes_to_words, words_to_bytes

from . import CompileError
from .conv import ConvShape, conv_weight_rows, lower_conv
from .gemm import GemmShape, lower_gemm, p_rows, padded_rows, product_pack, w_rows
from .graph import Graph, Op, from_exported
from .hostops import HOST_COST, run_host_op
from .program import Program, unpack_acc_rows, unpack_act_rows, act_rows
from .quant import act_scale, quantize, quantize_weights, requant, requant_params

__all__ = ["Layer", "Segment", "CompiledModel", "compile_model", "load_compiled", "float_values"]

MANIFEST_VERSION = 1


# ----------------------------------------------------------------------- float graph
def float_values(graph: Graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every value of the graph on ``x`` (float64), for calibration."""
    values = {graph.input: x.double()}
    F = torch.nn.functional
    for op in graph.ops:
        ins = [values[v] for v in op.inputs]
        p = {k: (torch.from_numpy(v) if v is not None else None) for k, v in op.params.items()}
        a = op.attrs
        if op.kind == "conv":
            y = F.conv2d(ins[0], p["weight"], p["bias"], stride=a["stride"], padding=a["padding"])
        elif op.kind == "linear":
            y = F.linear(ins[0], p["weight"], p["bias"])
        elif op.kind == "maxpool":
            y = F.max_pool2d(ins[0], a["kernel"], a["stride"], a["padding"])
        elif op.kind == "avgpool":
            y = F.avg_pool2d(ins[0], a["kernel"], a["stride"], a["padding"])
        elif op.kind == "adaptive_avgpool":
            y = F.adaptive_avg_pool2d(ins[0], a["size"])
        elif op.kind in ("flatten", "reshape"):
            y = ins[0].reshape((ins[0].shape[0],) + tuple(op.shape[1:]))
        elif op.kind == "add":
            y = ins[0] + ins[1]
        elif op.kind == "matmul":
            y = ins[0] @ ins[1]
        elif op.kind == "softmax":
            y = torch.softmax(ins[0], dim=a["dim"])
        elif op.kind == "layernorm":
            y = F.layer_norm(ins[0], a["normalized"], p["weight"], p["bias"], a["eps"])
        elif op.kind == "gelu":
            y = F.gelu(ins[0], approximate=a.get("approximate", "none"))
        elif op.kind == "tanh":
            y = torch.tanh(ins[0])
        elif op.kind == "sigmoid":
            y = torch.sigmoid(ins[0])
        elif op.kind == "relu":
            y = torch.relu(ins[0])
        else:
            raise CompileError(f"no float semantics for {op.kind}")
        if op.attrs.get("relu"):
            y = torch.relu(y)
        values[op.output] = y
    return values


# --------------------------------------------------------------------------- layers
@dataclass
class Layer:
    """One accelerator layer, quantized and compressed."""

    op: Op
    s_in: float
    s_out: float | None                 # None: the accumulators go out (the last layer)
    w_eff: np.ndarray                   # the int weights the machine multiplies with (logical shape)
    w_scales: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    series: str
    passes: int
    n_active: int
    values: np.ndarray                  # [P, R, (kh,) G, n] machine-ordered compressed groups
    indices: np.ndarray | None
    in_perm: np.ndarray | None = None   # linear after a folded flatten: logical -> machine K order
    pack: int = 0                       # GEMM/POST pack: 2^pack logical rows per core row

    @property
    def relu(self) -> bool:
        return bool(self.op.attrs.get("relu"))

    @property
    def acc_out(self) -> bool:
        return self.s_out is None


@dataclass
class Segment:
    """A chain of accelerator layers run as one program (``dram``, ``prog_addr``,
    ``prog_len``), reading ``input`` and writing ``output`` regions."""

    layers: list
    dram: bytes
    prog_addr: int
    prog_len: int
    regions: dict
    input_layout: dict
    output_layout: dict
    insn_ranges: dict = field(default_factory=dict)     # layer name -> [first, last]


def _compress(cfg: AcceleratorConfig, mat: np.ndarray, series: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``mat[R, K]`` (int, K a multiple of m) under ``series`` on the core: per pass the
    compressed groups ``[P, R, K/m, n]``, the number of passes and n_active."""
    core = cfg.core
    terms = tasd.decompose(mat, series)
    packs = tasd.pack_terms([(t.n, t.m) for t in terms], core)
    dense_passes = [sum(np.asarray(terms[k].dense()) for k in members) for members in packs]
    # n_active: the most non-zeros any group of any pass holds. Compressing with that many
    # slots puts every non-zero in slots 0..n_active-1 (nm.compress orders slots by
    # position, so a wider compression could leave one in a slot n_active switches off).
    n_active = max(1, max(int(np.count_nonzero(d.reshape(d.shape[0], -1, cfg.m), axis=-1).max())
                          for d in dense_passes))
    n_active = min(n_active, core.n)
    values, indices = [], []
    for dense in dense_passes:
        if core.sparse:
            v, i = nm.compress(dense, n_active, core.m)
            pad = [(0, 0)] * (v.ndim - 1) + [(0, core.n - n_active)]
            v, i = np.pad(v, pad), np.pad(i, pad)
        else:
            v, i = dense.reshape(dense.shape[0], -1, cfg.m), None
        values.append(v)
        indices.append(i)
    return (np.stack(values), np.stack(indices) if core.sparse else None, len(packs), min(n_active, core.n))


def _machine_matrix(op: Op, w: np.ndarray, m: int, in_perm=None) -> np.ndarray:
    """The weights as the machine reads them: conv ``[C_out, kh*kw*CG*m]`` in (ky, kx, c)
    order with input channels padded to m; linear ``[R, K]`` with K padded (and permuted)."""
    if op.kind == "conv":
        c_out, c_in, kh, kw = w.shape
        cg = -(-c_in // m)
        full = np.zeros((c_out, kh, kw, cg * m), w.dtype)
        full[..., :c_in] = w.transpose(0, 2, 3, 1)
        return full.reshape(c_out, -1)
    if in_perm is not None:
        w = w[:, in_perm[0]] * in_perm[1]
    k = w.shape[1]
    full = np.zeros((w.shape[0], -(-k // m) * m), w.dtype)
    full[:, :k] = w
    return full


def _series_for(cfg: AcceleratorConfig, mat: np.ndarray, chosen: str | None, dense: bool = False) -> str:
    """The weights' series: TASDER's choice, else the smallest N':M the layer already is,
    else dense (the exact series of ceil(m / n) terms of the core's n:m)."""
    core = cfg.core
    exact = "+".join([f"{core.n}:{core.m}"] * -(-core.m // core.n))
    if dense:
        return exact
    if chosen and chosen != "dense":
        return chosen
    for n in range(1, core.n + 1):
        if nm.is_nm(mat, n, core.m):
            return f"{n}:{core.m}"
    return exact


# ---------------------------------------------------------------------------- model
@dataclass
class CompiledModel:
    """A compiled model: steps (layers on the accelerator, ops on the host), segments, and
    the quantization it was built with."""

    config: AcceleratorConfig
    graph: Graph
    scales: dict
    layers: dict
    segments: list
    steps: list                          # ("segment", index) | ("host", op)
    batch: int
    manifest: dict

    # ---- running -------------------------------------------------------------------
    def quantize_input(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        want = (self.batch,) + tuple(self.graph.input_shape[1:])
        if x.shape != want:
            raise CompileError(f"the input must have shape {want}, not {x.shape}")
        return quantize(x, self.scales[self.graph.input])

    def run(self, x, backend=None) -> tuple[np.ndarray, list]:
        """Run on one batch ``x`` (float): the output and, per segment, the backend's
        result (:meth:`run_many` with one input)."""
        outputs, results = self.run_many([x], backend)
        return outputs[0], [r[0] for r in results]

    def run_many(self, xs: list, backend=None) -> tuple[list, list]:
        """Run on several batches at once: every segment runs for all of them in one call
        of ``backend(segment, [dram, ...]) -> [(final dram, result), ...]`` (default: the
        ISS; ``verif.model_run`` runs them on the RTL), host ops run in between. Returns the
        float outputs and, per segment, the backend's results."""
        backend = backend or iss_backend(self.config)
        values = [{self.graph.input: self.quantize_input(x)} for x in xs]
        results = []
        for kind, item in self.steps:
            if kind == "host":
                op = item
                for v in values:
                    v[op.output] = run_host_op(op, [v[i] for i in op.inputs], [self.scales[i] for i in op.inputs],
                                               self.scales.get(op.output, 1.0))
                continue
            seg = self.segments[item]
            r_in, r_out = seg.regions["input"], seg.regions["output"]
            drams = []
            for v in values:
                dram = bytearray(seg.dram)
                blob = _to_layout(self.config, v[seg.input_layout["value"]], seg.input_layout)
                dram[r_in["addr"]:r_in["addr"] + len(blob)] = blob
                drams.append(bytes(dram))
            done = backend(seg, drams)
            results.append([res for _, res in done])
            for v, (final, _) in zip(values, done):
                v[seg.output_layout["value"]] = _from_layout(self.config, final[r_out["addr"]:r_out["addr"] + r_out["size"]],
                                                             seg.output_layout)
        return [self._output(v) for v in values], results

    def reference(self, x) -> np.ndarray:
        """The fake-quant reference: the same integer steps in numpy (module docstring)."""
        values = {self.graph.input: self.quantize_input(x)}
        for kind, item in self.steps:
            if kind == "host":
                op = item
                values[op.output] = run_host_op(op, [values[v] for v in op.inputs],
                                                [self.scales[v] for v in op.inputs], self.scales.get(op.output, 1.0))
                continue
            for layer in self.segments[item].layers:
                values[layer.op.output] = _layer_reference(layer, _input_of(self.graph, values, layer.op))
        return self._output(values)

    def _output(self, values) -> np.ndarray:
        out = values[self.graph.output]
        last = self.layers.get(self.graph.producer(self.graph.output).name) \
            if self.graph.producer(self.graph.output) else None
        if last is not None and last.acc_out:
            scale = last.s_in * last.w_scales
            return (out + last.bias[None, :]) * scale[None, :]
        return out.astype(np.float64) * self.scales[self.graph.output]

    # ---- saving --------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write ``folder`` (manifest.json, seg<k>.bin and seg<k>.dram, state.npz),
        through a temporary folder renamed into place."""
        folder = Path(folder)
        parent = folder.resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
        try:
            for k, seg in enumerate(self.segments):
                words = bytes_to_words(seg.dram[seg.prog_addr:seg.prog_addr + seg.prog_len * WORD_BYTES])
                (tmp / f"seg{k}.bin").write_bytes(words_to_bytes(words))
                (tmp / f"seg{k}.dram").write_bytes(seg.dram)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")
            _save_state(self, tmp)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.replace(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder


def _input_of(graph: Graph, values: dict, op: Op) -> np.ndarray:
    """The op's input, through a flatten folded into it."""
    name = op.inputs[0]
    if name not in values:
        flat = graph.producer(name)
        values[name] = values[flat.inputs[0]].reshape((values[flat.inputs[0]].shape[0],) + tuple(flat.shape[1:]))
    return values[name]


def iss_backend(config: AcceleratorConfig):
    """Run segments on the instruction-set simulator."""
    def run(seg: Segment, drams: list[bytes]):
        out = []
        for dram in drams:
            result = Machine(config, dram).run(seg.prog_addr, seg.prog_len)
            out.append((result.dram.tobytes(), result))
        return out
    return run


def _layer_reference(layer: Layer, q: np.ndarray) -> np.ndarray:
    op = layer.op
    w = layer.w_eff.astype(np.int64)
    if op.kind == "conv":
        x = torch.from_numpy(q.astype(np.float64))
        acc = torch.nn.functional.conv2d(x, torch.from_numpy(w.astype(np.float64)), stride=op.attrs["stride"],
                                         padding=op.attrs["padding"]).numpy()
        acc = np.rint(acc).astype(np.int64)                               # exact: |acc| << 2^53
        acc = acc.transpose(1, 0, 2, 3)                                   # channels first
    else:
        acc = w @ q.astype(np.int64).T                                    # [R, B]
    acc = ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)                     # the machine's 32-bit wrap
    if layer.acc_out:
        return acc.T
    y = requant(acc, layer.bias, layer.mult, layer.shift, layer.relu)
    return y.transpose(1, 0, 2, 3) if op.kind == "conv" else y.T


# --------------------------------------------------------------------------- layouts
def _to_layout(cfg: AcceleratorConfig, q: np.ndarray, layout: dict) -> bytes:
    """A logical int8 tensor -> the segment input's machine layout (DRAM bytes)."""
    m = cfg.m
    if layout["kind"] == "image":
        b, c, h, w = q.shape
        pad, cg = layout["pad"], -(-c // m)
        img = np.zeros((b, h + 2 * pad, w + 2 * pad, cg * m), np.int64)
        img[:, pad:pad + h, pad:pad + w, :c] = q.transpose(0, 2, 3, 1)
        return act_rows(cfg, img.reshape(-1, m))
    b, f = q.reshape(q.shape[0], -1).shape
    g = -(-f // m)
    cols = np.zeros((b, g * m), np.int64)
    cols[:, :f] = q.reshape(b, -1)
    return act_rows(cfg, cols.reshape(-1, m))


def _from_layout(cfg: AcceleratorConfig, blob: bytes, layout: dict) -> np.ndarray:
    """The segment output's machine layout -> a logical int tensor."""
    m = cfg.m
    if layout["kind"] == "acc":
        b, r = layout["batch"], layout["rows"]
        br = cfg.block_rows(layout.get("pack", 0))
        blocks = -(-r // br)
        acc = unpack_acc_rows(cfg, blob, blocks * b)[:, :br].reshape(blocks, b, br)
        return acc.transpose(1, 0, 2).reshape(b, blocks * br)[:, :r]
    if layout["kind"] == "image":
        b, c, h, w, pad = layout["batch"], layout["channels"], layout["h"], layout["w"], layout["pad"]
        cg = -(-c // m)
        hp, wp = h + 2 * pad, w + 2 * pad
        img = unpack_act_rows(cfg, blob, b * hp * wp * cg).reshape(b, hp, wp, cg * m)
        return img[:, pad:pad + h, pad:pad + w, :c].transpose(0, 3, 1, 2).copy()
    b, f = layout["batch"], layout["features"]
    g = -(-f // m)
    return unpack_act_rows(cfg, blob, b * g).reshape(b, g * m)[:, :f]


# --------------------------------------------------------------------------- compile
def compile_model(exported, calib, config: AcceleratorConfig = AcceleratorConfig(), *, batch: int = 1,
                  choices: dict | None = None, dense: bool = False) -> CompiledModel:
    """Compile ``exported`` (a ``torch.export`` program) for ``config``; ``calib`` is the
    calibration inputs (float, [N, ...]); ``choices`` optional TASD weight series per layer
    name (as :func:`golden.tasder_search.search` returns them); ``dense`` runs every layer
    dense (the baseline the compressed programs are compared with)."""
    graph = from_exported(exported)
    calib = torch.as_tensor(np.asarray(calib), dtype=torch.float64)
    if calib.ndim != len(graph.input_shape) or tuple(calib.shape[1:]) != tuple(graph.input_shape[1:]):
        raise CompileError(f"the calibration set must have shape [N, {', '.join(map(str, graph.input_shape[1:]))}], "
                           f"not {list(calib.shape)}")
    if not torch.isfinite(calib).all():
        raise CompileError("the calibration set holds NaN or infinite values")
    if batch < 1:
        raise CompileError(f"batch must be >= 1, not {batch}")
    vals = float_values(graph, calib)
    scales = {name: act_scale(float(v.abs().max())) for name, v in vals.items()}
    cfg = config
    # ---- quantize and compress the accelerator layers
    layers = {}
    last_op = graph.producer(graph.output)
    for op in graph.ops:
        if not op.on_machine:
            continue
        s_in = scales[op.inputs[0]]
        acc_out = op is last_op and op.kind == "linear"
        s_out = None if acc_out else scales[op.output]
        wq, ws = quantize_weights(op.params["weight"])
        in_perm = _flatten_perm(graph, op, cfg)
        mat = _machine_matrix(op, wq, cfg.m, in_perm)
        series = _series_for(cfg, mat, (choices or {}).get(op.name), dense)
        values, indices, passes, n_active = _compress(cfg, mat, series)
        w_eff_mat = np.asarray(tasd.reconstruct(tasd.decompose(mat, series))).astype(np.int64)
        w_eff = _logical_weights(op, w_eff_mat, cfg.m, in_perm, wq.shape)
        bias = np.rint(op.params["bias"] / (s_in * ws)).astype(np.int64)
        if np.abs(bias).max(initial=0) >= 1 << 31:
            raise CompileError(f"{op.name}: a bias does not fit int32 at this quantization")
        if acc_out:
            mult = np.zeros(len(ws), np.int64)
            shift = np.zeros(len(ws), np.int64)
        else:
            mult, shift = requant_params(s_in * ws / s_out)
        if op.kind == "conv":
            kh = op.attrs["kernel"][0]
            values = values.reshape(passes, values.shape[1], kh, -1, values.shape[-1])
            if indices is not None:
                indices = indices.reshape(values.shape)
        layers[op.name] = Layer(op, s_in, s_out, w_eff, ws, bias, mult, shift, series, passes, n_active,
                                values, indices, in_perm, product_pack(cfg, n_active))
    # ---- segments
    steps, segments = [], []
    chain = []
    for op in graph.ops:
        if op.on_machine and (not chain or _chains(graph, chain[-1], op)):
            chain.append(op)
            continue
        if chain:
            steps.append(("segment", len(segments)))
            segments.append(_segment(cfg, graph, [layers[o.name] for o in chain], batch, scales))
            chain = []
        if op.on_machine:
            chain = [op]
        elif op.kind in ("flatten", "reshape") and _folded_flatten(graph, op):
            continue
        else:
            steps.append(("host", op))
    if chain:
        steps.append(("segment", len(segments)))
        segments.append(_segment(cfg, graph, [layers[o.name] for o in chain], batch, scales))
    model = CompiledModel(cfg, graph, scales, layers, segments, steps, batch, {})
    model.manifest = _manifest(model, vals)
    return model


def _chains(graph: Graph, prev: Op, op: Op) -> bool:
    """``op`` continues the segment of ``prev``: its input is ``prev``'s output (possibly
    through a flatten folded into a linear) and nothing else uses that output."""
    src = op.inputs[0]
    producer = graph.producer(src)
    if producer is not None and producer.kind in ("flatten", "reshape") and _folded_flatten(graph, producer):
        src = producer.inputs[0]
        producer = graph.producer(src)
    return (producer is prev and len(graph.users(prev.output)) == 1
            and not (prev.kind == "linear" and op.kind == "conv"))


def _folded_flatten(graph: Graph, op: Op) -> bool:
    """A flatten from a conv straight into a linear: the linear's weights take the
    permutation instead (the conv's NHWC output is the linear's input as it is)."""
    producer = graph.producer(op.inputs[0])
    users = graph.users(op.output)
    return (op.kind == "flatten" and producer is not None and producer.kind == "conv"
            and len(users) == 1 and users[0].kind == "linear" and len(graph.users(producer.output)) == 1)


def _flatten_perm(graph: Graph, op: Op, cfg: AcceleratorConfig):
    """For a linear after a folded flatten: (logical column for each machine K position,
    mask of real positions)."""
    if op.kind != "linear":
        return None
    producer = graph.producer(op.inputs[0])
    if producer is None or not _folded_flatten(graph, producer):
        return None
    conv = graph.producer(producer.inputs[0])
    _, c, h, w = conv.shape
    cg = -(-c // cfg.m)
    idx = np.zeros((h, w, cg * cfg.m), np.int64)
    mask = np.zeros((h, w, cg * cfg.m), np.int64)
    for ch in range(c):
        idx[:, :, ch] = ch * h * w + np.arange(h)[:, None] * w + np.arange(w)[None, :]
        mask[:, :, ch] = 1
    return idx.reshape(-1), mask.reshape(-1)


def _logical_weights(op: Op, mat: np.ndarray, m: int, in_perm, shape) -> np.ndarray:
    """The machine-ordered effective weights back in the op's own layout (for the reference)."""
    if op.kind == "conv":
        c_out, c_in, kh, kw = shape
        cg = -(-c_in // m)
        return mat.reshape(c_out, kh, kw, cg * m)[..., :c_in].transpose(0, 3, 1, 2)
    if in_perm is not None:
        out = np.zeros(shape, np.int64)
        idx, mask = in_perm
        out[:, idx[mask == 1]] = mat[:, :len(idx)][:, mask == 1]
        return out
    return mat[:, :shape[1]]


def _segment(cfg: AcceleratorConfig, graph: Graph, layers: list[Layer], batch: int, scales) -> Segment:
    """One program running ``layers`` (a chain) on ``batch`` inputs."""
    prog = Program(cfg)
    first = layers[0]
    in_shape = graph.producer(first.op.inputs[0]).shape if graph.producer(first.op.inputs[0]) else graph.input_shape
    ranges = {}
    # input region in the first layer's layout
    if first.op.kind == "conv":
        _, c, h, w = in_shape
        pad = first.op.attrs["padding"]
        rows = batch * (h + 2 * pad) * (w + 2 * pad) * -(-c // cfg.m)
        in_layout = {"kind": "image", "value": first.op.inputs[0], "pad": pad}
    else:
        f = int(np.prod(in_shape[1:]))
        rows = batch * -(-f // cfg.m)
        in_layout = {"kind": "cols", "value": first.op.inputs[0]}
    current = prog.alloc("input", rows * cfg.pitch("act"))
    for k, layer in enumerate(layers):
        op = layer.op
        nxt = layers[k + 1] if k + 1 < len(layers) else None
        w = prog.put(f"{op.name}.weights", _weights_blob(cfg, layer))
        params = prog.put(f"{op.name}.params", p_rows(cfg, layer.bias, layer.mult, layer.shift, len(layer.bias),
                                                      layer.pack))
        start = len(prog.insns)
        if k > 0:                                      # the token bridge from the layer before
            prog.emit(Opcode.GEMM, pop_next=1, push_prev=1)
        r_out = padded_rows(cfg, len(layer.bias), layer.pack)
        if op.kind == "conv":
            _, c_out, ho, wo = op.shape
            out_pad = nxt.op.attrs["padding"] if nxt is not None and nxt.op.kind == "conv" else 0
            x_shape = graph.producer(op.inputs[0]).shape if graph.producer(op.inputs[0]) else graph.input_shape
            _, c_in, h, wi = x_shape
            shape = ConvShape(batch, c_in, h, wi, c_out, op.attrs["kernel"][0], op.attrs["kernel"][1],
                              op.attrs["stride"], op.attrs["padding"], out_pad, layer.passes)
            out = prog.alloc(f"{op.name}.out" if nxt else "output",
                             batch * (ho + 2 * out_pad) * (wo + 2 * out_pad) * -(-c_out // cfg.m) * cfg.pitch("act"))
            lower_conv(prog, shape, x=current, w=w, params=params, y=out, n_active=layer.n_active,
                       relu=layer.relu, first_pop=k > 0, last_push=nxt is not None, pack=layer.pack)
            out_layout = {"kind": "image", "value": op.output, "batch": batch, "channels": c_out, "h": ho, "w": wo,
                          "pad": out_pad}
        else:
            k_in = layer.values.shape[2] * cfg.m
            size = (-(-len(layer.bias) // cfg.block_rows(layer.pack)) * batch * cfg.pitch("acc") if layer.acc_out
                    else batch * r_out * cfg.pitch("act") // cfg.m)
            out = prog.alloc(f"{op.name}.out" if nxt else "output", size)
            lower_gemm(prog, GemmShape(len(layer.bias), k_in, batch, layer.passes), x=current, w=w, params=params,
                       y=out, n_active=layer.n_active, relu=layer.relu, acc_out=layer.acc_out,
                       first_pop=k > 0, last_push=nxt is not None, pack=layer.pack)
            out_layout = ({"kind": "acc", "value": op.output, "batch": batch, "rows": len(layer.bias),
                           "pack": layer.pack} if layer.acc_out
                          else {"kind": "cols", "value": op.output, "batch": batch, "features": len(layer.bias)})
        ranges[op.name] = [start, len(prog.insns) - 1]
        current = out
    prog.emit(Opcode.FINISH)
    dram, prog_addr, prog_len = prog.image()
    regions = {name: {"addr": r.addr, "size": r.size} for name, r in prog.regions.items()}
    return Segment(layers, dram, prog_addr, prog_len, regions, in_layout, out_layout, ranges)


def _weights_blob(cfg: AcceleratorConfig, layer: Layer) -> bytes:
    if layer.op.kind == "conv":
        shape = ConvShape(1, 1, 1, 1, layer.values.shape[1], layer.values.shape[2], 1, 1, 0, 0, layer.passes)
        return conv_weight_rows(cfg, layer.values, layer.indices, shape, layer.pack)
    return w_rows(cfg, layer.values, layer.indices, layer.pack)


def _manifest(model: CompiledModel, vals) -> dict:
    cfg = model.config
    layers, host = [], []
    for k, seg in enumerate(model.segments):
        for layer in seg.layers:
            op = layer.op
            layers.append({"name": op.name, "kind": op.kind, "segment": k, "shape": list(op.shape),
                           "series": layer.series, "passes": layer.passes, "n_active": layer.n_active,
                           "pack": layer.pack, "relu": layer.relu, "acc_out": layer.acc_out, "instructions": seg.insn_ranges[op.name],
                           "s_in": layer.s_in, "s_out": layer.s_out})
    for kind, item in model.steps:
        if kind == "host":
            elements = int(np.prod(item.shape))
            host.append({"name": item.name, "kind": item.kind, "shape": list(item.shape),
                         "estimated_cycles": elements * HOST_COST.get(item.kind, 10)})
    return {"version": MANIFEST_VERSION, "config": cfg.to_dict(), "batch": model.batch,
            "input": {"shape": list(model.graph.input_shape), "scale": model.scales[model.graph.input]},
            "layers": layers, "host_ops": host,
            "segments": [{"prog_addr": s.prog_addr, "prog_len": s.prog_len, "dram_bytes": len(s.dram),
                          "regions": s.regions, "input": s.input_layout, "output": s.output_layout}
                         for s in model.segments],
            "steps": [[kind, item if kind == "segment" else item.name] for kind, item in model.steps]}


def _save_state(model: CompiledModel, folder: Path) -> None:
    """The graph and the quantization: ``graph.json`` (structure) and ``state.npz`` (arrays)."""
    arrays = {}
    ops = []
    for k, op in enumerate(model.graph.ops):
        for name, value in op.params.items():
            if value is not None:
                arrays[f"op{k}.{name}"] = value
        ops.append({"kind": op.kind, "name": op.name, "inputs": op.inputs, "output": op.output,
                    "shape": list(op.shape), "attrs": op.attrs})
    layers = {}
    for name, layer in model.layers.items():
        for field_name in ("w_eff", "w_scales", "bias", "mult", "shift"):
            arrays[f"layer.{name}.{field_name}"] = getattr(layer, field_name)
        layers[name] = {"op": model.graph.ops.index(layer.op), "s_in": layer.s_in, "s_out": layer.s_out,
                        "series": layer.series, "passes": layer.passes, "n_active": layer.n_active,
                        "pack": layer.pack}
    segments = [{"layers": [l.op.name for l in seg.layers], "prog_addr": seg.prog_addr, "prog_len": seg.prog_len,
                 "regions": seg.regions, "input": seg.input_layout, "output": seg.output_layout,
                 "insn_ranges": seg.insn_ranges} for seg in model.segments]
    steps = [[kind, item if kind == "segment" else model.graph.ops.index(item)] for kind, item in model.steps]
    doc = {"version": MANIFEST_VERSION, "config": model.config.to_json(), "batch": model.batch,
           "graph": {"ops": ops, "input": model.graph.input, "input_shape": list(model.graph.input_shape),
                     "output": model.graph.output},
           "scales": model.scales, "layers": layers, "segments": segments, "steps": steps}
    (folder / "graph.json").write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    np.savez(folder / "state.npz", **arrays)


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot save {value!r}")


def load_compiled(folder: Path) -> CompiledModel:
    """A model saved by :meth:`CompiledModel.save` (JSON and npz only: nothing executable)."""
    folder = Path(folder)
    try:
        doc = json.loads((folder / "graph.json").read_text())
        manifest = json.loads((folder / "manifest.json").read_text())
        arrays = np.load(folder / "state.npz", allow_pickle=False)
        if doc.get("version") != MANIFEST_VERSION:
            raise CompileError(f"{folder} was compiled with format version {doc.get('version')}, "
                               f"not {MANIFEST_VERSION}: compile it again")
        config = AcceleratorConfig.from_json(doc["config"])
        ops = []
        for k, o in enumerate(doc["graph"]["ops"]):
            attrs = {key: tuple(v) if isinstance(v, list) else v for key, v in o["attrs"].items()}
            params = {key.split(".", 1)[1]: arrays[key] for key in arrays.files if key.startswith(f"op{k}.")}
            if o["kind"] == "layernorm":
                params = {"weight": params.get("weight"), "bias": params.get("bias")}
            ops.append(Op(o["kind"], o["name"], o["inputs"], o["output"], tuple(o["shape"]), attrs, params))
        g = doc["graph"]
        graph = Graph(ops, g["input"], tuple(g["input_shape"]), g["output"])
        layers = {}
        for name, l in doc["layers"].items():
            get = lambda f: arrays[f"layer.{name}.{f}"]            # noqa: E731
            layers[name] = Layer(ops[l["op"]], l["s_in"], l["s_out"], get("w_eff"), get("w_scales"), get("bias"),
                                 get("mult"), get("shift"), l["series"], l["passes"], l["n_active"], None, None,
                                 pack=l.get("pack", 0))
        segments = []
        for k, s in enumerate(doc["segments"]):
            dram = (folder / f"seg{k}.dram").read_bytes()
            segments.append(Segment([layers[n] for n in s["layers"]], dram, s["prog_addr"], s["prog_len"],
                                    s["regions"], s["input"], s["output"], s["insn_ranges"]))
        steps = [(kind, item if kind == "segment" else ops[item]) for kind, item in doc["steps"]]
        return CompiledModel(config, graph, doc["scales"], layers, segments, steps, doc["batch"], manifest)
    except CompileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise CompileError(f"{folder} is not a compiled model folder: {exc}") from None
