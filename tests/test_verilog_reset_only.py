"""Verilog without power-up values (``write_verilog(reset_only=True)``, ``tessera generate
--reset-only``): no register initialiser in any block's Verilog, lint-clean under
``verilator -Wall`` with the power-up waiver off, and the benches still pass on Icarus
(4-state: a register the reset does not set would stay X and fail them)."""

import re

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw import ConfigError, to_verilog, write_verilog
from synth.qor import load_baseline
from tessera.blocks import BLOCKS
from tessera.cli import main
from verif.lint import lint
from verif.runner import run_bench

from .conftest import require_simulator

#: One small configuration per block (the QoR baseline's points, iCE40 first).
SMALL = {}
for _point in sorted(load_baseline().points, key=lambda p: p.target != "ice40"):
    SMALL.setdefault(_point.block, _point.params)

#: Blocks whose default Verilog is lint-clean; the accelerator's is not yet (its unused
#: AXI inputs and SRAM address bits, among others), so for it reset-only mode is checked
#: to add no finding and to leave no power-up value (test_reset_only_adds_no_finding).
LINT_CLEAN = sorted(set(BLOCKS) - {"accel"})

#: A declaration with an initialiser: ``reg [3:0] count = 4'h0;``. Yosys's own trigger of
#: the always @* blocks (``reg \\$auto$verilog_backend...$1 = 0;``) is not a register of
#: the design and is the one allowed.
_INIT = re.compile(r"^\s*reg\b[^;]*=[^;]*;", re.M)


def _initialisers(text: str) -> list[str]:
    return [m.group(0).strip() for m in _INIT.finditer(text) if "$auto$verilog_backend" not in m.group(0)]


@pytest.mark.parametrize("name", LINT_CLEAN)
def test_reset_only_verilog_has_no_power_up_values_and_lints_clean(name, tmp_path):
    block = BLOCKS[name]
    config = block.config(**SMALL[name])
    path = write_verilog(block.build(config), block.top, tmp_path, reset_only=True)
    text = path.read_text()
    assert _initialisers(text) == [] and "initial begin" not in text
    assert lint(path, block.top, waive_init=False) == []


def _kinds(findings: list[str]) -> set[str]:
    """Findings without their line numbers (reset-only Verilog has fewer lines)."""
    return {re.sub(r"^[^:]+:\d+: ", "", f) for f in findings}


@pytest.mark.wide
@pytest.mark.parametrize("name", sorted(set(BLOCKS) - set(LINT_CLEAN)))
def test_reset_only_adds_no_finding(name, tmp_path):
    block = BLOCKS[name]
    config = block.config(**SMALL[name])
    plain = write_verilog(block.build(config), block.top, tmp_path / "plain")
    reset_only = write_verilog(block.build(config), block.top, tmp_path / "reset_only", reset_only=True)
    assert _initialisers(reset_only.read_text()) == []
    assert _kinds(lint(reset_only, block.top, waive_init=False)) == _kinds(lint(plain, block.top))


def test_default_verilog_has_power_up_values_the_waiver_hides(tmp_path):
    block = BLOCKS["int8-pe"]
    path = write_verilog(block.build(block.config(lanes=1)), block.top, tmp_path)
    assert _initialisers(path.read_text())
    assert lint(path, block.top) == []
    assert {f.split(": ")[1] for f in lint(path, block.top, waive_init=False)} == {"PROCASSINIT"}


def test_cli_generate_reset_only(tmp_path, capsys):
    assert main(["generate", "int8-pe", "--lanes", "1", "--reset-only", "-o", str(tmp_path)]) == 0
    assert _initialisers((tmp_path / "int8_pe.v").read_text()) == []


def test_memory_with_initial_contents_is_refused():
    class Rom(wiring.Component):
        addr: In(2)
        data: Out(8)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=8, depth=4, init=[1, 2, 3, 4])
            port = mem.read_port(domain="comb")
            m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data)]
            return m

    with pytest.raises(ConfigError, match="has initial contents, which reset-only Verilog cannot hold"):
        to_verilog(Rom(), "rom", reset_only=True)
    assert "initial begin" in to_verilog(Rom(), "rom")


def _bench(name, tmp_path):
    require_simulator("icarus")
    block = BLOCKS[name]
    config = block.config(**SMALL[name])
    result = run_bench(config, block.build(config), block.top, block.bench, sim="icarus",
                       build_root=tmp_path, quiet=True, reset_only=True)
    assert result.passed and result.tests >= 3
    assert _initialisers((result.build_dir / f"{block.top}.v").read_text()) == []


def test_nm_core_bench_passes_on_reset_only_verilog(tmp_path):
    _bench("nm-core", tmp_path)


@pytest.mark.wide
@pytest.mark.parametrize("name", sorted(n for n in BLOCKS if n != "nm-core" and BLOCKS[n].bench))
def test_every_bench_passes_on_reset_only_verilog(name, tmp_path):
    _bench(name, tmp_path)


def test_accel_programs_match_the_iss_on_reset_only_verilog(tmp_path):
    """``tessera verify accel --reset-only`` runs the accelerator's smoke programs on the
    Verilog without power-up values (Icarus, 4-state): the reset alone must bring the
    machine up."""
    from verif.accel_campaign import verify_smoke

    require_simulator("icarus")
    config = BLOCKS["accel"].config(**SMALL["accel"])
    cases = verify_smoke(config, sim="icarus", build_root=tmp_path, legal=2, reset_only=True)
    assert len(cases) == 2 + 9 and all(ok for _, ok in cases), cases
    (source,) = tmp_path.glob("accel-*-reset-only/accel.v")
    assert _initialisers(source.read_text()) == []
