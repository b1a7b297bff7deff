"""The SUSHI golden model (golden/sushi.py): SuperNet and block table, cost model, query
streams, the exact cache models, the choice rule, SushiSched and the baselines.

Uses the small SuperNet the SGS buffer's bench uses (trained once, cached)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import GoldenError, nm, sushi
from spec.nm_core import NMCoreConfig

CORE = NMCoreConfig(n=4, m=4, rows=8)
SPEC = sushi.SuperNetSpec(widths=(4, 8, 16), depths=(1, 2))
BLOCK_BYTES = 16


@pytest.fixture(scope="module")
def space():
    return sushi.SubNetSpace(sushi.supernet(SPEC), BLOCK_BYTES, CORE)


@pytest.fixture(scope="module")
def platform():
    return sushi.Platform(block_bytes=BLOCK_BYTES, word_bytes=4, capacity_blocks=32, persistent_blocks=28,
                          offchip_bytes_per_cycle=4)


# ------------------------------------------------------------------ SuperNet, blocks

@pytest.mark.parametrize("kwargs, message", [
    ({"widths": (8, 4)}, "ascending"), ({"widths": ()}, "ascending"), ({"depths": (0, 1)}, "positive"),
    ({"classes": 1}, "classes >= 2"),
])
def test_spec_rejects_bad_shapes(kwargs, message):
    with pytest.raises(GoldenError, match=message):
        sushi.SuperNetSpec(**kwargs)


@pytest.mark.parametrize("block_bytes", [2, 4, 8, 16, 32, 64, 128, 256, 1024])
def test_tile_shape_is_square_or_twice_as_wide(block_bytes):
    rows, cols = sushi.tile_shape(block_bytes)
    assert rows * cols == block_bytes and cols in (rows, 2 * rows)


@pytest.mark.parametrize("block_bytes", [0, 3, 24, -16])
def test_tile_shape_rejects_non_powers_of_two(block_bytes):
    with pytest.raises(GoldenError, match=f"block_bytes={block_bytes}"):
        sushi.tile_shape(block_bytes)


def test_widths_must_tile_into_blocks():
    with pytest.raises(GoldenError, match=r"widths \[4\] are not multiples of the 8 x 8 tile"):
        sushi.SubNetSpace(sushi.supernet(SPEC), 64, CORE)


def test_blocks_partition_the_stored_weights(space):
    qs, _ = space.net.quantized()
    largest = space.by_name[SPEC.largest().name]
    # The largest SubNet reads every block exactly once.
    assert sorted(largest.blocks) == list(range(space.n_blocks))
    # Reassembling each layer from its blocks gives the stored int8 matrix (head padded).
    tr, tc = space.tile
    for l, (rows, k) in enumerate(space.stored_shapes):
        grid_rows, grid_cols = space.grid[l]
        w = np.zeros((rows, k), dtype=np.int64)
        for i in range(grid_rows):
            for j in range(grid_cols):
                block = space.offsets[l] + i * grid_cols + j
                w[i * tr:(i + 1) * tr, j * tc:(j + 1) * tc] = space.block_data(block).reshape(tr, tc)
        expected = np.zeros((rows, k), dtype=np.int64)
        expected[:qs[l].shape[0], :qs[l].shape[1]] = qs[l]
        assert np.array_equal(w, expected)
        assert np.abs(w).max() <= 127


def test_subnets_share_weights(space):
    """A SubNet that is no wider anywhere than another of the same depth reads a subset of
    its blocks; each SubNet reads the blocks of exactly its weight corners."""
    for a in space.subnets:
        tr, tc = space.tile
        expected = []
        for l, out, k in a.subnet.layer_dims(SPEC):
            expected += [space.offsets[l] + i * space.grid[l][1] + j
                         for i in range(-(-out // tr)) for j in range(k // tc)]
        assert list(a.blocks) == expected
        for b in space.subnets:
            if a.subnet.depth == b.subnet.depth and all(x <= y for x, y in zip(a.subnet.widths, b.subnet.widths)):
                assert set(a.blocks) <= set(b.blocks)


def test_unknown_block_is_an_error(space):
    for bad in (-1, space.n_blocks, 10**6):
        with pytest.raises(GoldenError, match=f"unknown weight block {bad}"):
            space.block_data(bad)


def test_accuracy_is_measured_with_the_int8_weights(space):
    net = space.net
    qs, scales = net.quantized()
    for info in space.subnets:
        h = net.x_test
        dims = info.subnet.layer_dims(SPEC)
        for n, (l, out, k) in enumerate(dims):
            h = h @ (qs[l][:out, :k] * scales[l]).T + net.biases[l][:out]
            h = np.maximum(h, 0) if n < len(dims) - 1 else h
        assert info.accuracy == pytest.approx(100 * np.mean(h.argmax(1) == net.y_test))
        assert np.array_equal(info.predictions, h.argmax(1))
    # Sandwich training: every SubNet is far better than chance (10 %), the largest the best.
    assert space.accuracies.min() > 40
    assert space.by_name[SPEC.largest().name].accuracy == space.accuracies.max()


def test_supernet_is_cached(space):
    again = sushi.supernet(SPEC)
    assert all(np.array_equal(a, b) for a, b in zip(again.weights, space.net.weights))


# ------------------------------------------------------------------------ cost model

def test_compute_cycles_come_from_the_core_model(space):
    for info in space.subnets:
        want = sum(nm.cycles(CORE, out, k, 1) for _, out, k in info.subnet.layer_dims(SPEC))
        assert info.compute_cycles == want


def test_latency_model(space):
    bw = 4
    none = np.zeros(space.n_blocks, dtype=bool)
    full = np.ones(space.n_blocks, dtype=bool)
    for info in space.subnets:
        want = sum(max(cycles, -(-len(blocks) * BLOCK_BYTES // bw)) for _, _, cycles, blocks in info.layers)
        assert space.latencies(none, bw)[info.index] == want
        assert space.latencies(full, bw)[info.index] == info.compute_cycles
    rng = np.random.default_rng(0)
    some = rng.random(space.n_blocks) < 0.5
    more = some | (rng.random(space.n_blocks) < 0.5)
    assert np.all(space.latencies(more, bw) <= space.latencies(some, bw))
    assert np.array_equal(space.latencies(none, bw, extra_bytes=10), space.latencies(none, bw) + 3)


def test_platform_errors():
    with pytest.raises(GoldenError, match="smaller than one block of 256 bytes"):
        sushi.Platform.from_bytes(100, 256)
    with pytest.raises(GoldenError, match="capacity is smaller than one block"):
        sushi.Platform(256, 4, 0, 0, 8)
    with pytest.raises(GoldenError, match="one streaming slot"):
        sushi.Platform(256, 4, 4, 4, 8)
    with pytest.raises(GoldenError, match="not a whole number"):
        sushi.Platform(10, 4, 4, 2, 8)


# --------------------------------------------------------------------------- streams

def test_streams_are_seeded_and_differ(space, platform):
    a = sushi.make_stream(space, platform, "steady", 200, seed=3)
    assert a == sushi.make_stream(space, platform, "steady", 200, seed=3)
    assert a != sushi.make_stream(space, platform, "steady", 200, seed=4)
    lat = space.no_cache_latencies(platform.offchip_bytes_per_cycle)
    for kind in sushi.STREAMS:
        stream = sushi.make_stream(space, platform, kind, 200, seed=1)
        targets = np.array([q.latency_target for q in stream])
        assert lat.min() * 0.9 <= targets.min() and targets.max() <= lat.max()
        assert all(0 <= q.image < len(space.net.y_test) for q in stream)
        floors = [q.accuracy_floor for q in stream if q.accuracy_floor is not None]
        assert bool(floors) == (kind == "phased")
    drift = np.array([q.latency_target for q in sushi.make_stream(space, platform, "drift", 400, seed=1)])
    assert drift[:100].mean() < drift[-100:].mean()     # targets loosen over the stream


def test_stream_errors(space, platform):
    with pytest.raises(GoldenError, match="unknown query stream 'bursty'"):
        sushi.make_stream(space, platform, "bursty")
    with pytest.raises(GoldenError, match="queries=0"):
        sushi.make_stream(space, platform, "steady", 0)
    with pytest.raises(GoldenError, match="seed must be an integer >= 0, not seed=-1"):
        sushi.make_stream(space, platform, "steady", seed=-1)


# ---------------------------------------------------------------------- cache models

commands = st.lists(st.tuples(st.sampled_from(["read", "read", "pin", "drop"]), st.integers(0, 11),
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
        if op == "read":
            if block in slots.values():
                hits += 1
            else:
                misses += 1
        elif op == "pin":
            slots = {s: b for s, b in slots.items() if b != block}
            slots[slot] = block
            pins += 1
        else:
            slots.pop(slot, None)
        assert model.resident == set(slots.values())
        assert len([b for b in model.slots if b is not None]) == len(slots)
    assert model.counters() == {"hits": hits, "misses": misses, "pins": pins,
                                "offchip_words": 3 * (misses + pins)}
    assert len(model.fetches) == misses + pins


def test_sgs_cache_model_errors():
    model = sushi.SGSCacheModel(tags=4, block_words=8, n_blocks=10)
    with pytest.raises(GoldenError, match="unknown block 10"):
        model.apply(sushi.Command("read", 10))
    with pytest.raises(GoldenError, match="unknown block -1"):
        model.apply(sushi.Command("pin", -1, 0))
    with pytest.raises(GoldenError, match="slot 4 is outside the persistent region"):
        model.apply(sushi.Command("pin", 1, 4))
    with pytest.raises(GoldenError, match="unknown buffer command 'load'"):
        sushi.Command("load", 1)


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


def test_impossible_queries_are_served_best_effort_and_reported(space, platform):
    lat = space.no_cache_latencies(platform.offchip_bytes_per_cycle)
    missed = np.zeros(len(lat), dtype=np.int64)
    choice, violation = sushi.choose_subnet(space, sushi.Query(1, None, 0), lat, missed)
    assert violation == "latency" and lat[choice] == lat.min()
    choice, violation = sushi.choose_subnet(space, sushi.Query(10**9, 101.0, 0), lat, missed)
    assert violation == "accuracy" and space.accuracies[choice] == space.accuracies.max()
    with pytest.raises(GoldenError, match=r"query 7: no SubNet meets latency <= 1 cycles"):
        sushi.choose_subnet(space, sushi.Query(1, None, 0), lat, missed, strict=True, index=7)
    stream = [sushi.Query(1, None, 0)] * 3
    for policy in sushi.POLICIES:
        records = sushi.serve(policy, space, platform, stream).records
        assert all("latency" in r.violation for r in records)
        with pytest.raises(GoldenError, match="query 0"):
            sushi.serve(policy, space, platform, stream, strict=True)


# ------------------------------------------------------------------- the policies

@pytest.fixture(scope="module")
def results(space, platform):
    stream = sushi.make_stream(space, platform, "phased", 60, seed=2, phase=10)
    return stream, {p: sushi.serve(p, space, platform, stream, period=4, window=8) if p == "sushi"
                    else sushi.serve(p, space, platform, stream) for p in sushi.POLICIES}


def _resident_before(result, platform, q):
    model = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
    model.replay(result.commands[:result.query_starts[q]])
    return model


def test_schedules_replay_exactly(space, platform, results):
    """For every policy that runs on the buffer: each query's reads are its SubNet's blocks
    in order, after any SubGraph update; off-chip bytes and latencies follow from the cache
    model's state at that point; violations are exactly the missed targets."""
    stream, by_policy = results
    for policy in ("sushi", "no-cache", "static"):
        result = by_policy[policy]
        starts = result.query_starts + [len(result.commands)]
        for q, record in enumerate(result.records):
            chunk = result.commands[starts[q]:starts[q + 1]]
            reads = [c.block for c in chunk if c.op == "read"]
            assert reads == list(space.by_name[record.subnet].blocks)
            assert all(c.op != "read" for c in chunk[:len(chunk) - len(reads)])
            before = _resident_before(result, platform, q)
            after = _resident_before(result, platform, q + 1) if q + 1 < len(stream) else None
            model = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
            model.replay(result.commands[:starts[q + 1]])
            offchip = (model.offchip_words - before.offchip_words) * platform.word_bytes
            assert record.offchip_bytes == offchip
            updated = sushi.SGSCacheModel(platform.persistent_blocks, platform.block_words)
            updated.replay(result.commands[:starts[q] + len(chunk) - len(reads)])
            mask = np.zeros(space.n_blocks, dtype=bool)
            mask[list(updated.resident)] = True
            info = space.by_name[record.subnet]
            bw = platform.offchip_bytes_per_cycle
            assert record.latency == space.latencies(mask, bw)[info.index] + -(-record.swap_bytes // bw)
            query = stream[q]
            floor_bad = query.accuracy_floor is not None and info.accuracy < query.accuracy_floor - 1e-9
            assert ("latency" in record.violation) == (record.latency > query.latency_target)
            if policy == "static":
                assert ("accuracy" in record.violation) == floor_bad
            if after is not None:
                assert len(after.resident) <= platform.persistent_blocks


def test_policy_specifics(space, platform, results):
    stream, r = results
    # No persistent cache: every block of every served SubNet comes from off-chip memory.
    for record in r["no-cache"].records:
        assert record.offchip_bytes == space.by_name[record.subnet].weight_bytes
        assert record.offchip_bytes == len(space.by_name[record.subnet].blocks) * BLOCK_BYTES
    assert all(c.op == "read" for c in r["no-cache"].commands)
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
    # SushiSched rewrote its SubGraph and its summary adds up.
    summary = r["sushi"].summary()
    assert r["sushi"].swaps >= 1 and summary["queries"] == len(stream)
    assert summary["offchip_bytes_per_query"] == pytest.approx(
        sum(x.offchip_bytes for x in r["sushi"].records) / len(stream))


def test_sushi_decision_prefers_cheaper_subgraphs(space, platform):
    """The SubGraph decision replays recent queries: with the same SubNets served, the
    chosen SubGraph never scores worse than keeping the current one."""
    sched = sushi.SushiSched(space, platform)
    stream = sushi.make_stream(space, platform, "steady", 16, seed=5)
    resident = np.zeros(space.n_blocks, dtype=bool)
    served = [sushi.choose_subnet(space, q, space.no_cache_latencies(4),
                                  np.zeros(len(space.subnets), dtype=np.int64))[0] for q in stream]
    chosen = sched.decide(stream, served, resident)
    assert chosen.sum() <= platform.persistent_blocks
    assert sched.score(chosen, resident, stream) <= sched.score(resident, resident, stream)


def test_serve_errors(space, platform):
    stream = sushi.make_stream(space, platform, "steady", 4)
    with pytest.raises(GoldenError, match="unknown policy 'fifo'"):
        sushi.serve("fifo", space, platform, stream)
    with pytest.raises(GoldenError, match="takes no options"):
        sushi.serve("lru", space, platform, stream, period=3)
    with pytest.raises(GoldenError, match="period and window must be >= 1"):
        sushi.serve("sushi", space, platform, stream, period=0)
    other = sushi.Platform(256, 4, 8, 6, 8)
    with pytest.raises(GoldenError, match="16-byte blocks but the platform's blocks are 256 bytes"):
        sushi.serve("sushi", space, other, stream)
