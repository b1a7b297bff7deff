"""The SUSHI golden model (golden/sushi/): the SuperNet table and its blocks, the cost
model, query streams, the exact cache models, the choice rule, SushiSched, its oracle
and the baselines.

Uses the small digits SuperNet (``golden.sushi.digits_cnn.SMALL``, 8 SubNets) the SGS
buffer's bench uses (trained once, cached)."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import GoldenError, nm, sushi
from golden.sushi import baselines, digits_cnn, supernet
from spec.sgs_buffer import Op, SGSBufferConfig

ROOT = Path(__file__).resolve().parent.parent
SPEC = digits_cnn.SMALL
BLOCK_BYTES = 16


@pytest.fixture(scope="module")
def space():
    return sushi.SubNetSpace(digits_cnn.small_supernet(), BLOCK_BYTES, sushi.CORE)


@pytest.fixture(scope="module")
def platform():
    return sushi.Platform(SGSBufferConfig(capacity_words=128, block_words=4, tags=28, word_width=32, id_width=8),
                          offchip_bytes_per_cycle=4)


# ------------------------------------------------------------------ imports

def test_cache_model_and_schedulers_import_without_torch():
    """The bit-true cache model (what the instruction-set simulator calls) and the whole
    package load without torch."""
    for module in ("golden.sushi.cache_model", "golden.sushi"):
        code = f"import sys, {module}; print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
        assert out.stdout.strip() == "False", f"import {module} loaded torch"


# ------------------------------------------------------------------ SuperNet, blocks

@pytest.mark.parametrize("kwargs, message", [
    ({"conv1": (8, 4)}, "ascending"), ({"conv2": ()}, "ascending"), ({"hidden": (0, 4)}, "positive"),
    ({"hidden": [4, 8]}, "tuple"), ({"classes": 3}, "10 classes"),
])
def test_cnn_spec_rejects_bad_shapes(kwargs, message):
    with pytest.raises(GoldenError, match=message):
        digits_cnn.ElasticCNNSpec(**kwargs)


@pytest.mark.parametrize("block_bytes", [2, 4, 8, 16, 32, 64, 128, 256, 1024, 16384])
def test_tile_shape_is_square_or_twice_as_wide(block_bytes):
    rows, cols = sushi.tile_shape(block_bytes)
    assert rows * cols == block_bytes and cols in (rows, 2 * rows)


@pytest.mark.parametrize("block_bytes", [0, 3, 24, -16, True])
def test_tile_shape_rejects_non_powers_of_two(block_bytes):
    with pytest.raises(GoldenError, match=f"block_bytes={block_bytes}"):
        sushi.tile_shape(block_bytes)


def test_blocks_partition_the_stored_matrices(space):
    """Reassembling each matrix from its blocks gives the stored int8 matrix (zero padded),
    and the largest SubNet reads every block exactly once."""
    net = space.net
    tr, tc = space.tile
    for i, m in enumerate(net.matrices):
        assert m.dtype == np.int8 and np.abs(m.astype(int)).max() <= 127
        rows, cols = space.grid[i]
        w = np.zeros((rows * tr, cols * tc), dtype=np.int64)
        for r in range(rows):
            for c in range(cols):
                w[r * tr:(r + 1) * tr, c * tc:(c + 1) * tc] = space.block_data(space.offsets[i] + r * cols + c).reshape(tr, tc)
        expected = np.zeros_like(w)
        expected[:m.shape[0], :m.shape[1]] = m
        assert np.array_equal(w, expected)
    largest = space.by_name[digits_cnn._name(SPEC.largest())]
    assert sorted(largest.blocks) == list(range(space.n_blocks))


def test_subnets_read_exactly_the_tiles_of_their_weights(space):
    """Each SubNet's blocks, read directly off the architecture: conv1 rows < c1; conv2
    rows < c2 and, at each of the 9 kernel positions, input channels < c1 (K in (kh, kw,
    C) order); fc1 rows < h and channels < c2 at each of the 4 positions; head columns < h."""
    c1m, c2m = SPEC.conv1[-1], SPEC.conv2[-1]
    tr, tc = space.tile
    for info in space.subnets:
        c1, c2, h = (info.subnet.choice[k] for k in ("c1", "c2", "h"))
        used = [(range(c1), range(9)),
                (range(c2), [p * c1m + c for p in range(9) for c in range(c1)]),
                (range(h), [p * c2m + c for p in range(4) for c in range(c2)]),
                (range(10), range(h))]
        expected = []
        for i, (rows, cols) in enumerate(used):
            expected += [space.offsets[i] + r * space.grid[i][1] + c
                         for r in sorted({x // tr for x in rows}) for c in sorted({x // tc for x in cols})]
        assert list(info.blocks) == expected
        for other in space.subnets:
            if all(info.subnet.choice[k] <= other.subnet.choice[k] for k in ("c1", "c2", "h")):
                assert set(info.blocks) <= set(other.blocks)


def test_unknown_block_is_an_error(space):
    for bad in (-1, space.n_blocks, 10**6, True):
        with pytest.raises(GoldenError, match="unknown weight block"):
            space.block_data(bad)


def test_accuracy_is_measured_with_the_int8_weights(space):
    """Every SubNet's per-image results, recomputed from the stored int8 matrices, scales
    and biases with the core's im2col (golden.lowering) in float64."""
    import torch
    from torch import nn

    from golden.digits import load_data
    from golden.lowering import input_matrix

    data = load_data()
    net = space.net
    w = [m.astype(np.float64) * s[:, None] for m, s in zip(net.matrices, net.scales)]
    c1m, c2m = SPEC.conv1[-1], SPEC.conv2[-1]
    for index, info in enumerate(space.subnets):
        c1, c2, h = (info.subnet.choice[k] for k in ("c1", "c2", "h"))
        x = input_matrix(nn.Conv2d(1, c1, 3, padding=1), data.x_test.double()).numpy()      # [N*64, 9]
        y = np.maximum(x @ w[0][:c1].T + net.biases[0][:c1], 0).reshape(-1, 8, 8, c1)
        y = y.reshape(-1, 4, 2, 4, 2, c1).max(axis=(2, 4))                                  # maxpool 2
        y = torch.from_numpy(y).permute(0, 3, 1, 2)
        x = input_matrix(nn.Conv2d(c1, c2, 3, padding=1), y).numpy()                          # [N*16, 9*c1]
        k2 = w[1][:c2].reshape(c2, 9, c1m)[:, :, :c1].reshape(c2, -1)
        y = np.maximum(x @ k2.T + net.biases[1][:c2], 0).reshape(-1, 4, 4, c2)
        y = y.reshape(-1, 2, 2, 2, 2, c2).max(axis=(2, 4)).reshape(len(y), -1)               # position outer
        k3 = w[2][:h].reshape(h, 4, c2m)[:, :, :c2].reshape(h, -1)
        y = np.maximum(y @ k3.T + net.biases[2][:h], 0)
        logits = y @ w[3][:, :h].T + net.biases[3]
        correct = 100.0 * (logits.argmax(1) == data.y_test.numpy())
        assert np.array_equal(correct, net.item_quality[index]), info.name
        assert info.accuracy == pytest.approx(correct.mean())
    # Sandwich training: every SubNet far better than chance, the largest the best.
    assert space.accuracies.min() > 40
    assert space.by_name[digits_cnn._name(SPEC.largest())].accuracy == space.accuracies.max()


