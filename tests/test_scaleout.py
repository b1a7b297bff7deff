"""compiler.scaleout: a compiled model's traces on P NPUs (data and tensor parallel, COMM_COLL
and TACOS All-Gathers) and a data-parallel N:M training step; read back by mlc-chakra's
reader, run through ASTRA-sim against what the traces predict, and every bad input."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from compiler import CompileError, astra
from compiler.chakra import CollectiveType, NodeType, Trace, read_traces, write_traces
from compiler.model import compile_model
from compiler.scaleout import (TrainingNPU, gradient_bytes, replicated, roofline_ns, scaleout_traces,
                               share_program, split_channels, train_layers, training_step_traces,
                               without_memory_nodes)
from golden.digits import DigitsCNN
from golden.tacos import generate
from spec.accel import AcceleratorConfig
from spec.isa import WORD_BYTES, bytes_to_words, decode
from tessera.cli import main

from .test_chakra import _jsonize

#: Our GB/s equal to ASTRA-sim's 50 "GB/s" (2^30 bytes/s).
BANDWIDTH = 50 * astra.GIB_PER_GB
#: Memory so fast that a MEM node takes its 1 ns latency (0 ns events abort ASTRA-sim).
FAST_MEMORY = astra.Memory(bandwidth_gbps=1e6, latency_ns=1)
needs_astra = pytest.mark.skipif(astra.find() is None, reason=astra.missing() or "")


class Even(nn.Module):
    """conv(2->16, 3x3, pad 1) + ReLU, conv(16->16, stride 2) + ReLU, max pool, flatten,
    linear(16->16) + ReLU, linear(16->16): four groups of four channels per layer, so 1, 2
    or 4 NPUs take equal shares."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.f1 = nn.Linear(16, 16)
        self.f2 = nn.Linear(16, 16)

    def forward(self, x):
        x = self.pool(torch.relu(self.c2(torch.relu(self.c1(x)))))
        return self.f2(torch.relu(self.f1(x.flatten(1))))


def even():
    torch.manual_seed(0)
    ep = torch.export.export(Even().eval(), (torch.randn(1, 2, 4, 4),))
    return ep, torch.randn(32, 2, 4, 4).numpy()


@pytest.fixture(scope="module")
def model():
    ep, calib = even()
    return compile_model(ep, calib, AcceleratorConfig(), batch=2)


def layers_of(model):
    return [layer for seg in model.segments for layer in seg.layers]


def comp_ns(trace) -> int:
    return 1000 * sum(n.duration_micros for n in trace.nodes if n.type == NodeType.COMP)


def ancestors(nodes, node_id) -> set:
    """Every node ``node_id`` waits for, directly or not."""
    seen, todo = set(), [node_id]
    while todo:
        n = nodes[todo.pop()]
        for dep in n.data_deps + n.ctrl_deps:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


# --------------------------------------------------------------------------- the shares
def test_one_npus_share_is_the_compiled_layer_instruction_for_instruction(model):
    """With P = 1 the share program of every layer is the compiled segment's instructions
    for that layer (the token bridge and the bridging token flags aside), so the tensor-
    parallel traces are built from the compiled program's own lowering and costs."""
    flags = ("pop_prev", "pop_next", "push_prev", "push_next", "dram")
    for seg in model.segments:
        words = bytes_to_words(seg.dram[seg.prog_addr:seg.prog_addr + seg.prog_len * WORD_BYTES])
        for k, layer in enumerate(seg.layers):
            first, last = seg.insn_ranges[layer.op.name]
            theirs = [decode(w) for w in words[first + (k > 0):last + 1]]
            mine = [decode(w) for w in share_program(model, layer, len(layer.bias))][:-1]      # FINISH
            strip = lambda insns: [(i.opcode, {f: v for f, v in i.fields.items() if f not in flags})  # noqa: E731
                                   for i in insns]
            assert strip(mine) == strip(theirs), layer.op.name


