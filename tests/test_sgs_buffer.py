"""The SGS weight buffer (hw/sgs_buffer.py): config checks, request packing, Amaranth
simulation against golden.sushi.SGSCacheModel, Verilog lint, and the CLI."""

import json

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler import CompileError
from compiler.sgs_stream import memory_image, pack_block, pack_request, unpack_read
from golden import sushi
from hw import write_verilog
from hw.sgs_buffer import SGSBuffer
from spec import ConfigError
from spec.nm_core import NMCoreConfig
from spec.sgs_buffer import Op, SGSBufferConfig, request_layout, word_layout
from tessera.cli import main
from verif.lint import lint


@pytest.mark.parametrize("kwargs, message", [
    ({"capacity_words": 32, "block_words": 64}, "capacity_words=32 is smaller than one block (block_words=64)"),
    ({"capacity_words": 100, "block_words": 64}, "capacity_words=100 is not a multiple of block_words=64"),
    ({"block_words": 48}, "block_words must be a power of two >= 2, not block_words=48"),
    ({"block_words": 1}, "block_words must be a power of two >= 2, not block_words=1"),
    ({"word_width": 12}, "word_width must be a multiple of 8, >= 8, not word_width=12"),
    ({"tags": 0}, "tags must be >= 1, not tags=0"),
    ({"tags": 32}, "tags=32 leaves no streaming slot: the buffer has 32 slot(s) of 64 words, so tags must be <= 31"),
    ({"id_width": 0}, "id_width must be in 1..32, not id_width=0"),
    ({"counter_width": 4}, "counter_width must be in 8..64, not counter_width=4"),
    ({"tags": "4"}, "tags must be an integer, not '4'"),
])
def test_config_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SGSBufferConfig(**kwargs)
    assert str(info.value) == message


def test_config_geometry_and_json():
    cfg = SGSBufferConfig(capacity_words=96, block_words=8, tags=10, word_width=16)
    assert (cfg.slots, cfg.stream_slots, cfg.block_bytes, cfg.slot_width) == (12, 2, 16, 4)
    assert SGSBufferConfig.from_json(cfg.to_json()) == cfg
    platform = sushi.Platform.from_buffer(cfg)
    assert (platform.capacity_blocks, platform.persistent_blocks, platform.block_words) == (12, 10, 8)


def test_request_packing_uses_the_hardware_layout():
    cfg = SGSBufferConfig(tags=5, id_width=6)
    layout = request_layout(cfg)
    word = layout.from_bits(pack_request(cfg, sushi.Command("pin", 37, 4)))
    assert (word.op, word.block, word.slot) == (Op.PIN, 37, 4)
    word = layout.from_bits(pack_request(cfg, sushi.Command("read", 63)))
    assert (word.op, word.block) == (Op.READ, 63)
    for command, message in [
        (sushi.Command("read", 64), "block id 64 does not fit the buffer's id_width=6 bits"),
        (sushi.Command("pin", 3, 5), r"pin names slot 5, outside the persistent region \(tags=5"),
        (sushi.Command("drop", 0, -1), "drop names slot -1"),
    ]:
        with pytest.raises(CompileError, match=message):
            pack_request(cfg, command)
    with pytest.raises(CompileError, match="request for an unknown block 20: the SuperNet has blocks 0..19"):
        pack_request(cfg, sushi.Command("read", 20), n_blocks=20)


def test_block_packing_round_trips():
    cfg = SGSBufferConfig(block_words=4, capacity_words=16, tags=2)
    values = np.arange(-128, 128, 16)
    words = pack_block(cfg, values)
    layout = word_layout(cfg)
    assert [v for w in words for v in layout.from_bits(w)] == values.tolist()
    got, last = unpack_read(cfg, words[1] | (1 << cfg.word_width))
    assert got == values[4:8].tolist() and last
    with pytest.raises(CompileError, match="a block holds 16 weights, got 15"):
        pack_block(cfg, values[:15])
    with pytest.raises(CompileError, match=r"weights must be int8, got values in \[0, 200\]"):
        pack_block(cfg, np.full(16, 200) * (np.arange(16) > 0))


def test_memory_image_checks_the_block_size():
    space = sushi.SubNetSpace(sushi.supernet(sushi.SuperNetSpec(widths=(4, 8, 16), depths=(1, 2))), 16,
                              NMCoreConfig())
    with pytest.raises(CompileError, match="16-byte blocks but the buffer's blocks are 256 bytes"):
        memory_image(SGSBufferConfig(), space)
    with pytest.raises(CompileError, match="id_width=4 names only 16"):
        memory_image(SGSBufferConfig(block_words=4, capacity_words=16, tags=2, id_width=4), space)
    image = memory_image(SGSBufferConfig(block_words=4, capacity_words=16, tags=2), space)
    assert len(image) == space.n_blocks and all(len(w) == 4 for w in image.values())