def test_supernet_is_cached_and_round_trips(space, tmp_path):
    again = digits_cnn.small_supernet()
    assert all(np.array_equal(a, b) for a, b in zip(again.matrices, space.net.matrices))
    path = tmp_path / "net.npz"
    space.net.save(path)
    loaded = supernet.SuperNet.load(path)
    assert loaded.subnets == space.net.subnets and np.array_equal(loaded.item_quality, space.net.item_quality)
    assert [s.choice for s in loaded.subnets] == [s.choice for s in space.net.subnets]


def test_a_corrupt_cache_file_is_named_and_rebuilt(space, tmp_path, caplog):
    path = tmp_path / "net.npz"
    path.write_bytes(b"not a numpy file")
    with pytest.raises(GoldenError, match=f"cached SuperNet {path} is unreadable"):
        supernet.SuperNet.load(path)
    with caplog.at_level(logging.WARNING):
        net = supernet.cached(path, lambda: space.net)
    assert net is space.net and f"the cached SUSHI SuperNet {path} is unreadable" in caplog.text
    assert "removed it, training again" in caplog.text
    assert supernet.SuperNet.load(path).name == "digits-cnn"


def test_a_table_must_be_consistent(space):
    net = space.net
    bad = supernet.SubNet("x", {}, (supernet.MatmulUse(0, ((0, 999),), ((0, 9),), 1),))
    with pytest.raises(GoldenError, match="reads rows"):
        supernet.SuperNet("t", "m", net.matrices, net.scales, net.biases, (bad,), np.zeros(1), np.zeros((1, 3)), 1.0)
    with pytest.raises(GoldenError, match="ascending"):
        supernet.MatmulUse(0, ((4, 2),), ((0, 1),), 1)