def test_shares_split_channels_and_costs_between_the_npus(model):
    """Channels split in whole groups of lcm(rows, m), as even as they go; the NPUs' GEMM
    operations and weight bytes add up to one NPU's, while every NPU loads the whole input."""
    assert split_channels(16, 4, 4) == [(0, 4), (4, 4), (8, 4), (12, 4)]
    assert split_channels(10, 4, 2) == [(0, 8), (8, 2)]
    assert split_channels(20, 4, 3) == [(0, 8), (8, 8), (16, 4)]

    def totals(trace, layer):
        nodes = [n for n in trace.nodes if n.name.startswith(layer + "[")]
        gemm = sum(n.attrs["num_ops"] for n in nodes if n.name.endswith(":GEMM"))
        loads = sum(n.attrs["tensor_size"] for n in nodes if n.type == NodeType.MEM_LOAD)
        return gemm, loads

    one = scaleout_traces(model, 1, "tensor")[0]
    four = scaleout_traces(model, 4, "tensor")
    for name in ("c1", "c2"):
        gemm1, load1 = totals(one, name)
        parts = [totals(t, name) for t in four]
        assert sum(g for g, _ in parts) == gemm1 > 0
        assert all(g == gemm1 // 4 for g, _ in parts)
        assert all(load1 / 4 < load < load1 for _, load in parts)      # weights split, input whole


# ------------------------------------------------------------------- traces and Chakra's reader
@pytest.mark.parametrize("argv, npus", [
    (["--npus", "2", "--parallel", "data"], 2),
    (["--npus", "2", "--parallel", "tensor"], 2),
    (["--npus", "4", "--parallel", "tensor", "--collective", "tacos", "--topology", "ring:4"], 4)])
def test_cli_traces_are_read_back_node_for_node_by_chakras_reader(tmp_path, capsys, argv, npus):
    ep, calib = even()
    torch.export.save(ep, str(tmp_path / "even.pt2"))
    np.save(tmp_path / "calib.npy", calib)
    prefix = tmp_path / "tr" / "even"
    assert main(["compile", str(tmp_path / "even.pt2"), "--calib", str(tmp_path / "calib.npy"), "-o",
                 str(tmp_path / "out"), "--chakra", str(prefix), *argv]) == 0
    assert f"wrote {npus} Chakra trace(s)" in capsys.readouterr().out
    traces = read_traces(prefix, npus)
    kinds = {n.type for nodes in traces for n in nodes}
    want = {"data": {NodeType.COMP, NodeType.MEM_LOAD, NodeType.MEM_STORE},
            "tensor": {NodeType.COMP, NodeType.MEM_LOAD, NodeType.MEM_STORE,
                       NodeType.COMM_SEND if "tacos" in argv else NodeType.COMM_COLL}}[argv[3]]
    assert want <= kinds
    for npu in (0, npus - 1):
        meta, *docs = _jsonize(prefix.with_name(f"even.{npu}.et"), tmp_path)
        assert meta == {"version": "0.0.4"} and len(docs) == len(traces[npu])
        for node, doc in zip(traces[npu], docs):
            assert doc["name"] == node.name and doc["type"] == f"{node.type.name}_NODE"
            assert [int(d) for d in doc.get("dataDeps", [])] == list(node.data_deps)
            assert [int(d) for d in doc.get("ctrlDeps", [])] == list(node.ctrl_deps)
            attrs = {a["name"]: a for a in doc["attr"]}
            for key in ("comm_type", "comm_size", "num_ops"):
                if key in node.attrs:
                    assert int(attrs[key].get("int64Val", 0)) == node.attrs[key]


def test_every_layer_waits_for_the_collective_after_the_layer_before(model):
    """On every NPU: the All-Gather after layer k depends on layer k's last nodes, and every
    node of layer k+1 (and of a host op in between) waits for it; with TACOS, every node of
    layer k+1 waits for every receive of layer k's schedule on that NPU."""
    names = [l.op.name for l in layers_of(model)]
    for traces in (scaleout_traces(model, 2, "tensor"),
                   scaleout_traces(model, 4, "tensor", collective="tacos", topology=generate("ring:4"))):
        for trace in traces:
            nodes = trace.nodes
            for before, after in zip(names, names[1:]):
                comm = [n.id for n in nodes if n.name.startswith(f"{before}:all-gather")]
                waits = [n for n in nodes if n.name.startswith(f"{after}[")]
                assert comm and waits
                layer_k = {n.id for n in nodes if n.name.startswith(f"{before}[")}
                for c in comm:
                    assert ancestors(nodes, c) & layer_k
                recvs = [c for c in comm if nodes[c].type != NodeType.COMM_SEND]
                for node in waits:
                    assert set(recvs) <= ancestors(nodes, node.id), (before, node.name)
            host = [n for n in nodes if n.name.startswith("host:")]
            assert host and all(any(nodes[a].name.startswith("c2:all-gather") for a in ancestors(nodes, h.id))
                                for h in host)


# ------------------------------------------------------------------------------ ASTRA-sim
@needs_astra
def test_astra_sim_runs_one_npu_in_exactly_its_compute_time(model, tmp_path):
    """P = 1: ASTRA-sim (roofline off) runs the trace in the sum of its COMP durations:
    exactly, with the memory nodes dropped; within 1 ns per memory node with them (each
    takes its 1 ns latency, overlapping computation)."""
    trace = scaleout_traces(model, 1, "tensor", clock_mhz=1)[0]
    write_traces(tmp_path / "bare", replicated(without_memory_nodes([trace])[0], 2))
    assert astra.run(tmp_path / "bare", astra.Network.switch(2)).time_ns == comp_ns(trace)
    write_traces(tmp_path / "mem", replicated(trace, 2))
    mems = sum(n.type in (NodeType.MEM_LOAD, NodeType.MEM_STORE) for n in trace.nodes)
    got = astra.run(tmp_path / "mem", astra.Network.switch(2), memory=FAST_MEMORY).time_ns
    assert comp_ns(trace) <= got <= comp_ns(trace) + mems


@needs_astra
def test_astra_sim_time_is_compute_plus_each_all_gather(model, tmp_path):
    """P = 2 on a switch, COMM_COLL All-Gathers: every layer waits for the gather before it,
    so ASTRA-sim's time is the (equal) compute of an NPU plus each All-Gather of its
    comm_size run alone, within 1 ns per memory node."""
    traces = scaleout_traces(model, 2, "tensor", clock_mhz=1)
    assert comp_ns(traces[0]) == comp_ns(traces[1]) < comp_ns(scaleout_traces(model, 1, "tensor", clock_mhz=1)[0])
    network = astra.Network.switch(2)
    write_traces(tmp_path / "tp", traces)
    got = astra.run(tmp_path / "tp", network, memory=FAST_MEMORY).time_ns
    gathers = 0
    sizes = [n.attrs["comm_size"] for n in traces[0].nodes if n.type == NodeType.COMM_COLL]
    # batch 2 x output pixels x 8 channels (half of 16) x bytes (int8; int32 accumulators at the end)
    assert sizes == [2 * 16 * 8, 2 * 4 * 8, 2 * 8, 2 * 8 * 4]
    for i, size in enumerate(sizes):
        alone = [Trace(p) for p in range(2)]
        for t in alone:
            t.add_comm_coll("ag", CollectiveType.ALL_GATHER, size)
        write_traces(tmp_path / f"ag{i}", alone)
        gathers += astra.run(tmp_path / f"ag{i}", network).time_ns
    mems = sum(n.type in (NodeType.MEM_LOAD, NodeType.MEM_STORE) for n in traces[0].nodes)
    assert comp_ns(traces[0]) + gathers <= got <= comp_ns(traces[0]) + gathers + mems


@needs_astra
def test_astra_sim_time_with_tacos_gathers_is_compute_plus_n_minus_1_link_times(model, tmp_path):
    """P = 4, TACOS All-Gathers on a unidirectional ring (one chunk per NPU: exactly 3 link
    times each, latency + bytes / bandwidth): ASTRA-sim's time is the compute plus those
    link times, to within a ns per transfer on the path (its integer ns)."""
    topo = generate("ring:4", BANDWIDTH, 0.5)
    traces = without_memory_nodes(scaleout_traces(model, 4, "tensor", clock_mhz=1, collective="tacos",
                                                  topology=topo))
    write_traces(tmp_path / "tacos", traces)
    got = astra.run(tmp_path / "tacos", astra.Network.ring(4)).time_ns
    sizes = [2 * 16 * 4, 2 * 4 * 4, 2 * 4, 2 * 4 * 4]        # as above, 4 channels per NPU
    links = sum(3 * topo.links[0].time_ps(s) for s in sizes) / 1000
    assert abs(got - (comp_ns(traces[0]) + links)) <= 3 * len(sizes)


# ------------------------------------------------------------------------------ bad input
def test_bad_scaleout_input_is_one_clear_error(tmp_path, capsys, model):
    ep, calib = even()
    torch.export.save(ep, str(tmp_path / "even.pt2"))
    np.save(tmp_path / "calib.npy", calib)
    base = ["compile", str(tmp_path / "even.pt2"), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "o"),
            "--chakra", str(tmp_path / "tr")]
    cases = [(["--npus", "0"], "the NPU count must be an integer >= 1, not 0"),
             (["--npus", "3", "--parallel", "tensor", "--collective", "tacos", "--topology", "ring:4"],
              "has 4 NPUs but the traces are for 3 (NPU count does not match)"),
             (["--npus", "8", "--parallel", "tensor"],
              "layer 'c1' has 16 output channels, 4 group(s) of 4 (the core's rows and m): "
              "it cannot be split into 8 parts"),
             (["--npus", "2", "--parallel", "tensor", "--collective", "tacos"], "needs a topology"),
             (["--npus", "2", "--collective", "tacos", "--topology", "ring:2"], "data-parallel inference has no")]
    for extra, message in cases:
        assert main(base + extra) == 1, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists() and not list(tmp_path.glob("tr*"))
    assert main(base[:-2] + ["--npus", "2"]) == 2
    assert "give --chakra PREFIX" in capsys.readouterr().err
    with pytest.raises(CompileError, match="parallel must be one of data, tensor, not 'pipeline'"):
        scaleout_traces(model, 2, "pipeline")


