"""Multi-accelerator Chakra traces: a compiled model on P NPUs, and a data-parallel
training step of an N:M model.

Inference (:func:`scaleout_traces`, ``tessera compile ... --npus P --parallel data|tensor``)
---------------------------------------------------------------------------------------
``data``: every NPU runs the whole compiled program on its own ``batch`` inputs (the
global batch is ``P * batch``). Inference needs no collective: no NPU reads another's
data, so the traces are P copies of :func:`compiler.trace.model_trace`.

``tensor``: every accelerator layer's output channels are split across the P NPUs
(:func:`split_channels`: whole groups of ``lcm(rows, m)`` channels, as even as they go,
so that no core row block and no activation row is shared by two NPUs). NPU ``p``
computes its channels of every input, then an **All-Gather** gives every NPU the whole
output, which the next layer (split the same way) reads in full:

- the share is lowered by the compiled layer's own lowering (:mod:`compiler.conv`,
  :mod:`compiler.gemm`) for its channels, as one program per layer and NPU (the gather
  sits between layers, so no token bridge joins them), and traced instruction by
  instruction by :func:`compiler.trace.program_trace`, with the ISS's cycle model
  (:func:`compiler.trace.insn_cost`): its weight and parameter loads, GEMM beats, POST
  elements and stores scale with its share of row blocks, while it still loads the whole
  input. With ``P = 1`` the share program is the compiled layer, instruction for
  instruction (the tests check it);
- after the layer, one COMM_COLL node (``comm_type`` ALL_GATHER, ``comm_size`` = one
  share's bytes: the largest share's, as Chakra's All-Gather takes equal shares) with
  data dependencies on the layer's last nodes; the next layer's first nodes (and host
  ops, which every NPU runs on the whole tensor) wait for it. The last layer's output is
  gathered too, so every NPU holds the model's output;
- with ``collective="tacos"`` the All-Gather is instead TACOS's schedule for
  ``topology`` (:func:`golden.tacos.synthesize`, one chunk of a share's bytes per NPU,
  :func:`compiler.collectives.append_schedule`): its sends and receives wait for the
  layer, the next layer for the collective's last nodes on its NPU.

Why All-Gather of the outputs rather than All-Reduce of a split reduction: an All-Gather
moves each NPU's int8 share of the activations, ``(P-1)/P`` of the layer's output per
NPU; splitting the reduction (K) instead would leave every NPU with int32 partial sums of
*every* output, to be summed by an All-Reduce (``2 (P-1)/P`` of four times as many bytes:
8x the traffic), and the requantisation (bias, scale, ReLU) could only follow the
reduction; the machine has no path for that (LOAD cannot write the accumulator SRAM,
POST reads only accumulators its own GEMMs wrote). Splitting outputs keeps each share a
complete layer program. The re-interleaving of the gathered shares into the next layer's
channels-innermost layout is a local copy left out of the trace.

Training (:func:`training_step_traces`)
---------------------------------------
One data-parallel step of an N:M model (:func:`train_layers`: the Linear/Conv2d layers of
a PyTorch model with their N:M masks from :mod:`golden.sparse_train`) on P NPUs, each on
``batch`` samples. Per layer, three GEMMs; with ``Q`` output positions per sample (conv:
``H_out * W_out``; linear: 1), ``K`` the reduction length, ``C`` the output channels and
``nnz`` the weights the mask keeps (``K * C * N / M``; ``K * C`` for a dense layer), in
multiply-accumulates (ops = 2 * MACs):

============ ============================= =============================================
product      dense                         with the N:M weights ``W~ = W * mask``
============ ============================= =============================================
forward      ``Y = X W^T``: ``bQKC``       ``bQ nnz``: the N:M core's product (groups
                                           along K, its reduction axis)
input grad.  ``dX = dY W``: ``bQKC``       ``bQ nnz``: the same kept weights; here the
                                           groups run along the product's *output* (K),
                                           so a core that needs N:M along its reduction
                                           axis needs a transposable mask; counted as
                                           saved (``dgrad_sparse=True``) or not
weight grad. ``dW = dY^T X``: ``bQKC``     ``bQKC`` in the sparse phase: SR-STE, SDGF and
                                           MDGF (while its decay factor is > 0) update
                                           the pruned weights too, so need every entry
                                           (the mask is recomputed each step); ``bQ nnz``
                                           with a frozen mask (``phase="fine-tune"``):
                                           only the kept entries (a sampled product)
============ ============================= =============================================

The first layer computes no input gradient. Gradients are All-Reduced per layer as soon
as the layer's weight gradient is done (COMM_COLL ALL_REDUCE, ``comm_size`` = its weight
and bias gradients at ``grad_bytes`` each; with a frozen mask only the kept entries: the
mask follows from the replicated weights, so no indices travel), overlapping the
backward pass of the layers below it; ``collective="tacos"`` uses TACOS's All-Reduce
schedule instead. Each backward step computes dW before dX so the All-Reduce starts as
early as possible. Not in the trace: element-wise ops (ReLU, pooling, the loss) and the
optimizer update.

Compute model (:class:`TrainingNPU`): each GEMM is a COMP node with ``num_ops`` and
``tensor_size`` (its operands and result: activations and weights at ``act_bytes``, N:M
weights as their kept values plus ``ceil(log2 M)`` index bits each, weight gradients at
``grad_bytes``) for ASTRA-sim's roofline (on): ``max(ops / peak, bytes / bandwidth)``.

Errors a caller can cause (P < 1, a topology with another NPU count, a layer that cannot
be split into P parts, an unknown option) raise :class:`compiler.CompileError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from spec.isa import Opcode

from . import CompileError
from .chakra import CollectiveType, NodeType, Trace, write_traces
from .collectives import append_schedule
from .conv import ConvShape, lower_conv
from .gemm import GemmShape, lower_gemm, padded_rows
from .program import Program
from .trace import host_node, model_trace, program_trace

__all__ = ["PARALLEL", "COLLECTIVES", "check_options", "split_channels", "share_program", "scaleout_traces",
           "write_scaleout_traces", "without_memory_nodes", "replicated", "TrainingNPU", "TrainLayer",
           "train_layers", "training_step_traces", "roofline_ns", "gradient_bytes"]

#: ``--parallel``: every NPU runs the whole model on its own inputs, or a share of every layer.
PARALLEL = ("data", "tensor")
#: ``--collective``: Chakra COMM_COLL nodes (the simulator's own algorithm) or TACOS's schedule.
COLLECTIVES = ("coll", "tacos")


def _check_npus(npus) -> int:
    if isinstance(npus, bool) or not isinstance(npus, int) or npus < 1:
        raise CompileError(f"the NPU count must be an integer >= 1, not {npus!r}")
    return npus


def _check_collective(collective: str, topology, npus: int) -> None:
    if collective not in COLLECTIVES:
        raise CompileError(f"collective must be one of {', '.join(COLLECTIVES)}, not {collective!r}")
    if collective == "tacos" and topology is None:
        raise CompileError("the TACOS collective needs a topology (e.g. ring:4, torus:4x4 or a YAML file)")
    if topology is not None and topology.npus != npus:
        raise CompileError(f"the topology {topology.name or ''} has {topology.npus} NPUs but the traces are for "
                           f"{npus} (NPU count does not match)")


def check_options(npus: int, parallel: str = "data", collective: str = "coll", topology=None) -> None:
    """Raise :class:`compiler.CompileError` unless the options make a scale-out run: P >= 1,
    a known ``parallel`` and ``collective``, a topology of P NPUs for TACOS, and no
    collective options for data-parallel inference (which has no collective)."""
    _check_npus(npus)
    if parallel not in PARALLEL:
        raise CompileError(f"parallel must be one of {', '.join(PARALLEL)}, not {parallel!r}")
    _check_collective(collective, topology, npus)
    if parallel == "data" and (collective != "coll" or topology is not None):
        raise CompileError("data-parallel inference has no collectives: --collective and --topology "
                           "apply to --parallel tensor")


# ------------------------------------------------------------------------ tensor parallel
def split_channels(channels: int, unit: int, parts: int, layer: str = "") -> list[tuple[int, int]]:
    """``parts`` shares ``(first channel, count)`` of ``channels``, in whole groups of
    ``unit`` (the last group may be short), as even as they go (the first shares take
    one group more)."""
    _check_npus(parts)
    groups = -(-channels // unit)
    if groups < parts:
        raise CompileError(f"layer {layer!r} has {channels} output channels, {groups} group(s) of {unit} "
                           f"(the core's rows and m): it cannot be split into {parts} parts")
    base, extra = divmod(groups, parts)
    shares, start = [], 0
    for p in range(parts):
        count = min((base + (p < extra)) * unit, channels - start)
        shares.append((start, count))
        start += count
    return shares


def _geometry(model, layer) -> dict:
    """What lowering one layer needs, from the graph and the compiled segments."""
    from .model import _flatten_perm

    cfg, graph, op = model.config, model.graph, layer.op
    seg = next(s for s in model.segments if any(l is layer for l in s.layers))
    k = next(i for i, l in enumerate(seg.layers) if l is layer)
    nxt = seg.layers[k + 1] if k + 1 < len(seg.layers) else None
    producer = graph.producer(op.inputs[0])
    in_shape = producer.shape if producer is not None else graph.input_shape
    geo = {"channels": len(layer.bias), "kind": op.kind}
    if op.kind == "conv":
        _, c_in, h, w = in_shape
        geo.update(c_in=c_in, h=h, w=w, kernel=op.attrs["kernel"], stride=op.attrs["stride"],
                   pad=op.attrs["padding"],
                   out_pad=nxt.op.attrs["padding"] if nxt is not None and nxt.op.kind == "conv" else 0,
                   spatial=int(op.shape[2] * op.shape[3]))
    else:
        perm = _flatten_perm(graph, op, cfg)
        k_in = len(perm[0]) if perm is not None else -(-layer.w_eff.shape[1] // cfg.m) * cfg.m
        geo.update(k_in=k_in, spatial=1)
    return geo


def share_program(model, layer, channels: int) -> list[int]:
    """The program words of ``channels`` output channels of ``layer`` (a
    :class:`compiler.model.Layer` of ``model``) on all of the model's batch: the compiled
    layer's lowering for that many channels, as a program of its own."""
    cfg, batch = model.config, model.batch
    geo = _geometry(model, layer)
    prog = Program(cfg)
    pitch = {mem: cfg.pitch(mem) for mem in ("act", "wgt", "acc", "param")}
    params = prog.alloc("params", padded_rows(cfg, channels, layer.pack) * pitch["param"])
    blocks = -(-channels // cfg.block_rows(layer.pack))
    if geo["kind"] == "conv":
        kh, kw = geo["kernel"]
        s = ConvShape(batch, geo["c_in"], geo["h"], geo["w"], channels, kh, kw, geo["stride"], geo["pad"],
                      geo["out_pad"], layer.passes)
        cg_in, cg_out = s.groups(cfg.m)
        x = prog.alloc("input", batch * s.hp * s.wp * cg_in * pitch["act"])
        w = prog.alloc("weights", kh * blocks * s.passes * kw * cg_in * pitch["wgt"])
        q = s.out_pad
        y = prog.alloc("output", batch * (s.ho + 2 * q) * (s.wo + 2 * q) * cg_out * pitch["act"])
        lower_conv(prog, s, x=x, w=w, params=params, y=y, n_active=layer.n_active, relu=layer.relu,
                   pack=layer.pack)
    else:
        k_in = geo["k_in"]
        x = prog.alloc("input", batch * (k_in // cfg.m) * pitch["act"])
        w = prog.alloc("weights", blocks * layer.passes * (k_in // cfg.m) * pitch["wgt"])
        size = (blocks * batch * pitch["acc"] if layer.acc_out
                else batch * padded_rows(cfg, channels, layer.pack) * pitch["act"] // cfg.m)
        y = prog.alloc("output", size)
        lower_gemm(prog, GemmShape(channels, k_in, batch, layer.passes), x=x, w=w, params=params, y=y,
                   n_active=layer.n_active, relu=layer.relu, acc_out=layer.acc_out, pack=layer.pack)
    prog.emit(Opcode.FINISH)
    return prog.words()


def _share_bytes(model, layer, channels: int) -> int:
    """Bytes of ``channels`` channels of the layer's output for the whole batch (int8
    activations; int32 accumulators for a last layer that returns them)."""
    geo = _geometry(model, layer)
    return model.batch * geo["spatial"] * channels * (4 if layer.acc_out else 1)


def scaleout_traces(model, npus: int, parallel: str = "data", *, clock_mhz: float = 100.0,
                    collective: str = "coll", topology=None, chunks: int = 1, seed: int = 0,
                    policy: str = "random") -> list[Trace]:
    """One trace per NPU of ``model`` (:class:`compiler.model.CompiledModel`) on ``npus``
    NPUs (module docstring). ``topology`` (a :class:`golden.tacos.Topology`) is needed by
    ``collective="tacos"`` and must have ``npus`` NPUs; ``chunks``, ``seed`` and ``policy``
    go to the TACOS synthesiser."""
    check_options(npus, parallel, collective, topology)
    if parallel == "data":
        return [model_trace(model, npu, clock_mhz=clock_mhz) for npu in range(npus)]
    cfg = model.config
    unit = math.lcm(cfg.rows, cfg.m)
    plans = {}                                      # every split first: errors before any work
    for seg in model.segments:
        for layer in seg.layers:
            plans[layer.op.name] = split_channels(len(layer.bias), unit, npus, layer.op.name)
    traces = [Trace(p) for p in range(npus)]
    after: list[tuple[int, ...]] = [() for _ in range(npus)]
    tag, schedules = 0, {}
    for kind, item in model.steps:
        if kind == "host":
            after = [(host_node(model, item, traces[p], clock_mhz=clock_mhz, after=after[p]),) for p in range(npus)]
            continue
        for layer in model.segments[item].layers:
            name = layer.op.name
            shares = plans[name]
            programs = {}
            for p, (first, count) in enumerate(shares):
                if count not in programs:
                    programs[count] = share_program(model, layer, count)
                after[p] = tuple(program_trace(cfg, programs[count], traces[p], clock_mhz=clock_mhz,
                                               prefix=f"{name}[{first}:{first + count}]:", after=after[p]))
            if npus == 1:
                continue
            size = _share_bytes(model, layer, max(count for _, count in shares))
            if collective == "coll":
                after = [(traces[p].add_comm_coll(f"{name}:all-gather", CollectiveType.ALL_GATHER, size,
                                                  deps=after[p]),) for p in range(npus)]
                continue
            key = -(-size // chunks)
            if key not in schedules:
                from golden.tacos import synthesize

                schedules[key] = synthesize(topology, "all-gather", chunks, key, seed=seed, policy=policy)
            schedule = schedules[key]
            after = append_schedule(traces, schedule, after=after, tag_base=tag, prefix=f"{name}:all-gather:")
            tag += len(schedule.transfers)
    return traces


def without_memory_nodes(traces: list[Trace]) -> list[Trace]:
    """The traces without their MEM_LOAD / MEM_STORE nodes, every dependency on one passed
    on to that node's own dependencies (so the order they imposed stays). For simulators
    that model no memory: the ASTRA-sim build here aborts in its statistics on traces that
    mix memory nodes with sends and receives."""
    out = []
    for trace in traces:
        new, ids = Trace(trace.npu), {}
        for node in trace.nodes:
            data = {d for dep in node.data_deps for d in ids[dep]}
            ctrl = {d for dep in node.ctrl_deps for d in ids[dep]} - data
            if node.type in (NodeType.MEM_LOAD, NodeType.MEM_STORE):
                ids[node.id] = data | ctrl
                continue
            attrs = {k: v for k, v in node.attrs.items() if k != "is_cpu_op"}
            ids[node.id] = {new.add_node(node.name, node.type, attrs, sorted(data), sorted(ctrl), node.duration_micros)}
        out.append(new)
    return out


def replicated(trace: Trace, npus: int) -> list[Trace]:
    """``trace`` on NPUs ``0 .. npus-1`` (its nodes shared; for a trace without sends or
    receives): e.g. a one-NPU run on the two NPUs ASTRA-sim's smallest network has."""
    _check_npus(npus)
    out = []
    for npu in range(npus):
        copy = Trace(npu)
        copy.nodes = list(trace.nodes)
        out.append(copy)
    return out


def write_scaleout_traces(model, prefix: str | os.PathLike, npus: int, parallel: str = "data", **kw) -> list:
    """:func:`scaleout_traces`, written to ``PREFIX.<npu>.et`` (all built before any is written)."""
    return write_traces(prefix, scaleout_traces(model, npus, parallel, **kw))


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingNPU:
    """The roofline of one training NPU, and the number formats of a step.

    Parameters
    ----------
    peak_tflops : float
        Peak dense throughput, 1e12 operations/s (a multiply-accumulate is two).
    mem_gbps : float
        Memory bandwidth, 1e9 bytes/s.
    act_bytes : int
        Bytes per activation, activation gradient and weight (2: bf16).
    grad_bytes : int
        Bytes per weight gradient, as computed and All-Reduced (4: fp32).
    dgrad_sparse : bool
        The input-gradient GEMM uses the N:M weights' zeros (module docstring).
    """

    peak_tflops: float = 100.0
    mem_gbps: float = 1000.0
    act_bytes: int = 2
    grad_bytes: int = 4
    dgrad_sparse: bool = True

    def __post_init__(self):
        for name in ("peak_tflops", "mem_gbps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise CompileError(f"{name} must be a finite number > 0, not {value!r}")
        for name in ("act_bytes", "grad_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise CompileError(f"{name} must be an integer >= 1, not {value!r}")


@dataclass(frozen=True)
class TrainLayer:
    """One Linear/Conv2d layer of a training step: ``out`` channels, reduction length
    ``k``, ``positions`` outputs per sample and channel, ``inputs`` input elements per
    sample, ``nnz`` weights kept by its ``n:m`` mask (``n == m``: dense), ``bias`` terms."""

    name: str
    kind: str
    out: int
    k: int
    positions: int
    inputs: int
    nnz: int
    bias: int
    n: int
    m: int

    @property
    def weights(self) -> int:
        return self.out * self.k

    @property
    def sparse(self) -> bool:
        return self.nnz < self.weights

    def weight_bytes(self, act_bytes: int) -> int:
        """The weights as the forward pass reads them: dense, or kept values plus indices."""
        if not self.sparse:
            return self.weights * act_bytes
        return self.nnz * act_bytes + -(-self.nnz * max(1, math.ceil(math.log2(self.m))) // 8)


def train_layers(model, sample_shape, n: int, m: int, dense_layers: tuple[str, ...] = ()) -> list[TrainLayer]:
    """The Linear/Conv2d layers of ``model`` (an ``nn.Module``) in execution order, with
    the ``n:m`` masks :mod:`golden.sparse_train` trains (``golden.sparse_train.layer_mask``
    of the layer's weights; ``dense_layers`` and ``n == m`` stay dense). ``sample_shape``:
    one sample's input shape (e.g. ``(1, 8, 8)``)."""
    import copy

    import torch

    from golden import GoldenError
    from golden.lowering import matmul_layers
    from golden.sparse_train import Recipe, SparseTraining, layer_mask

    model = copy.deepcopy(model).eval()
    try:
        layers = {l.name: l for l in matmul_layers(model)}
        recipe = Recipe(kind="dense" if n == m else "srste", n=n, m=m)
        sparse = set(SparseTraining(copy.deepcopy(model), recipe, dense_layers).params)
    except GoldenError as exc:
        raise CompileError(str(exc)) from None
    seen = []
    hooks = [l.module.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, inp[0].shape,
                                                                                          out.shape)))
             for name, l in layers.items()]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *sample_shape)))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for name, in_shape, out_shape in seen:
        layer = layers[name]
        mod = layer.module
        nnz = (int(layer_mask(mod, mod.weight.detach(), n, m).sum()) if name in sparse
               else layer.k * layer.out_features)
        positions = int(math.prod(out_shape[2:])) if len(out_shape) > 2 else 1
        out.append(TrainLayer(name, layer.kind, layer.out_features, layer.k, positions, int(math.prod(in_shape[1:])),
                              nnz, 0 if mod.bias is None else mod.bias.numel(), n if name in sparse else m, m))
    return out


def _products(layer: TrainLayer, batch: int, npu: TrainingNPU, phase: str, first: bool) -> dict:
    """``{product: (ops, bytes)}`` of one layer's forward, weight- and input-gradient GEMMs."""
    a, g = npu.act_bytes, npu.grad_bytes
    rows = batch * layer.positions
    x_bytes, y_bytes = batch * layer.inputs * a, rows * layer.out * a
    w_bytes = layer.weight_bytes(a)
    dw_entries = layer.nnz if phase == "fine-tune" else layer.weights
    out = {"fwd": (2 * rows * layer.nnz, x_bytes + w_bytes + y_bytes),
           "dW": (2 * rows * dw_entries, y_bytes + x_bytes + dw_entries * g)}
    if not first:
        kept = layer.nnz if npu.dgrad_sparse else layer.weights
        out["dX"] = (2 * rows * kept, y_bytes + w_bytes + x_bytes)
    return out


def roofline_ns(ops: int, size: int, npu: TrainingNPU) -> float:
    """A COMP node's time on the roofline (ns): ``max(ops / peak, bytes / bandwidth)``."""
    return max(ops / (npu.peak_tflops * 1e12), size / (npu.mem_gbps * 1e9)) * 1e9


def gradient_bytes(layer: TrainLayer, npu: TrainingNPU, phase: str) -> int:
    """Bytes one layer All-Reduces: every weight gradient (sparse phase) or the kept ones
    (fine-tune), and the bias gradients."""
    entries = layer.nnz if phase == "fine-tune" else layer.weights
    return (entries + layer.bias) * npu.grad_bytes


def training_step_traces(layers: list[TrainLayer], npus: int, batch: int, npu: TrainingNPU = TrainingNPU(), *,
                         phase: str = "sparse", collective: str = "coll", topology=None, chunks: int = 1,
                         seed: int = 0, policy: str = "random") -> list[Trace]:
    """One trace per NPU of a data-parallel training step (module docstring): ``batch``
    samples per NPU, ``phase`` ``"sparse"`` (dense weight gradients) or ``"fine-tune"``
    (a frozen mask)."""
    _check_npus(npus)
    _check_collective(collective, topology, npus)
    if phase not in ("sparse", "fine-tune"):
        raise CompileError(f"phase must be 'sparse' or 'fine-tune', not {phase!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise CompileError(f"the batch per NPU must be an integer >= 1, not {batch!r}")
    if not layers:
        raise CompileError("a training step needs at least one layer")
    products = [_products(l, batch, npu, phase, i == 0) for i, l in enumerate(layers)]
    traces = [Trace(p) for p in range(npus)]
    grads: list[tuple[TrainLayer, list[int]]] = []
    for p, trace in enumerate(traces):
        prev, fwd, dws = (), [], []
        for layer, prod in zip(layers, products):
            node = trace.add_comp(f"{layer.name}:fwd", *prod["fwd"], deps=prev)
            fwd.append(node)
            prev = (node,)
        dy = prev
        for i in reversed(range(len(layers))):
            layer, prod = layers[i], products[i]
            dws.append(trace.add_comp(f"{layer.name}:dW", *prod["dW"], deps=dy + (fwd[i],)))
            if collective == "coll" and npus > 1:
                trace.add_comm_coll(f"{layer.name}:all-reduce", CollectiveType.ALL_REDUCE,
                                    gradient_bytes(layer, npu, phase), deps=(dws[-1],))
            if "dX" in prod:
                dy = (trace.add_comp(f"{layer.name}:dX", *prod["dX"], deps=dy + (fwd[i],), ctrl_deps=(dws[-1],)),)
        grads.append(dws)
    if collective == "tacos" and npus > 1:
        from golden.tacos import synthesize

        tag = 0
        for j, i in enumerate(reversed(range(len(layers)))):
            layer = layers[i]
            size = gradient_bytes(layer, npu, phase)
            schedule = synthesize(topology, "all-reduce", chunks, -(-size // (npus * chunks)), seed=seed,
                                  policy=policy)
            append_schedule(traces, schedule, after=[(grads[p][j],) for p in range(npus)], tag_base=tag,
                            prefix=f"{layer.name}:all-reduce:")
            tag += len(schedule.transfers)
    return traces
