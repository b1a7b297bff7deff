"""Verification components for ``amaranth.lib.stream`` interfaces, in cocotbext-axi's shape.

A :class:`StreamBus` is the three handles of one stream, found by prefix on the top level
or on any instance inside it; a :class:`StreamSource` drives one, a :class:`StreamMonitor`
watches one passively, a :class:`StreamSink` (a monitor that also drives ``ready``) takes
its transfers. They speak :class:`Transaction` objects typed by a :mod:`spec` layout::

    bus = StreamBus.from_prefix(dut, "i")               # dut.i__valid, i__ready, i__payload
    source = StreamSource(bus, dut.clk, beat_layout(cfg), idle=random_pause(rng, 0.3))
    source.send_nowait({"act": [...], "weights": [...], "last": 1})   # packed by spec.packing
    monitor = StreamMonitor(StreamBus.from_prefix(dut.core, "o"), dut.clk, out_layout(cfg))
    tx = await monitor.recv()                           # tx.bits, tx.edge, tx.value.acc[0]

Names in the emitted Verilog
----------------------------
Amaranth flattens a stream member ``x`` of a component into the ports ``x__valid``,
``x__ready`` and ``x__payload`` of that component's Verilog module, and keeps every
submodule as a module instance named after its ``m.submodules`` name. An internal stream
is therefore ``dut.<instance>.<x>__valid`` (``StreamBus.from_prefix(dut, "core.i")`` or
``StreamBus.from_prefix(dut.core, "i")``) on both simulators. For the names to survive:

* add the submodule by name (``m.submodules.core = NMCore(cfg)``); anonymous submodules
  (``m.submodules += ...``) become ``U$0``, ``U$1``...;
* monitor the submodule's own ports (``dut.core.i__valid``), not the parent's nets, which
  Yosys names after whatever drives them (``\\i__valid$14``);
* on Verilator, build with ``--public-flat-rw`` (:func:`verif.runner.run_bench` passes it;
  cocotb's runner does too): without it Verilator inlines instances and optimises their
  ports away, and VPI finds no ``dut.core``. Icarus keeps every instance as it is.

Timing discipline
-----------------
Every component writes its outputs just after a rising edge and samples the handshake in
the read-only phase before the next edge, so a transfer seen there happens at that next
edge. This does not depend on coroutine order or on combinational valid/ready paths in the
DUT. A transfer is delivered (to :meth:`StreamMonitor.recv` and to callbacks) at the edge
where it happens. Each component counts the edges of its clock with a counter shared by
every component on that clock, so ``edge`` numbers of different streams compare directly
(the cycle tests take "last output edge - first input edge + 1").

X and Z (Icarus leaves combinational outputs unevaluated until their inputs first change)
read as low, on ``valid``, ``ready`` and in payload bits alike.

Idle cycles and back-pressure come from pause generators (cocotbext-axi's convention: an
iterable of bools, one per cycle, True = pause); :func:`random_pause` makes a seeded one,
so a run is reproducible from its seed.
"""

import itertools
import numbers
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cocotb
import numpy as np
from amaranth.hdl import Shape
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge

from spec.packing import leaves, pack

from . import VerifError

__all__ = ["StreamBus", "Transaction", "StreamSource", "StreamMonitor", "StreamSink",
           "random_pause", "field_values"]


def _high(handle) -> bool:
    """A 1-bit handle's value as a bool; X/Z counts as low."""
    value = handle.value
    return value.is_resolvable and bool(value)


def _bits(handle) -> int:
    """A vector handle's value as an unsigned int; X/Z bits count as 0."""
    value = handle.value
    if not value.is_resolvable:
        value = value.resolve("zeros")
    return value.to_unsigned()


def _names(scope) -> list[str]:
    try:
        return sorted(h._name.strip() for h in scope if "$" not in h._name)
    except TypeError:
        return []


