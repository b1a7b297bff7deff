"""Area and timing for any generated block: Yosys (generic CMOS and iCE40) and nextpnr.

Tool failures, including a tool that exits 0 without finishing its script, raise
:class:`SynthError` naming the step and its log file.
"""


class SynthError(RuntimeError):
    """A synthesis or place-and-route step failed or did not finish; names the log."""


__all__ = ["SynthError"]
