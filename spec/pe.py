"""The dot-product PEs' shared stream formats (``lp-pe``, ``int8-pe``, ``fp8-pe``).

A PE has ``lanes`` lanes. Each input beat carries one weight code and one activation code
per lane; a dot product is the run of beats up to and including one with ``last`` set.
Every PE config has ``lanes``, ``width`` (code bits), ``acc_width`` and
``product_stages``; its latency (``last`` accepted to ``o.valid``) is
``product_stages + 2``.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

__all__ = ["pe_beat_layout", "pe_out_layout"]


def pe_beat_layout(lanes: int, width: int) -> data.StructLayout:
    """Input beat: ``w[lanes]`` and ``a[lanes]`` codes of ``width`` bits, and ``last``."""
    return data.StructLayout({
        "w": data.ArrayLayout(unsigned(width), lanes),
        "a": data.ArrayLayout(unsigned(width), lanes),
        "last": 1,
    })


def pe_out_layout(acc_width: int) -> data.StructLayout:
    """Output: the dot product ``acc`` (two's complement, wrapped) and the ``nar`` flag
    (some product of the dot product had a NaR/NaN operand; its product counted as 0)."""
    return data.StructLayout({"acc": signed(acc_width), "nar": 1})