class StreamBus:
    """The ``valid``, ``ready`` and ``payload`` handles of one stream.

    Parameters
    ----------
    valid, ready, payload : cocotb handles
    name : str
        Used in messages (``"nm_core.core.i"``).
    """

    def __init__(self, valid, ready, payload, *, name: str = "stream"):
        self.valid, self.ready, self.payload = valid, ready, payload
        self.name = name

    @classmethod
    def from_prefix(cls, entity, prefix: str) -> "StreamBus":
        """The stream ``prefix`` of ``entity`` (the DUT or any instance handle inside it):
        ``<prefix>__valid``, ``<prefix>__ready``, ``<prefix>__payload``. A dotted prefix
        walks instances first (``"core.i"`` is ``entity.core.i__*``).

        Raises
        ------
        VerifError
            If an instance or a signal is missing; the message lists the streams there.
        """
        *path, stream = prefix.split(".")
        scope = entity
        for part in path:
            try:
                scope = getattr(scope, part)
            except AttributeError:
                raise VerifError(f"{scope._path} has no instance {part!r} (children: "
                                 f"{', '.join(_names(scope)) or 'none'}); add the submodule by name "
                                 f"and build Verilator with --public-flat-rw") from None
        handles = {}
        for signal in ("valid", "ready", "payload"):
            try:
                handles[signal] = getattr(scope, f"{stream}__{signal}")
            except AttributeError:
                streams = sorted({n[:-len("__valid")] for n in _names(scope) if n.endswith("__valid")})
                raise VerifError(f"{scope._path} has no {stream}__{signal}; its streams: "
                                 f"{', '.join(streams) or 'none'}") from None
        return cls(**handles, name=f"{scope._path}.{stream}")

    @property
    def width(self) -> int:
        return len(self.payload)


def field_values(layout, bits: int) -> dict[str, Any]:
    """Every scalar field of ``bits`` in ``layout``, by path (``"weights[2].indices[1]"``):
    signed fields sign-extended, enum fields as members (or the raw value if not one)."""
    out = {}
    for leaf in leaves(layout):
        raw = (bits >> leaf.offset) & ((1 << leaf.width) - 1)
        if leaf.signed and raw >> (leaf.width - 1):
            raw -= 1 << leaf.width
        if leaf.enum is not None:
            try:
                raw = leaf.enum(raw)
            except ValueError:
                pass
        out[leaf.path] = raw
    return out


@dataclass(frozen=True, slots=True)
class Transaction:
    """One transfer on a stream.

    Members
    -------
    bits : int
        The payload bits (X/Z read as 0).
    edge : int
        The clock edge at which the transfer happened (see the module docstring).
    layout : amaranth layout or None
        The payload's :mod:`spec` layout.
    """

    bits: int
    edge: int
    layout: Any = None

    @property
    def value(self):
        """The payload decoded with the layout (``tx.value.act[3]``, ``tx.value.last``)."""
        if self.layout is None:
            raise VerifError("this stream has no layout: only tx.bits is known")
        return self.layout.from_bits(self.bits)

    def fields(self) -> dict[str, Any]:
        """Every scalar field by path (see :func:`field_values`)."""
        if self.layout is None:
            return {"bits": self.bits}
        return field_values(self.layout, self.bits)

    def __int__(self) -> int:
        return self.bits


def random_pause(rng: np.random.Generator | int, probability: float) -> Iterator[bool]:
    """A seeded pause generator: each cycle True (pause) with ``probability``.

    ``rng`` is a numpy generator or a seed. ``probability`` 0 gives a generator that never
    pauses."""
    if not 0 <= probability < 1:
        raise VerifError(f"pause probability must be in [0, 1), not {probability!r}")
    if probability == 0:
        return itertools.repeat(False)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def draws():
        while True:
            yield from (rng.random(1024) < probability).tolist()
    return draws()


#: Clock path -> [sim time of the last counted edge, edges counted].
_EDGES: dict[str, list[int]] = {}


def _edge(key: str) -> int:
    """The number of the current edge of clock ``key`` (call in the read-only phase)."""
    now = get_sim_time()
    entry = _EDGES.get(key)
    if entry is None:
        entry = _EDGES[key] = [now, 1]
    elif entry[0] != now:
        entry[0] = now
        entry[1] += 1
    return entry[1]