def simulate(cfg, commands, memory, *, seed=0, idle=0.3, backpressure=0.3):
    """Run ``commands`` through the Amaranth model of the buffer with a memory model and
    random stalls on every stream; return (read payload bits, fetched blocks, counters)."""
    dut = SGSBuffer(cfg)
    rng = np.random.default_rng(seed)
    requests = [pack_request(cfg, c) for c in commands]
    fetched, fill_queue, got, counters = [], [], [], {}

    async def source(ctx):
        for bits in requests:
            while rng.random() < idle:
                ctx.set(dut.req.valid, 0)
                await ctx.tick()
            ctx.set(dut.req.payload, request_layout(cfg).from_bits(bits))
            ctx.set(dut.req.valid, 1)
            await ctx.tick().until(dut.req.ready)
        ctx.set(dut.req.valid, 0)
        await ctx.tick().until(dut.idle)
        for name in ("hits", "misses", "offchip_words"):
            counters[name] = ctx.get(getattr(dut, name))

    async def memory_model(ctx):
        while True:
            ctx.set(dut.fetch.ready, rng.random() >= backpressure)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.fetch.valid, dut.fetch.ready,
                                                                  dut.fetch.payload)
            if valid and ready:
                fetched.append(payload.block)
                fill_queue.extend(memory[payload.block])

    async def filler(ctx):
        while True:
            if fill_queue and rng.random() >= idle:
                ctx.set(dut.fill.payload, word_layout(cfg).from_bits(fill_queue[0]))
                ctx.set(dut.fill.valid, 1)
                _, _, ready = await ctx.tick().sample(dut.fill.ready)
                if ready:
                    fill_queue.pop(0)
            else:
                ctx.set(dut.fill.valid, 0)
                await ctx.tick()

    async def reader(ctx):
        while True:
            ctx.set(dut.rd.ready, rng.random() >= backpressure)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.rd.valid, dut.rd.ready, dut.rd.payload)
            if valid and ready:
                got.append(payload.as_bits())

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    for process in (memory_model, filler, reader):
        sim.add_testbench(process, background=True)
    sim.run()
    return got, fetched, counters


@pytest.mark.parametrize("cfg", [SGSBufferConfig(capacity_words=32, block_words=4, tags=6, word_width=16, id_width=5),
                                 SGSBufferConfig(capacity_words=8, block_words=2, tags=3, word_width=8, id_width=4)],
                         ids=lambda c: c.tag)
def test_amaranth_simulation_matches_the_cache_model(cfg):
    rng = np.random.default_rng(7)
    n_blocks = min(12, 1 << cfg.id_width)
    data = {b: rng.integers(-128, 128, cfg.block_bytes) for b in range(n_blocks)}
    memory = {b: pack_block(cfg, v) for b, v in data.items()}
    commands = []
    for _ in range(150):
        roll, block, slot = rng.random(), int(rng.integers(n_blocks)), int(rng.integers(cfg.tags))
        commands.append(sushi.Command("read", block) if roll < 0.7 else
                        sushi.Command("pin", block, slot) if roll < 0.9 else sushi.Command("drop", 0, slot))
    got, fetched, counters = simulate(cfg, commands, memory)
    model = sushi.SGSCacheModel(cfg.tags, cfg.block_words, n_blocks)
    model.replay(commands)
    want = [(w, k == cfg.block_words - 1) for c in commands if c.op == "read"
            for k, w in enumerate(memory[c.block])]
    assert [unpack_read(cfg, bits) for bits in got] == [unpack_read(cfg, w | (last << cfg.word_width))
                                                        for w, last in want]
    assert fetched == model.fetches
    assert counters == {k: v for k, v in model.counters().items() if k != "pins"}
    assert model.hits and model.misses and model.pins


@pytest.mark.parametrize("cfg", [SGSBufferConfig(), SGSBufferConfig(capacity_words=88, block_words=8, tags=10,
                                                                    word_width=16, id_width=7),
                                 SGSBufferConfig(capacity_words=4, block_words=2, tags=1)],
                         ids=lambda c: c.tag)
def test_verilog_lints_clean(cfg, tmp_path):
    assert lint(write_verilog(SGSBuffer(cfg), "sgs_buffer", tmp_path)) == []


def test_cli_generate_and_errors(tmp_path, capsys):
    assert main(["generate", "sgs-buffer", "--capacity-words", "512", "--tags", "6", "-o", str(tmp_path)]) == 0
    assert "module sgs_buffer(" in (tmp_path / "sgs_buffer.v").read_text()
    config = json.loads((tmp_path / "sgs_buffer.json").read_text())
    assert config["block"] == "sgs-buffer" and config["capacity_words"] == 512 and config["tags"] == 6
    capsys.readouterr()
    assert main(["generate", "sgs-buffer", "--capacity-words", "32", "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("tessera: error: capacity_words=32 is smaller than one block "
                                       "(block_words=64)\n")
    assert main(["synth", "sgs-buffer", "--help"]) == 0 and "--tags" in capsys.readouterr().out


def test_cli_sushi_writes_the_request_stream(tmp_path, capsys):
    """``tessera sushi``: one line per policy, and the hex request words decode to the
    SushiSched schedule of the same stream."""
    out = tmp_path / "sched"
    assert main(["sushi", "--stream", "phased", "--queries", "24", "--seed", "4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for policy in ("sushi", "no-cache", "lru", "static"):
        assert f"\n{policy} " in f"\n{text}"
    summary = json.loads((out / "summary.json").read_text())
    cfg = SGSBufferConfig.from_dict(summary["buffer"])
    from tessera.bench.sushi import CORE, OFFCHIP_BYTES_PER_CYCLE
    space = sushi.SubNetSpace(sushi.supernet(), cfg.block_bytes, CORE)
    platform = sushi.Platform.from_buffer(cfg, OFFCHIP_BYTES_PER_CYCLE)
    result = sushi.serve("sushi", space, platform, sushi.make_stream(space, platform, "phased", 24, seed=4))
    words = [int(line, 16) for line in (out / "sushi_requests.hex").read_text().split()]
    layout = request_layout(cfg)
    names = {Op.READ: "read", Op.PIN: "pin", Op.DROP: "drop"}
    decoded = [(names[w.op], w.block, w.slot) for w in map(layout.from_bits, words)]
    assert decoded == [(c.op, c.block if c.op != "drop" else 0, c.slot if c.op != "read" else 0)
                       for c in result.commands]
    assert summary["policies"]["sushi"] == json.loads(json.dumps(result.summary()))
