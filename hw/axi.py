"""AXI4 and AXI4-Lite interface signatures (the manager's view), amaranth-soc style.

A component with an AXI4 manager port declares ``Out(AXI4Signature(...))``; a
subordinate port (the accelerator's CSRs) is ``In(AXI4LiteSignature(...))``. Amaranth
names the ports ``<member>__<signal>`` (``m_axi__arvalid``), so a testbench finds the
bus with cocotbext-axi's ``AxiBus.from_prefix(dut, "m_axi_")``.

Only the signals the accelerator uses are present: AXI4 without lock, cache, prot, QoS,
region and user signals (every burst is INCR, full width); AXI4-Lite without prot.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spec import ConfigError

__all__ = ["AXI4Signature", "AXI4LiteSignature", "RESP_OKAY", "BURST_INCR"]

RESP_OKAY = 0
BURST_INCR = 1


class AXI4Signature(wiring.Signature):
    """An AXI4 manager port.

    Parameters
    ----------
    addr_width : int
        Byte-address width, 12..64.
    data_width : int
        Data width: 8, 16, ... 1024 bits (a power of two).
    id_width : int
        Transaction ID width, 1..16.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int):
        if not 12 <= addr_width <= 64:
            raise ConfigError(f"AXI4 addr_width must be in 12..64, not {addr_width!r}")
        if data_width < 8 or data_width > 1024 or data_width & (data_width - 1):
            raise ConfigError(f"AXI4 data_width must be a power of two in 8..1024, not {data_width!r}")
        if not 1 <= id_width <= 16:
            raise ConfigError(f"AXI4 id_width must be in 1..16, not {id_width!r}")
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        super().__init__({
            "awvalid": Out(1), "awready": In(1), "awid": Out(id_width), "awaddr": Out(addr_width),
            "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
            "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
            "wlast": Out(1),
            "bvalid": In(1), "bready": Out(1), "bid": In(id_width), "bresp": In(2),
            "arvalid": Out(1), "arready": In(1), "arid": Out(id_width), "araddr": Out(addr_width),
            "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
            "rvalid": In(1), "rready": Out(1), "rid": In(id_width), "rdata": In(data_width),
            "rresp": In(2), "rlast": In(1),
        })

    def __eq__(self, other):
        return (isinstance(other, AXI4Signature) and
                (self.addr_width, self.data_width, self.id_width) ==
                (other.addr_width, other.data_width, other.id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite manager port (32-bit data).

    Parameters
    ----------
    addr_width : int
        Byte-address width, 4..32.
    """

    def __init__(self, *, addr_width: int):
        if not 4 <= addr_width <= 32:
            raise ConfigError(f"AXI4-Lite addr_width must be in 4..32, not {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_width),
            "wvalid": Out(1), "wready": In(1), "wdata": Out(32), "wstrb": Out(4),
            "bvalid": In(1), "bready": Out(1), "bresp": In(2),
            "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_width),
            "rvalid": In(1), "rready": Out(1), "rdata": In(32), "rresp": In(2),
        })

    def __eq__(self, other):
        return isinstance(other, AXI4LiteSignature) and self.addr_width == other.addr_width

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width})"