class _StreamComponent:
    def __init__(self, bus: StreamBus, clock, layout=None, *, name: str | None = None):
        if not isinstance(bus, StreamBus):
            raise VerifError(f"expected a StreamBus (StreamBus.from_prefix(dut, 'i')), not {bus!r}")
        self.bus = bus
        self.clock = clock
        self.layout = layout
        self.name = name or bus.name
        self.width = bus.width
        if layout is not None and Shape.cast(layout).width != self.width:
            raise VerifError(f"{self.name}: the payload has {self.width} bits, the layout "
                             f"{Shape.cast(layout).width}")
        #: Edge numbers at which transfers happened, in order.
        self.transfer_edges: list[int] = []
        self._key = clock._path
        self._pause: Iterator[bool] | None = None

    def set_pause_generator(self, generator: Iterable[bool] | None = None) -> None:
        """Pause (withhold ``valid``, or drop ``ready``) on the cycles where ``generator``
        yields True; None never pauses."""
        self._pause = None if generator is None else iter(generator)

    def clear_pause_generator(self) -> None:
        self.set_pause_generator(None)

    def _paused(self) -> bool:
        return self._pause is not None and next(self._pause)

    def _start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        """Stop driving and watching (outputs keep their last values)."""
        self._task.cancel()

    async def _run(self):
        raise NotImplementedError


class StreamSource(_StreamComponent):
    """Drive ``valid`` and ``payload`` of ``bus`` with queued transactions.

    Parameters
    ----------
    bus : StreamBus
    clock : cocotb handle
    layout : amaranth layout, optional
        Needed to send dicts (packed with :func:`spec.packing.pack`, every field
        range-checked); ints are sent as they are (checked against the payload width).
    idle : pause generator, optional
        Cycles on which no beat is offered (see :func:`random_pause`).
    sideband : cocotb handle, optional
        A DUT input driven together with each beat (e.g. the LP PE's ``sf``); queued
        items are then ``(item, sideband_value)`` pairs.
    """

    def __init__(self, bus: StreamBus, clock, layout=None, *, idle: Iterable[bool] | None = None,
                 sideband=None, name: str | None = None):
        super().__init__(bus, clock, layout, name=name)
        self.sideband = sideband
        self.queue: deque = deque()
        #: Beats transferred so far.
        self.sent = 0
        self.set_pause_generator(idle)
        bus.valid.value = 0
        self._start()

    def _encode(self, item) -> int:
        if isinstance(item, Transaction):
            return item.bits
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            bits = int(item)
            if not 0 <= bits < 1 << self.width:
                raise VerifError(f"{self.name}: payload {bits:#x} does not fit {self.width} bits")
            return bits
        if self.layout is None:
            raise VerifError(f"{self.name}: give the source a layout to send {type(item).__name__}s")
        return pack(self.layout, item, f"{self.name} beat")

    def send_nowait(self, item) -> None:
        """Queue one transaction: an int, a :class:`Transaction`, or a value of the
        layout (dict/list); with a side-band, an ``(item, sideband_value)`` pair."""
        if self.sideband is None:
            self.queue.append(self._encode(item))
        else:
            payload, side = item
            self.queue.append((self._encode(payload), int(side)))

    async def send(self, item) -> None:
        """Queue one transaction (the queue is unbounded: this does not wait)."""
        self.send_nowait(item)

    def extend(self, items: Iterable) -> None:
        """Queue many transactions."""
        for item in items:
            self.send_nowait(item)

    @property
    def empty(self) -> bool:
        """True when nothing is left to send."""
        return not self.queue

    def count(self) -> int:
        return len(self.queue)

    async def wait(self) -> None:
        """Wait until every queued transaction has transferred."""
        while self.queue:
            await RisingEdge(self.clock)

    async def _run(self):
        valid, ready, payload = self.bus.valid, self.bus.ready, self.bus.payload
        side = self.sideband
        driven_valid, driven = False, None
        while True:
            await RisingEdge(self.clock)
            paused = self._paused()
            offer = bool(self.queue) and not paused
            if offer != driven_valid:
                valid.value = int(offer)
                driven_valid = offer
            if offer:
                head = self.queue[0]
                if head is not driven:
                    if side is None:
                        payload.value = head
                    else:
                        payload.value, side.value = head
                    driven = head
            await ReadOnly()
            edge = _edge(self._key)
            if offer and _high(ready):
                self.queue.popleft()
                driven = None
                self.sent += 1
                self.transfer_edges.append(edge + 1)