# ------------------------------------------------------------------------ cost model

def test_compute_cycles_come_from_the_core_model(space):
    for info in space.subnets:
        want = sum(nm.cycles(sushi.CORE, u.out, u.k, u.columns) for u in info.subnet.uses)
        assert info.compute_cycles == want
        assert [layer[:2] for layer in info.layers] == [(u.out, u.k) for u in info.subnet.uses]


def test_latency_model(space):
    bw = 4
    none = np.zeros(space.n_blocks, dtype=bool)
    full = np.ones(space.n_blocks, dtype=bool)
    rng = np.random.default_rng(0)
    some = rng.random(space.n_blocks) < 0.5
    for info in space.subnets:
        want = sum(max(cycles, -(-len(blocks) * BLOCK_BYTES // bw)) for _, _, cycles, blocks in info.layers)
        assert space.latencies(none, bw)[info.index] == want
        assert space.latencies(full, bw)[info.index] == info.compute_cycles == space.compute_latencies()[info.index]
        want = sum(max(cycles, -(-sum(not some[b] for b in blocks) * BLOCK_BYTES // bw))
                   for _, _, cycles, blocks in info.layers)
        assert space.latencies(some, bw)[info.index] == want
        assert space.missed_bytes(some)[info.index] == sum(not some[b] for b in info.blocks) * BLOCK_BYTES
    more = some | (rng.random(space.n_blocks) < 0.5)
    assert np.all(space.latencies(more, bw) <= space.latencies(some, bw))
    assert np.array_equal(space.latencies(none, bw, extra_bytes=10), space.latencies(none, bw) + 3)
    many = np.array([none, some, more, full])
    latencies, missed = space.price_many(many, bw)
    assert np.array_equal(latencies, np.array([space.latencies(m, bw) for m in many]))
    assert np.array_equal(missed, np.array([space.missed_bytes(m) for m in many]))


def test_pareto_front_is_the_non_dominated_set(space):
    bw = 4
    acc, lat, size = space.accuracies, space.no_cache_latencies(bw), space.sizes
    front = set(space.pareto_front(bw))
    for s in range(len(acc)):
        dominated = any(acc[o] >= acc[s] and lat[o] <= lat[s] and size[o] <= size[s]
                        and (acc[o], lat[o], size[o]) != (acc[s], lat[s], size[s]) for o in range(len(acc)))
        assert (s in front) == (not dominated)
    assert int(np.argmax(acc)) in front


def test_platform_is_its_buffer_config():
    cfg = SGSBufferConfig(capacity_words=96, block_words=8, tags=10, word_width=16)
    p = sushi.Platform(cfg, 4)
    assert (p.capacity_blocks, p.persistent_blocks, p.block_words, p.block_bytes, p.word_bytes) == \
        (cfg.slots, cfg.tags, cfg.block_words, cfg.block_bytes, cfg.word_bytes)
    q = sushi.Platform.of_size(8192, 64)
    assert q.buffer == SGSBufferConfig(capacity_words=2048, block_words=16, tags=126)
    assert q.offchip_bytes_per_cycle == sushi.OFFCHIP_BYTES_PER_CYCLE


def test_platform_errors():
    with pytest.raises(GoldenError, match="a buffer of 100 bytes is smaller than one block of 256 bytes"):
        sushi.Platform.of_size(100, 256)
    with pytest.raises(GoldenError, match="leaves no persistent slot"):
        sushi.Platform.of_size(512, 256)
    with pytest.raises(GoldenError, match="offchip_bytes_per_cycle must be an integer >= 1, not 0"):
        sushi.Platform(SGSBufferConfig(), 0)
    with pytest.raises(GoldenError, match="needs an SGSBufferConfig"):
        sushi.Platform({"capacity_words": 16})


# --------------------------------------------------------------------------- streams

def test_streams_are_seeded_and_differ(space, platform):
    a = sushi.make_stream(space, platform, "steady", 200, seed=3)
    assert a == sushi.make_stream(space, platform, "steady", 200, seed=3)
    assert a != sushi.make_stream(space, platform, "steady", 200, seed=4)
    lat = space.no_cache_latencies(platform.offchip_bytes_per_cycle)
    for kind in sushi.STREAMS:
        stream = sushi.make_stream(space, platform, kind, 300, seed=1)
        targets = np.array([q.latency_target for q in stream])
        assert lat.min() - 1 <= targets.min() and targets.max() <= lat.max() + 1
        assert all(0 <= q.item < space.items for q in stream)
        floors = {q.accuracy_floor for q in stream if q.accuracy_floor is not None}
        assert floors and floors <= {float(np.quantile(space.accuracies, x)) for x in (0.5, 0.75)}
    drift = np.array([q.latency_target for q in sushi.make_stream(space, platform, "drift", 400, seed=1)])
    assert drift[:100].mean() < drift[-100:].mean()     # targets loosen over the stream
    # Bursty: runs of ten or more tight targets (the lowest third, in log scale).
    tight = np.exp(np.log(lat.min()) + (np.log(lat.max()) - np.log(lat.min())) / 3)
    bursty = [q.latency_target <= tight for q in sushi.make_stream(space, platform, "bursty", 400, seed=1)]
    runs = [len(r) for r in "".join("t" if x else "." for x in bursty).split(".") if r]
    assert max(runs) >= 10


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "poisson"}, "unknown query stream 'poisson'; streams: steady, drift, phased, bursty"),
    ({"queries": 0}, "queries >= 1, not queries=0"), ({"phase": 0}, "phase >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0, not seed=-1"),
])
def test_stream_errors(space, platform, kwargs, message):
    args = {"kind": "steady", "queries": 4} | kwargs
    with pytest.raises(GoldenError, match=message):
        sushi.make_stream(space, platform, args.pop("kind"), **args)


# ---------------------------------------------------------------------- cache models

commands = st.lists(st.tuples(st.sampled_from([Op.READ, Op.READ, Op.PIN, Op.DROP]), st.integers(0, 11),
                              st.integers(0, 4)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(commands)
def test_sgs_cache_model_against_a_naive_twin(ops):
    """Counts equal a direct reading of the buffer's rules, and off-chip words are always
    block_words x (misses + pins)."""
    model = sushi.SGSCacheModel(tags=5, block_words=3, n_blocks=12)
    slots = {}
    hits = misses = pins = 0
    for op, block, slot in ops:
        model.apply(sushi.Command(op, block, slot))
        if op is Op.READ:
            if block in slots.values():
                hits += 1
            else:
                misses += 1
        elif op is Op.PIN:
            slots = {s: b for s, b in slots.items() if b != block}
            slots[slot] = block
            pins += 1
        else:
            slots.pop(slot, None)
        assert model.resident == set(slots.values())
        assert {s: b for s, b in enumerate(model.slots) if b is not None} == slots
    assert model.counters() == {"hits": hits, "misses": misses, "pins": pins,
                                "offchip_words": 3 * (misses + pins)}
    assert len(model.fetches) == misses + pins


def test_sgs_cache_model_errors():
    model = sushi.SGSCacheModel(tags=4, block_words=8, n_blocks=10)
    with pytest.raises(GoldenError, match="unknown block 10"):
        model.apply(sushi.Command(Op.READ, 10))
    with pytest.raises(GoldenError, match="unknown block -1"):
        model.apply(sushi.Command(Op.PIN, -1, 0))
    with pytest.raises(GoldenError, match="slot 4 is outside the persistent region"):
        model.apply(sushi.Command(Op.PIN, 1, 4))
    for bad in ("read", Op.RESERVED, 0):
        with pytest.raises(GoldenError, match="unknown buffer command .*; commands: Op.READ, Op.PIN, Op.DROP"):
            sushi.Command(bad, 1)
    assert sushi.Command.from_json(sushi.Command(Op.PIN, 3, 2).to_json()) == sushi.Command(Op.PIN, 3, 2)
    with pytest.raises(GoldenError, match="unknown buffer op code 7"):
        sushi.Command.from_json([7, 0, 0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 15), max_size=150), st.integers(1, 8))
def test_lru_model_against_a_list(reads, capacity):
    model = sushi.LRUCacheModel(capacity, block_words=2)
    lines, misses = [], 0
    preview = model.preview([reads])
    for block in reads:
        hit = model.read(block)
        assert hit == (block in lines)
        if hit:
            lines.remove(block)
        else:
            misses += 1
        lines.append(block)
        lines = lines[-capacity:]
    assert preview == [misses] and model.misses == misses
    assert model.offchip_words == 2 * misses and model.resident == set(lines)


# ---------------------------------------------------------------------- choice rule

def _naive_choice(space, query, latencies, missed, tolerance):
    acc = space.accuracies
    cands = [s for s in range(len(acc)) if query.accuracy_floor is None or acc[s] >= query.accuracy_floor - 1e-9]
    acc_bad = not cands
    cands = cands or list(range(len(acc)))
    fast = [s for s in cands if latencies[s] <= query.latency_target]
    if not fast:
        return min(cands, key=lambda s: (latencies[s], -acc[s], s)), True, acc_bad
    best = max(acc[s] for s in fast)
    near = [s for s in fast if acc[s] >= best - tolerance - 1e-9]
    return min(near, key=lambda s: (missed[s], -acc[s], latencies[s], s)), False, acc_bad


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_choice_rule_against_a_direct_reading(space, data):
    n = len(space.subnets)
    latencies = np.array(data.draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)))
    missed = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))) * 16
    floor = data.draw(st.one_of(st.none(), st.sampled_from(sorted(set(space.accuracies.tolist())) + [101.0])))
    query = sushi.Query(data.draw(st.integers(0, 55)), floor, 0)
    tolerance = data.draw(st.sampled_from([0.0, space.accuracy_step, 5.0]))
    choice, violation = sushi.choose_subnet(space, query, latencies, missed, tolerance=tolerance)
    want, lat_bad, acc_bad = _naive_choice(space, query, latencies, missed, tolerance)
    assert choice == want
    assert violation == "+".join(v for v, bad in (("latency", lat_bad), ("accuracy", acc_bad)) if bad)


