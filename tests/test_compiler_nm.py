"""Lowering a compressed product onto the N:M core's stream (compiler/nm_stream.py)."""

import numpy as np
import pytest

from compiler import CompileError
from compiler.nm_stream import lower_matmul, lower_series, lower_series_parts, pack_beat, unpack_output
from golden import nm, tasd
from spec.nm_core import NMCoreConfig, beat_layout


def test_stream_order_and_size():
    cfg = NMCoreConfig(n=2, m=4, rows=2)
    w = np.arange(1, 3 * 8 + 1).reshape(3, 8)
    values, indices = nm.compress(nm.prune(w, 2, 4), 2, 4)
    x = np.arange(16).reshape(8, 2)
    program = lower_matmul(cfg, values, indices, x)
    # 2 row blocks (3 rows padded to 4) x 2 columns x 2 groups.
    assert len(program.beats) == nm.cycles(cfg, 3, 8, 2) - cfg.latency == 8
    assert program.outputs == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [b["last"] for b in program.beats[:4]] == [0, 1, 0, 1]
    assert program.beats[1]["act"] == [8, 10, 12, 14]            # group 1 of column 0
    assert program.beats[0]["weights"][1]["values"] == [11, 12]   # row 1, group 0
    assert program.beats[4]["weights"][1]["values"] == [0, 0]     # padding row


def test_pack_and_unpack_use_the_hardware_layouts():
    cfg = NMCoreConfig(n=2, m=4, rows=1)
    beat = {"act": [1, -1, 0, 2], "weights": [{"values": [-128, 127], "indices": [1, 3]}], "last": 1}
    bits = pack_beat(cfg, beat)
    assert bits == beat_layout(cfg).const(beat).as_bits()
    assert bits & 0xFF == 1 and (bits >> 8) & 0xFF == 0xFF and bits >> 52 == 1
    assert unpack_output(NMCoreConfig(rows=2), (5 << 32) | 0xFFFFFFFF) == [-1, 5]


def test_assemble_places_results():
    cfg = NMCoreConfig(n=1, m=2, rows=2)
    values, indices = nm.compress(np.array([[1, 0], [0, 2], [3, 0]]), 1, 2)
    program = lower_matmul(cfg, values, indices, np.array([[1], [1]]))
    assert program.assemble([[1, 2], [3, 0]]).tolist() == [[1], [2], [3]]
    with pytest.raises(CompileError, match="expected 2 output transfers, got 1"):
        program.assemble([[1, 2]])


def test_dense_core_takes_sparse_weights_decompressed():
    cfg = NMCoreConfig(n=4, m=4)
    values, indices = nm.compress(np.array([[0, 5, 0, -3]]), 2, 4)
    program = lower_matmul(cfg, values, indices, np.ones(4, dtype=int), n=2)
    assert program.beats[0]["weights"][0] == {"values": [0, 5, 0, -3]}


def test_lowering_errors():
    cfg = NMCoreConfig(n=2, m=4)
    values, indices = nm.compress(np.zeros((1, 8), dtype=int), 2, 4)
    with pytest.raises(CompileError, match="3:4 weights cannot run on a 2:4 core"):
        lower_matmul(cfg, values, indices, np.zeros(8, dtype=int), n=3)
    with pytest.raises(CompileError, match=r"activations must have shape \[K=8\]"):
        lower_matmul(cfg, values, indices, np.zeros(6, dtype=int))


def test_packed_lowering_places_logical_rows():
    """1:4 on a packing 2:4 core: logical row r*2+q in row r's slot q, results at r*2+q."""
    cfg = NMCoreConfig(n=2, m=4, rows=2, packing=True)
    w = np.zeros((5, 4), dtype=int)
    w[np.arange(5), np.arange(5) % 4] = np.arange(1, 6)          # row l: value l+1 at l % 4
    values, indices = nm.compress(w, 1, 4)
    program = lower_matmul(cfg, values, indices, np.ones((4, 1), dtype=int), n=1)
    assert program.n_active == 1 and program.pack == 2
    assert len(program.beats) == nm.cycles(cfg, 5, 4, 1, n_active=1) - cfg.latency == 2
    first = program.beats[0]["weights"]
    assert first[0] == {"values": [1, 2], "indices": [0, 1]}
    assert first[1] == {"values": [3, 4], "indices": [2, 3]}
    assert program.beats[1]["weights"][0] == {"values": [5, 0], "indices": [0, 0]}
    # Results come back at r * n + q.
    y = program.assemble([[10, 11, 12, 13], [14, 0, 0, 0]])
    assert y.ravel().tolist() == [10, 11, 12, 13, 14]


def test_series_on_a_packing_core_is_two_products():
    cfg = NMCoreConfig(n=2, m=4, rows=2, packing=True)
    rng = np.random.default_rng(3)
    terms = tasd.decompose(rng.integers(-128, 128, (3, 8)), "2:4+1:4")
    parts = lower_series_parts(cfg, terms, rng.integers(-128, 128, (8, 2)))
    assert [(p.n_active, p.pack) for p in parts] == [(2, 1), (1, 2)]
    assert sum(len(p.beats) + cfg.latency for p in parts) == tasd.series_cycles("2:4+1:4", cfg, 3, 8, 2)
    with pytest.raises(CompileError, match="runs as 2 products on a packing 2:4 core .*lower_series_parts"):
        lower_series(cfg, terms, np.zeros((8, 2), dtype=int))
    # Without packing: one product, as before.
    assert lower_series(NMCoreConfig(n=2, m=4, rows=2), terms, np.zeros((8, 2), dtype=int)).n_active == 2