# ----------------------------------------------------------------------------- training step
@pytest.fixture(scope="module")
def digits_layers():
    torch.manual_seed(0)
    net = DigitsCNN()
    return {nm: train_layers(net, (1, 8, 8), *nm, dense_layers=("conv1",)) for nm in ((4, 4), (2, 4), (1, 8))}


def test_training_step_flops_are_the_ones_nm_saves(digits_layers):
    """Forward and input-gradient GEMMs cost bQ * nnz MACs (nnz = K C N / M from
    golden.sparse_train's masks; conv1 stays dense, K = 9), the weight gradient bQKC in the
    sparse phase and bQ * nnz with a frozen mask; the first layer has no input gradient;
    the All-Reduce carries every weight gradient (sparse phase) or the kept ones."""
    npu, batch = TrainingNPU(), 8
    dense = digits_layers[(4, 4)]
    assert [(l.name, l.out, l.k, l.positions) for l in dense] == [("conv1", 16, 9, 64), ("conv2", 32, 144, 64),
                                                                  ("fc1", 64, 512, 1), ("fc2", 10, 64, 1)]
    for (n, m), layers in digits_layers.items():
        for phase in ("sparse", "fine-tune"):
            trace = training_step_traces(layers, 2, batch, npu, phase=phase)[0]
            ops = {node.name: node.attrs["num_ops"] for node in trace.nodes if node.type == NodeType.COMP}
            coll = {node.name: node.attrs["comm_size"] for node in trace.nodes if node.type == NodeType.COMM_COLL}
            assert "conv1:dX" not in ops
            for layer, d in zip(layers, dense):
                keep = d.weights if layer.name == "conv1" else d.weights * n // m
                assert layer.nnz == keep
                rows = batch * layer.positions
                assert ops[f"{layer.name}:fwd"] == 2 * rows * keep
                assert ops[f"{layer.name}:dW"] == 2 * rows * (keep if phase == "fine-tune" else d.weights)
                if layer.name != "conv1":
                    assert ops[f"{layer.name}:dX"] == 2 * rows * keep
                assert coll[f"{layer.name}:all-reduce"] == 4 * ((keep if phase == "fine-tune" else d.weights)
                                                              + d.out)
    with pytest.raises(CompileError, match="layer 'conv1' has a reduction length of 9"):
        train_layers(DigitsCNN(), (1, 8, 8), 1, 8)