def test_lru_choice_prices_only_what_can_matter_and_agrees_with_pricing_all(space, platform):
    """The LRU baseline's pruned search equals the choice rule over every SubNet priced
    exactly on the same LRU state."""
    rng = np.random.default_rng(3)
    bw = platform.offchip_bytes_per_cycle
    cache = sushi.LRUCacheModel(platform.capacity_blocks, platform.block_words)
    stream = sushi.make_stream(space, platform, "phased", 60, seed=9, phase=7)
    for q, query in enumerate(stream):
        priced = [baselines._lru_price(space, cache, s, bw) for s in range(len(space.subnets))]
        latencies = np.array([p[0] for p in priced])
        missed = np.array([p[1] for p in priced])
        for tolerance in (0.0, space.accuracy_step, 3.0):
            want, violation = sushi.choose_subnet(space, query, latencies, missed, tolerance=tolerance)
            got, (latency, _), got_violation = baselines._lru_choice(space, cache, query, bw, tolerance)
            assert (got, latency, got_violation) == (want, latencies[want], violation), (q, tolerance)
        for block in space.subnets[int(rng.integers(len(space.subnets)))].blocks:
            cache.read(block)


def test_impossible_queries_are_served_best_effort_and_reported(space, platform):
    lat = space.no_cache_latencies(platform.offchip_bytes_per_cycle)
    missed = np.zeros(len(lat), dtype=np.int64)
    choice, violation = sushi.choose_subnet(space, sushi.Query(1, None, 0), lat, missed)
    assert violation == "latency" and lat[choice] == lat.min()
    choice, violation = sushi.choose_subnet(space, sushi.Query(10**9, 101.0, 0), lat, missed)
    assert violation == "accuracy" and space.accuracies[choice] == space.accuracies.max()
    with pytest.raises(GoldenError, match=r"query 7: no SubNet meets latency <= 1 cycles"):
        sushi.choose_subnet(space, sushi.Query(1, None, 0), lat, missed, strict=True, index=7)
    stream = [sushi.Query(1, None, 0)] * 3 + [sushi.Query(10**9, 101.0, 1)]
    for policy in sushi.POLICIES:
        result = sushi.serve(policy, space, platform, stream)
        assert all("latency" in r.violation for r in result.records[:3])
        assert result.records[3].violation == "accuracy"
        assert result.summary()["slo_attainment"] == 0.0
        with pytest.raises(GoldenError, match="query 0: no SubNet meets latency <= 1 cycles"):
            sushi.serve(policy, space, platform, stream, strict=True)


