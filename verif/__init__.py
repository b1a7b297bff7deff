"""cocotb verification of Tessera's generated Verilog: stream components typed by the
:mod:`spec` layouts, scoreboards fed by the golden models, one job file per run, and the
runner that builds and runs benches on Verilator and Icarus.

Modules
-------
streams     :class:`~verif.streams.StreamBus` (found by prefix, also on an instance
            inside the DUT), ``StreamSource``, passive ``StreamMonitor``, ``StreamSink``,
            ``Transaction``, seeded pause generators
scoreboard  :class:`~verif.scoreboard.Scoreboard`: expected vs observed transactions,
            in order, bit-exact, mismatches named by index, note and field
job         the job description a run reads (config, parameters, output file)
bench       :class:`~verif.bench.ClockedBench`: clock, reset, seeding, the job's config
runner      :func:`~verif.runner.run_bench`; failing tests named with their first
            assertion line, and rerun with a waveform
<block>_tb  each block's bench: its TB class, its golden-fed scoreboard, its tests

To check a block inside a larger design, attach its monitor and scoreboard to the
instance's streams (``StreamBus.from_prefix(dut, "core.o")``); the design must add the
block as a named submodule, and Verilator builds with ``--public-flat-rw``. The worked
example is :mod:`verif.nm_core_internal_tb`; docs/verification.md has the pattern.

Failures a user can cause (an unknown simulator, a simulator that is not installed, a
build directory that is a file, a bench that fails) raise :class:`VerifError` naming what
went wrong.
"""


class VerifError(RuntimeError):
    """A bench could not run, or ran and failed; the message says which and where."""


__all__ = ["VerifError"]
