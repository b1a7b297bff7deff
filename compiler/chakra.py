"""Chakra execution traces: the one writer and reader of the project.

A Chakra execution trace (arXiv 2305.14516) describes what one NPU does as a graph of
nodes (compute, memory load/store, point-to-point and collective communication) with
dependencies and typed attributes. Simulators such as ASTRA-sim 2.0 read one trace per
NPU, named ``PREFIX.<npu>.et``.

File format (uncompressed): a sequence of messages, each a varint32 byte length followed
by the serialised protobuf; first one ``GlobalMetadata`` (with ``version`` set: an empty
first message would read as end-of-file), then one ``Node`` message per node.

The protobuf message classes are built at run time from a
``google.protobuf.descriptor_pb2.FileDescriptorProto`` that states Chakra's public schema
(``et_def.proto``, package ``ChakraProtoMsg``) field by field, so no generated or copied
``*_pb2`` file is needed. Only the messages a trace file carries are declared
(``AttributeProto`` and its list messages, ``IOInfo``, ``Node``, ``GlobalMetadata``) with
Chakra's field numbers; the tests check them against Chakra's own schema.

Attributes, by the convention ASTRA-sim reads (the types matter: a value in another
member of the ``oneof`` reads as 0 there):

============== ======== ======================================================
name           type     on
============== ======== ======================================================
num_ops        int64    COMP (operations)
tensor_size    uint64   COMP, MEM_LOAD, MEM_STORE (bytes)
comm_type      int64    COMM_COLL (:class:`CollectiveType`)
comm_size      int64    COMM_COLL, COMM_SEND, COMM_RECV (bytes)
comm_src       int32    COMM_SEND, COMM_RECV (NPU)
comm_dst       int32    COMM_SEND, COMM_RECV (NPU)
comm_tag       int32    COMM_SEND, COMM_RECV (matches a send with its receive)
is_cpu_op      bool     every node (always false here)
============== ======== ======================================================

Errors a caller can cause (a dependency on a node that does not exist, a malformed
file, a trace set whose NPU count does not match) raise :class:`compiler.CompileError`.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Iterable, Mapping

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from golden.files import atomic_write

from . import CompileError

#: Schema version written into GlobalMetadata (the version of Chakra's schema followed).
SCHEMA_VERSION = "0.0.4"

PACKAGE = "ChakraProtoMsg"


class NodeType(enum.IntEnum):
    """Chakra's ``NodeType`` (the protobuf enum values)."""

    INVALID = 0
    METADATA = 1
    MEM_LOAD = 2
    MEM_STORE = 3
    COMP = 4
    COMM_SEND = 5
    COMM_RECV = 6
    COMM_COLL = 7


class CollectiveType(enum.IntEnum):
    """Chakra's ``CollectiveCommType``: the ``comm_type`` attribute of a COMM_COLL node."""

    ALL_REDUCE = 0
    REDUCE = 1
    ALL_GATHER = 2
    GATHER = 3
    SCATTER = 4
    BROADCAST = 5
    ALL_TO_ALL = 6
    REDUCE_SCATTER = 7
    REDUCE_SCATTER_BLOCK = 8
    BARRIER = 9


#: AttributeProto's value members in field-number order: the scalar form takes the odd
#: number 3, 5, ..., 31 and its list message (``<Name>List``, ``repeated values = 1``) the
#: even number after it.
_ATTR_VALUE_TYPES = (
    ("double", "TYPE_DOUBLE"), ("float", "TYPE_FLOAT"), ("int32", "TYPE_INT32"),
    ("int64", "TYPE_INT64"), ("uint32", "TYPE_UINT32"), ("uint64", "TYPE_UINT64"),
    ("sint32", "TYPE_SINT32"), ("sint64", "TYPE_SINT64"), ("fixed32", "TYPE_FIXED32"),
    ("fixed64", "TYPE_FIXED64"), ("sfixed32", "TYPE_SFIXED32"), ("sfixed64", "TYPE_SFIXED64"),
    ("bool", "TYPE_BOOL"), ("string", "TYPE_STRING"), ("bytes", "TYPE_BYTES"),
)