# ------------------------------------------------------------------- the policies

@pytest.fixture(scope="module")
def results(space, platform):
    stream = sushi.make_stream(space, platform, "phased", 60, seed=2, phase=10)
    return stream, {p: sushi.serve(p, space, platform, stream, period=4, window=8) if p in ("sushi", "oracle")
                    else sushi.serve(p, space, platform, stream) for p in sushi.POLICIES}


def test_schedules_replay_exactly(space, platform, results):
    """For every policy that runs on the buffer: each query's reads are its SubNet's blocks
    in order, after any SubGraph update; off-chip bytes and latencies follow from the cache
    model's state at that point; violations are exactly the missed targets."""
    stream, by_policy = results
    bw = platform.offchip_bytes_per_cycle
    for policy in ("sushi", "oracle", "no-cache", "static"):
        result = by_policy[policy]
        starts = result.query_starts + [len(result.commands)]
        for q, record in enumerate(result.records):
            chunk = result.commands[starts[q]:starts[q + 1]]
            reads = [c.block for c in chunk if c.op is Op.READ]
            info = space.by_name[record.subnet]
            assert reads == list(info.blocks)
            assert all(c.op is not Op.READ for c in chunk[:len(chunk) - len(reads)])
            before = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
            before.replay(result.commands[:starts[q]])
            updated = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
            updated.replay(result.commands[:starts[q] + len(chunk) - len(reads)])
            after = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
            after.replay(result.commands[:starts[q + 1]])
            assert record.offchip_bytes == (after.offchip_words - before.offchip_words) * platform.word_bytes
            assert record.swap_bytes == (updated.offchip_words - before.offchip_words) * platform.word_bytes
            resident = np.zeros(space.n_blocks, dtype=bool)
            resident[list(updated.resident)] = True
            assert record.latency == space.latencies(resident, bw)[info.index] + -(-record.swap_bytes // bw)
            query = stream[q]
            floor_bad = query.accuracy_floor is not None and info.accuracy < query.accuracy_floor - 1e-9
            assert ("latency" in record.violation) == (record.latency > query.latency_target)
            assert ("accuracy" in record.violation) == floor_bad or policy != "static"
            assert record.item_quality == space.item_quality[info.index, query.item]
            assert len(after.resident) <= platform.persistent_blocks


def test_policy_specifics(space, platform, results):
    stream, r = results
    # No persistent cache: every block of every served SubNet comes from off-chip memory.
    for record in r["no-cache"].records:
        assert record.offchip_bytes == space.by_name[record.subnet].weight_bytes
    assert all(c.op is Op.READ for c in r["no-cache"].commands)
    # Static: one SubNet; after its pins, only its blocks that did not fit are fetched.
    static = r["static"]
    assert len({x.subnet for x in static.records}) == 1
    index, pinned = sushi.static_subnet(space, platform, stream)
    info = space.subnets[index]
    assert static.records[0].subnet == info.name
    for record in static.records[1:]:
        assert record.offchip_bytes == (len(info.blocks) - len(pinned)) * BLOCK_BYTES
    # LRU: the same total capacity, counted by the LRU model.
    lru = sushi.LRUCacheModel(platform.capacity_blocks, platform.block_words)
    for record in r["lru"].records:
        before = lru.offchip_words
        for block in space.by_name[record.subnet].blocks:
            lru.read(block)
        assert record.offchip_bytes == (lru.offchip_words - before) * platform.word_bytes
    # SushiSched rewrote its SubGraph and its summary adds up; the oracle decides before query 0.
    summary = r["sushi"].summary()
    assert r["sushi"].swaps >= 1 and summary["queries"] == len(stream)
    assert summary["offchip_bytes_per_query"] == pytest.approx(
        sum(x.offchip_bytes for x in r["sushi"].records) / len(stream))
    first_swap = {p: next(x.index for x in r[p].records if x.swap_bytes) for p in ("sushi", "oracle")}
    assert r["sushi"].records[0].swap_bytes == 0 and first_swap["oracle"] <= first_swap["sushi"]
    latencies = sorted(x.latency for x in r["sushi"].records)
    assert summary["p99_latency_cycles"] == latencies[int(np.ceil(0.99 * len(latencies))) - 1]
    assert summary["slo_attainment"] == pytest.approx(100 * sum(not x.violation for x in r["sushi"].records) / 60)


def test_a_rewrite_waits_for_a_query_it_does_not_push_past_its_targets(space, platform, results):
    """SushiSched's SubGraph rewrites are not overlapped with compute; each one lands before a
    query that still meets its targets, or that would have missed them without the rewrite."""
    stream, r = results
    result, bw = r["sushi"], platform.offchip_bytes_per_cycle
    rewrites = [x for x in result.records if x.swap_bytes]
    assert len(rewrites) == result.swaps >= 1
    for x in rewrites:
        if not x.violation:
            continue
        before = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
        before.replay(result.commands[:result.query_starts[x.index]])
        resident = sushi.sched.mask(space, before.resident)
        _, violation = sushi.choose_subnet(space, stream[x.index], space.latencies(resident, bw),
                                           space.missed_bytes(resident), tolerance=space.accuracy_step)
        assert violation, f"query {x.index}: the rewrite broke targets it would have met"


def test_static_pins_the_blocks_that_shorten_its_subnet_most(space):
    """Greedy pinning into fetch-bound products gives the SubNet a latency no worse than
    pinning the same number of its blocks in read order, for every region size."""
    for tags in (1, 3, 8, 20):
        p = sushi.Platform(SGSBufferConfig(capacity_words=4 * (tags + 1), block_words=4, tags=tags), 4)
        for info in space.subnets:
            pinned = sushi.static_blocks(space, p, info.index)
            assert len(set(pinned)) == len(pinned) == min(tags, len(info.blocks)) and set(pinned) <= set(info.blocks)
            greedy = space.latencies(sushi.sched.mask(space, pinned), 4)[info.index]
            in_order = space.latencies(sushi.sched.mask(space, info.blocks[:len(pinned)]), 4)[info.index]
            assert greedy <= in_order


def test_sushi_decision_never_scores_worse_than_keeping_the_subgraph(space, platform):
    sched = sushi.SushiSched(space, platform)
    stream = sushi.make_stream(space, platform, "steady", 16, seed=5)
    resident = np.zeros(space.n_blocks, dtype=bool)
    served = [sushi.choose_subnet(space, q, space.no_cache_latencies(4),
                                  np.zeros(len(space.subnets), dtype=np.int64))[0] for q in stream]
    chosen = sched.decide(stream, served, resident)
    assert chosen.sum() <= platform.persistent_blocks
    keep, new = sched.score(resident, resident, stream), sched.score(chosen, resident, stream)
    assert new[0] <= keep[0] and (new[0] < keep[0] or new[2] <= keep[2] + sched.tolerance * len(stream) + 1e-9)


def test_serve_errors(space, platform):
    stream = sushi.make_stream(space, platform, "steady", 4)
    with pytest.raises(GoldenError, match="unknown policy 'fifo'"):
        sushi.serve("fifo", space, platform, stream)
    with pytest.raises(GoldenError, match="takes no options"):
        sushi.serve("lru", space, platform, stream, period=3)
    with pytest.raises(GoldenError, match="period and window must be integers >= 1, not period=0"):
        sushi.serve("sushi", space, platform, stream, period=0)
    other = sushi.Platform(SGSBufferConfig(), 8)
    with pytest.raises(GoldenError, match="16-byte blocks but the platform's blocks are 256 bytes"):
        sushi.serve("sushi", space, other, stream)
    narrow = sushi.Platform(SGSBufferConfig(capacity_words=128, block_words=4, tags=28, id_width=5), 4)
    with pytest.raises(GoldenError, match="id_width=5 names only 32"):
        sushi.serve("no-cache", space, narrow, stream)


def test_summary_is_json(results):
    _, r = results
    for result in r.values():
        assert json.loads(json.dumps(result.summary())) == result.summary()