def test_training_step_dependencies(digits_layers):
    """Forward in order; per layer backward, dW and dX wait for the gradient from the layer
    above (and its own forward), dX after dW; each layer's All-Reduce waits for its dW only
    (so it overlaps the backward of the layers below); TACOS's schedule likewise."""
    layers = digits_layers[(2, 4)]
    for trace in (training_step_traces(layers, 4, 8)[0],
                  training_step_traces(layers, 4, 8, collective="tacos", topology=generate("ring:4"))[0]):
        nodes = trace.nodes
        by = {n.name: n for n in nodes}
        for a, b in zip(layers, layers[1:]):
            assert by[f"{a.name}:fwd"].id in by[f"{b.name}:fwd"].data_deps
            assert by[f"{b.name}:dX"].id in by[f"{a.name}:dW"].data_deps
            assert by[f"{b.name}:dW"].id in by[f"{b.name}:dX"].ctrl_deps
        for i, layer in enumerate(layers):
            comm = [n for n in nodes if n.name.startswith(f"{layer.name}:all-reduce")]
            assert comm
            below = {f"{l.name}:{p}" for l in layers[:i] for p in ("dW", "dX")} | {f"{layer.name}:dX"}
            for c in comm:
                waits = {nodes[a].name for a in ancestors(nodes, c.id) if nodes[a].type == NodeType.COMP}
                assert f"{layer.name}:dW" in waits and not waits & below, (c.name, waits & below)


