"""cocotb testbenches for Tessera's generated Verilog, their shared stream drivers, and
the runner that builds and runs them on Verilator and Icarus.

Failures a user can cause (an unknown simulator, a simulator that is not installed, a
bench that fails) raise :class:`VerifError` naming what went wrong.
"""


class VerifError(RuntimeError):
    """A bench could not run, or ran and failed; the message says which and where."""


__all__ = ["VerifError"]