class StreamMonitor(_StreamComponent):
    """Watch ``bus`` passively and collect its transfers as :class:`Transaction` objects.

    Drives nothing, so it can watch any stream, also one between two instances inside
    the DUT. ``await recv()`` returns the next transaction; :meth:`add_callback` hands
    every transaction to a function as it arrives (a :class:`verif.scoreboard.Scoreboard`
    attaches this way).
    """

    def __init__(self, bus: StreamBus, clock, layout=None, *, name: str | None = None):
        super().__init__(bus, clock, layout, name=name)
        self.queue: deque[Transaction] = deque()
        #: Transfers seen so far.
        self.received = 0
        self._callbacks: list[Callable[[Transaction], None]] = []
        self._arrived = Event()
        self._start()

    def add_callback(self, callback: Callable[[Transaction], None]) -> None:
        self._callbacks.append(callback)

    def count(self) -> int:
        """Transactions waiting to be taken with :meth:`recv`."""
        return len(self.queue)

    @property
    def empty(self) -> bool:
        return not self.queue

    def recv_nowait(self) -> Transaction | None:
        return self.queue.popleft() if self.queue else None

    async def recv(self) -> Transaction:
        """The next transaction (waits for it)."""
        while not self.queue:
            self._arrived.clear()
            await self._arrived.wait()
        return self.queue.popleft()

    async def collect(self, count: int, *, timeout_cycles: int, what: str = "transfers") -> list[Transaction]:
        """The next ``count`` transactions, waiting at most ``timeout_cycles`` cycles; a
        timeout fails the test saying how many came."""
        for _ in range(timeout_cycles):
            if len(self.queue) >= count:
                return [self.queue.popleft() for _ in range(count)]
            await RisingEdge(self.clock)
        raise AssertionError(f"{self.name}: timeout: {len(self.queue)} of {count} {what} "
                             f"after {timeout_cycles} cycles")

    def _deliver(self, tx: Transaction) -> None:
        self.received += 1
        self.transfer_edges.append(tx.edge)
        self.queue.append(tx)
        for callback in self._callbacks:
            callback(tx)
        self._arrived.set()

    #: A monitor samples ``ready``; a sink drives it (:meth:`_ready`).
    _passive = True

    def _ready(self) -> bool:
        """Whether this component takes a transfer this cycle (a sink drives ``ready``)."""
        return True

    async def _run(self):
        valid, ready, payload = self.bus.valid, self.bus.ready, self.bus.payload
        passive = self._passive
        pending = None
        while True:
            await RisingEdge(self.clock)
            if pending is not None:
                self._deliver(pending)
                pending = None
            accepting = self._ready()
            await ReadOnly()
            edge = _edge(self._key)
            if accepting and _high(valid) and (not passive or _high(ready)):
                pending = Transaction(_bits(payload), edge + 1, self.layout)


class StreamSink(StreamMonitor):
    """A monitor that also drives ``ready``: takes every transfer of ``bus``.

    Parameters
    ----------
    backpressure : pause generator, optional
        Cycles on which ``ready`` is low (see :func:`random_pause`).
    """

    _passive = False

    def __init__(self, bus: StreamBus, clock, layout=None, *, backpressure: Iterable[bool] | None = None,
                 name: str | None = None):
        self._driven_ready = None
        bus.ready.value = 0
        super().__init__(bus, clock, layout, name=name)
        self.set_pause_generator(backpressure)

    def _ready(self) -> bool:
        ready = not self._paused()
        if ready != self._driven_ready:
            self.bus.ready.value = int(ready)
            self._driven_ready = ready
        return ready