@needs_astra
def test_training_step_in_astra_sim_computes_on_the_roofline(digits_layers, tmp_path):
    """16 NPUs on a 4x4 torus, roofline on: each NPU's compute time (finish minus exposed
    communication) is the sum of its GEMMs' max(ops / peak, bytes / bandwidth), to 1 ns per
    node (ASTRA-sim truncates each to whole ns); the step is never shorter than its compute
    or than the last layer's All-Reduce alone."""
    npu = TrainingNPU()
    layers = digits_layers[(1, 8)]
    traces = training_step_traces(layers, 16, 256, npu)
    write_traces(tmp_path / "step", traces)
    system = astra.System(roofline=True, peak_tflops=npu.peak_tflops, local_mem_gbps=npu.mem_gbps, dims=2)
    result = astra.run(tmp_path / "step", astra.Network.torus(4, 4), system)
    comps = [n for n in traces[0].nodes if n.type == NodeType.COMP]
    compute = sum(roofline_ns(n.attrs["num_ops"], n.attrs["tensor_size"], npu) for n in comps)
    for finished, exposed in zip(result.finished_ns, result.exposed_ns):
        assert compute - len(comps) <= finished - exposed <= compute
    alone = [Trace(p) for p in range(16)]
    for t in alone:
        t.add_comm_coll("ar", CollectiveType.ALL_REDUCE, gradient_bytes(layers[0], npu, "sparse"))
    write_traces(tmp_path / "ar", alone)
    assert result.time_ns >= max(compute, astra.run(tmp_path / "ar", astra.Network.torus(4, 4), system).time_ns)
    assert math.isclose(result.time_ns, max(result.finished_ns))