#: Attribute name -> the AttributeProto member it is written to (ASTRA-sim's reading).
ATTR_KINDS = {
    "num_ops": "int64", "tensor_size": "uint64", "comm_type": "int64", "comm_size": "int64",
    "comm_src": "int32", "comm_dst": "int32", "comm_tag": "int32", "comm_priority": "int32",
    "is_cpu_op": "bool",
}

_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1), "uint32": (0, 2**32 - 1),
               "uint64": (0, 2**64 - 1)}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """Chakra's et_def.proto (the part a trace file carries), field numbers as published."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="tessera_chakra_et_def.proto", package=PACKAGE,
                                             syntax="proto3")

    def add_field(msg, name, number, kind, *, repeated=False, type_name=None, oneof=None):
        f = msg.field.add(name=name, number=number, type=getattr(F, kind),
                          label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = f".{PACKAGE}.{type_name}"
        if oneof is not None:
            f.oneof_index = oneof
        return f

    for scalar, kind in _ATTR_VALUE_TYPES:
        lst = fdp.message_type.add(name=f"{scalar.capitalize()}List")
        add_field(lst, "values", 1, kind, repeated=True)

    attr = fdp.message_type.add(name="AttributeProto")
    add_field(attr, "name", 1, "TYPE_STRING")
    add_field(attr, "doc_string", 2, "TYPE_STRING")
    attr.oneof_decl.add(name="value")
    for i, (scalar, kind) in enumerate(_ATTR_VALUE_TYPES):
        add_field(attr, f"{scalar}_val", 3 + 2 * i, kind, oneof=0)
        add_field(attr, f"{scalar}_list", 4 + 2 * i, "TYPE_MESSAGE",
                  type_name=f"{scalar.capitalize()}List", oneof=0)

    meta = fdp.message_type.add(name="GlobalMetadata")
    add_field(meta, "version", 1, "TYPE_STRING")
    add_field(meta, "attr", 2, "TYPE_MESSAGE", repeated=True, type_name="AttributeProto")

    io = fdp.message_type.add(name="IOInfo")
    for number, name in enumerate(("values", "shapes", "types"), start=1):
        add_field(io, name, number, "TYPE_STRING")

    node_type = fdp.enum_type.add(name="NodeType")
    for member in NodeType:
        node_type.value.add(name=f"{member.name}_NODE", number=member.value)
    coll = fdp.enum_type.add(name="CollectiveCommType")
    for member in CollectiveType:
        coll.value.add(name=member.name, number=member.value)

    node = fdp.message_type.add(name="Node")
    add_field(node, "id", 1, "TYPE_UINT64")
    add_field(node, "name", 2, "TYPE_STRING")
    add_field(node, "type", 3, "TYPE_ENUM", type_name="NodeType")
    add_field(node, "ctrl_deps", 4, "TYPE_UINT64", repeated=True)
    add_field(node, "data_deps", 5, "TYPE_UINT64", repeated=True)
    add_field(node, "start_time_micros", 6, "TYPE_UINT64")
    add_field(node, "duration_micros", 7, "TYPE_UINT64")
    add_field(node, "inputs", 8, "TYPE_MESSAGE", type_name="IOInfo")
    add_field(node, "outputs", 9, "TYPE_MESSAGE", type_name="IOInfo")
    add_field(node, "attr", 10, "TYPE_MESSAGE", repeated=True, type_name="AttributeProto")
    return fdp


@cache
def messages() -> dict[str, type]:
    """The message classes (``Node``, ``GlobalMetadata``, ``AttributeProto``, ...), built once.

    They live in a private descriptor pool, so they never clash with Chakra's own
    generated module when both are imported (as in the tests).
    """
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(_file_descriptor())
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name])
            for name in fd.message_types_by_name}


# --- the typed API -------------------------------------------------------------------

@dataclass(frozen=True)
class TraceNode:
    """One node of a trace, as written and as read back.

    Members
    -------
    id : int
        Node id, unique within its trace (ids are 0, 1, ... in the order nodes are added).
    name : str
    type : NodeType
    data_deps, ctrl_deps : tuple of int
        Ids of nodes this one waits for (data: a value it consumes; control: order only).
    attrs : dict
        Attribute name -> value (int, float, bool, str or bytes; a list for list forms).
    duration_micros : int
        Duration in µs (ASTRA-sim uses it for COMP nodes when its roofline is off; 0: unset).
    """

    id: int
    name: str
    type: NodeType
    data_deps: tuple[int, ...] = ()
    ctrl_deps: tuple[int, ...] = ()
    attrs: Mapping[str, object] = field(default_factory=dict)
    duration_micros: int = 0


class Trace:
    """The execution trace of one NPU, built node by node.

    Every ``add_*`` method returns the new node's id, to be passed as a dependency of
    later nodes (``deps``: data dependencies; ``ctrl_deps``: control dependencies). Every
    node carries ``is_cpu_op = false``.

    Parameters
    ----------
    npu : int
        The NPU this trace belongs to (``comm_src`` of its sends, ``comm_dst`` of its
        receives; the ``<npu>`` of its file name).
    """

    def __init__(self, npu: int):
        if not isinstance(npu, int) or npu < 0:
            raise CompileError(f"npu must be an integer >= 0, not {npu!r}")
        self.npu = npu
        self.nodes: list[TraceNode] = []

    def __len__(self) -> int:
        return len(self.nodes)

    def add_node(self, name: str, type: NodeType, attrs: Mapping[str, object] | None = None,
                 deps: Iterable[int] = (), ctrl_deps: Iterable[int] = (),
                 duration_micros: int = 0) -> int:
        """Append any node; the other ``add_*`` methods are shorthands for this one."""
        node_id = len(self.nodes)
        data = tuple(int(d) for d in deps)
        ctrl = tuple(int(d) for d in ctrl_deps)
        for dep in data + ctrl:
            if not 0 <= dep < node_id:
                raise CompileError(f"node {name!r} of NPU {self.npu} depends on node {dep}, "
                                   f"which does not precede it (nodes 0..{node_id - 1} exist)")
        if duration_micros < 0:
            raise CompileError(f"duration_micros must be >= 0, not {duration_micros!r}")
        merged = {"is_cpu_op": False, **(attrs or {})}
        for key, value in merged.items():
            _attr_kind(key, value)
        self.nodes.append(TraceNode(node_id, name, NodeType(type), data, ctrl, merged, int(duration_micros)))
        return node_id

    def add_comp(self, name: str, num_ops: int, tensor_size: int, deps: Iterable[int] = (),
                 duration_micros: int = 0, ctrl_deps: Iterable[int] = ()) -> int:
        """A compute node of ``num_ops`` operations touching ``tensor_size`` bytes."""
        return self.add_node(name, NodeType.COMP, {"num_ops": num_ops, "tensor_size": tensor_size},
                             deps, ctrl_deps, duration_micros)

    def add_mem_load(self, name: str, tensor_size: int, deps: Iterable[int] = (),
                     ctrl_deps: Iterable[int] = ()) -> int:
        """A load of ``tensor_size`` bytes from memory."""
        return self.add_node(name, NodeType.MEM_LOAD, {"tensor_size": tensor_size}, deps, ctrl_deps)

    def add_mem_store(self, name: str, tensor_size: int, deps: Iterable[int] = (),
                      ctrl_deps: Iterable[int] = ()) -> int:
        """A store of ``tensor_size`` bytes to memory."""
        return self.add_node(name, NodeType.MEM_STORE, {"tensor_size": tensor_size}, deps, ctrl_deps)

    def add_comm_send(self, name: str, dst: int, size: int, tag: int, deps: Iterable[int] = (),
                      ctrl_deps: Iterable[int] = ()) -> int:
        """Send ``size`` bytes to NPU ``dst``; ``tag`` pairs it with the receive there."""
        self._check_peer(dst, "dst")
        return self.add_node(name, NodeType.COMM_SEND, {"comm_src": self.npu, "comm_dst": dst,
                                                        "comm_size": size, "comm_tag": tag},
                             deps, ctrl_deps)

    def add_comm_recv(self, name: str, src: int, size: int, tag: int, deps: Iterable[int] = (),
                      ctrl_deps: Iterable[int] = ()) -> int:
        """Receive ``size`` bytes from NPU ``src``; ``tag`` pairs it with the send there."""
        self._check_peer(src, "src")
        return self.add_node(name, NodeType.COMM_RECV, {"comm_src": src, "comm_dst": self.npu,
                                                        "comm_size": size, "comm_tag": tag},
                             deps, ctrl_deps)

    def add_comm_coll(self, name: str, comm_type: CollectiveType | int, size: int,
                      deps: Iterable[int] = (), ctrl_deps: Iterable[int] = ()) -> int:
        """A collective (:class:`CollectiveType`) over ``size`` bytes, left to the simulator."""
        try:
            kind = CollectiveType(comm_type)
        except ValueError:
            raise CompileError(f"comm_type must be a Chakra CollectiveCommType, not {comm_type!r}") from None
        return self.add_node(name, NodeType.COMM_COLL, {"comm_type": int(kind), "comm_size": size},
                             deps, ctrl_deps)

    def _check_peer(self, peer: int, what: str) -> None:
        if not isinstance(peer, int) or peer < 0 or peer == self.npu:
            raise CompileError(f"comm {what} must be another NPU's id (>= 0, not {self.npu}), not {peer!r}")


# --- encoding --------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _attr_kind(name: str, value) -> str:
    """The AttributeProto member ``value`` goes to (``int64``, ``bool_list``, ...), checked."""
    kind = ATTR_KINDS.get(name)
    if kind is None:                                   # not a convention: by Python type
        if isinstance(value, (list, tuple)):
            for kind, ok in (("bool", lambda v: isinstance(v, bool)),
                             ("int64", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                             ("double", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
                             ("string", lambda v: isinstance(v, str))):
                if all(ok(v) for v in value):
                    if kind == "int64" and not all(_INT_RANGES["int64"][0] <= v <= _INT_RANGES["int64"][1]
                                                   for v in value):
                        break
                    return f"{kind}_list"
            raise CompileError(f"attribute {name!r}: a list must hold one type (bool, int64, float or str), "
                               f"not {value!r}")
        for kind, types in (("bool", bool), ("int64", int), ("double", float), ("string", str), ("bytes", bytes)):
            if isinstance(value, types):
                break
        else:
            raise CompileError(f"attribute {name!r} has a value of unsupported type: {value!r}")
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise CompileError(f"attribute {name!r} must be an integer in [{lo}, {hi}] ({kind}), not {value!r}")
    elif kind == "bool" and not isinstance(value, bool):
        raise CompileError(f"attribute {name!r} must be a bool, not {value!r}")
    return kind


def _set_attr(attr, name: str, value) -> None:
    kind = _attr_kind(name, value)
    if kind.endswith("_list"):
        getattr(attr, kind).values.extend(value)
    else:
        setattr(attr, f"{kind}_val", value)


def encode(node: TraceNode):
    """The protobuf ``Node`` message of ``node``."""
    msg = messages()["Node"](id=node.id, name=node.name, type=int(node.type))
    msg.data_deps.extend(node.data_deps)
    msg.ctrl_deps.extend(node.ctrl_deps)
    if node.duration_micros:
        msg.duration_micros = node.duration_micros
    for name, value in node.attrs.items():
        _set_attr(msg.attr.add(name=name), name, value)
    return msg


def _attr_value(attr):
    which = attr.WhichOneof("value")
    if which is None:
        return None
    value = getattr(attr, which)
    return list(value.values) if which.endswith("_list") else value


def decode(msg) -> TraceNode:
    """The :class:`TraceNode` of a protobuf ``Node`` message."""
    try:
        kind = NodeType(msg.type)
    except ValueError:
        raise CompileError(f"node {msg.id} has an unknown node type {msg.type}") from None
    return TraceNode(msg.id, msg.name, kind, tuple(msg.data_deps), tuple(msg.ctrl_deps),
                     {a.name: _attr_value(a) for a in msg.attr}, msg.duration_micros)


def trace_bytes(trace: Trace, version: str = SCHEMA_VERSION) -> bytes:
    """The file content of ``trace``: GlobalMetadata, then every node, each length-delimited."""
    if not version:
        raise CompileError("the GlobalMetadata version must be set (an empty first message reads as end of file)")
    parts = [messages()["GlobalMetadata"](version=version).SerializeToString()]
    parts += [encode(node).SerializeToString() for node in trace.nodes]
    return b"".join(_varint(len(p)) + p for p in parts)


def trace_path(prefix: str | os.PathLike, npu: int) -> Path:
    """``PREFIX.<npu>.et``."""
    return Path(f"{os.fspath(prefix)}.{npu}.et")


def write_traces(prefix: str | os.PathLike, traces: Iterable[Trace]) -> list[Path]:
    """Write ``PREFIX.<npu>.et`` for every trace (NPUs 0..N-1, each once); return the paths.

    Each file is written to a temporary name and renamed, so a reader never sees half a
    file; traces ``PREFIX.<N>.et``, ``PREFIX.<N+1>.et``, ... left by an earlier, larger set
    are removed, so the set on disk is exactly the one written.
    """
    traces = sorted(traces, key=lambda t: t.npu)
    npus = [t.npu for t in traces]
    if npus != list(range(len(traces))):
        raise CompileError(f"traces must cover NPUs 0..N-1 once each, not {npus}")
    data = [trace_bytes(t) for t in traces]           # encode all before writing any
    paths = [trace_path(prefix, t.npu) for t in traces]
    for path, blob in zip(paths, data):
        atomic_write(path, blob)
    stale = len(paths)
    while trace_path(prefix, stale).exists():
        trace_path(prefix, stale).unlink()
        stale += 1
    return paths


def read_trace(path: str | os.PathLike) -> tuple[str, list[TraceNode]]:
    """Read one ``.et`` file: (the GlobalMetadata version, its nodes in file order)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CompileError(f"cannot read trace {path}: {exc.strerror}") from None
    msgs = messages()
    pos, items = 0, []
    while pos < len(blob):
        size, shift = 0, 0
        while True:
            if pos >= len(blob) or shift > 28:
                raise CompileError(f"trace {path} is malformed: a bad length prefix at byte {pos}")
            byte = blob[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + size > len(blob):
            raise CompileError(f"trace {path} is truncated: a message of {size} bytes at byte {pos} "
                               f"runs past its end ({len(blob)} bytes)")
        items.append(blob[pos:pos + size])
        pos += size
    if not items:
        raise CompileError(f"trace {path} is empty (no GlobalMetadata)")
    try:
        meta = msgs["GlobalMetadata"].FromString(items[0])
        nodes = [decode(msgs["Node"].FromString(item)) for item in items[1:]]
    except Exception as exc:                          # protobuf's DecodeError
        if isinstance(exc, CompileError):
            raise
        raise CompileError(f"trace {path} is malformed: {exc}") from None
    return meta.version, nodes


def read_traces(prefix: str | os.PathLike, npus: int | None = None) -> list[list[TraceNode]]:
    """Read ``PREFIX.0.et`` ... ``PREFIX.<N-1>.et``: one node list per NPU.

    ``npus`` given: exactly that many traces must exist (no more, no fewer), or
    :class:`compiler.CompileError` names the mismatch.
    """
    found = []
    while trace_path(prefix, len(found)).exists():
        found.append(trace_path(prefix, len(found)))
    if npus is not None and len(found) != npus:
        raise CompileError(f"expected traces for {npus} NPUs at {os.fspath(prefix)}.<npu>.et, "
                           f"found {len(found)} (NPU count does not match)")
    if not found:
        raise CompileError(f"no traces at {os.fspath(prefix)}.0.et")
    return [read_trace(p)[1] for p in found]
