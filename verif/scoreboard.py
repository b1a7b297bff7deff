"""Scoreboards: a stream's observed transactions against the expected ones, in order,
exactly.

A :class:`Scoreboard` holds a queue of expected payloads (each with a note saying what it
is, e.g. ``"extremes: row block 1, column 2"``) and attaches to a
:class:`verif.streams.StreamMonitor` or :class:`~verif.streams.StreamSink`; every
transaction the monitor sees is compared with the next expected one, bit for bit. A
mismatch names the stream, the transaction's index, its note and every field that
differs (decoded with the stream's :mod:`spec` layout)::

    nm_core.o: transaction 7 (extremes: row block 1, column 0) differs in 2 of 4 fields:
    payload[1] got 12, want -4; payload[3] got 0, want 9

Each block's scoreboard (``NMCoreScoreboard`` in :mod:`verif.nm_core_tb`, ...) is this
class plus ``expect_*`` methods that compute the expected payloads with the block's
golden model.
"""

from collections import deque
from typing import Any

from cocotb.triggers import RisingEdge

from .streams import StreamMonitor, Transaction, field_values

__all__ = ["Scoreboard"]

#: Mismatch messages kept (the count of all of them is kept too).
KEEP = 10
#: Differing fields named per mismatch.
FIELDS_SHOWN = 4


def _label(path: str) -> str:
    """A field path for messages: the payload itself, or ``payload[3]`` for an array root."""
    return "payload" + path if not path or path.startswith("[") else path


class Scoreboard:
    """Exact, in-order comparison of a stream's transactions with expected payloads.

    Parameters
    ----------
    name : str
        The stream's name in messages; :meth:`attach` takes the monitor's when empty.
    layout : amaranth layout, optional
        The payload layout: expected values may then be dicts/lists (packed with
        :func:`spec.packing.pack`), and mismatches name fields.

    Members
    -------
    matched : int
        Transactions equal to their expected payload.
    errors : int
        Transactions that differed, plus unexpected ones.
    differing_fields : int
        Fields that differed, over all mismatched transactions.
    mismatches : list of str
        The first :data:`KEEP` mismatch messages.
    """

    def __init__(self, name: str = "", layout=None):
        self.name = name
        self.layout = layout
        self.clock = None
        self.expected: deque[tuple[int, str]] = deque()
        self.observed = 0
        self.matched = 0
        self.errors = 0
        self.differing_fields = 0
        self.mismatches: list[str] = []
        self._drain_from = 0

    # -- feeding -----------------------------------------------------------------------

    def _encode(self, item) -> int:
        if isinstance(item, Transaction):
            return item.bits
        if isinstance(item, int):
            return item
        if self.layout is None:
            raise TypeError(f"{self.name}: a scoreboard without a layout takes ints, not {item!r}")
        from spec.packing import pack
        return pack(self.layout, item, f"{self.name} expected value")

    def expect(self, item, note: str = "") -> None:
        """Queue one expected payload (int bits, a value of the layout, a Transaction)."""
        self.expected.append((self._encode(item), note))

    def expect_many(self, items, note: str = "") -> None:
        for item in items:
            self.expect(item, note)

    # -- observing ---------------------------------------------------------------------

    def attach(self, monitor: StreamMonitor) -> "Scoreboard":
        """Compare every transaction ``monitor`` sees from now on."""
        if not self.name:
            self.name = monitor.name
        if self.layout is None:
            self.layout = monitor.layout
        self.clock = monitor.clock
        monitor.add_callback(self.observe)
        return self

    def observe(self, tx: Transaction | int) -> None:
        """Compare one observed transaction with the next expected payload."""
        bits = tx.bits if isinstance(tx, Transaction) else int(tx)
        index = self.observed
        self.observed += 1
        if not self.expected:
            self._record(f"{self.name}: transaction {index} ({self._show(bits)}) was not expected")
            return
        want, note = self.expected.popleft()
        if bits == want:
            self.matched += 1
            return
        self._record(self.describe(index, note, bits, want))

    def _record(self, message: str) -> None:
        self.errors += 1
        if len(self.mismatches) < KEEP:
            self.mismatches.append(message)

    def _show(self, bits: int) -> str:
        if self.layout is None:
            return f"{bits:#x}"
        return ", ".join(f"{k}={v}" for k, v in field_values(self.layout, bits).items())

    def describe(self, index: int, note: str, got: int, want: int) -> str:
        """The message for transaction ``index`` (``note``) with payload ``got`` instead
        of ``want``: every differing field, by path."""
        where = f"{self.name}: transaction {index}" + (f" ({note})" if note else "")
        if self.layout is None:
            self.differing_fields += 1
            return f"{where} differs: got {got:#x}, want {want:#x}"
        g, w = field_values(self.layout, got), field_values(self.layout, want)
        diff = [k for k in w if g[k] != w[k]]
        self.differing_fields += len(diff)
        shown = "; ".join(f"{_label(k)} got {g[k]}, want {w[k]}" for k in diff[:FIELDS_SHOWN])
        more = f"; ... ({len(diff) - FIELDS_SHOWN} more)" if len(diff) > FIELDS_SHOWN else ""
        return f"{where} differs in {len(diff)} of {len(w)} fields: {shown}{more}"

    # -- results -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Expected payloads not seen yet."""
        return len(self.expected)

    def check(self) -> None:
        """Fail (AssertionError) if any transaction differed or was not expected."""
        if self.errors:
            more = f" (and {self.errors - 1} more mismatching transactions)" if self.errors > 1 else ""
            raise AssertionError(self.mismatches[0] + more)

    async def drain(self, timeout_cycles: int, *, what: str = "transactions", check: bool = True,
                    clock=None) -> None:
        """Wait until every expected payload has been seen (at most ``timeout_cycles``
        cycles of the attached monitor's clock); then :meth:`check` unless ``check`` is
        False. With ``check``, the first mismatch ends the wait at once."""
        clock = clock or self.clock
        if clock is None:
            raise TypeError(f"{self.name}: attach the scoreboard to a monitor (or pass clock=)")
        total = self.observed - self._drain_from + self.pending
        for _ in range(timeout_cycles):
            if not self.expected or (check and self.errors):
                break
            await RisingEdge(clock)
        else:
            seen = self.observed - self._drain_from
            note = self.expected[0][1]
            raise AssertionError(f"{self.name}: timeout: {seen} of {total} {what} after "
                                 f"{timeout_cycles} cycles" + (f"; waiting for {note}" if note else ""))
        self._drain_from = self.observed
        if check:
            self.check()

    def summary(self) -> dict[str, Any]:
        return {"observed": self.observed, "matched": self.matched, "errors": self.errors,
                "differing_fields": self.differing_fields, "pending": self.pending}
