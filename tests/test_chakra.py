"""compiler.chakra: the run-time schema matches Chakra's, and Chakra's own tools read our traces."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import CompileError
from compiler.chakra import (CollectiveType, NodeType, Trace, TraceNode, messages, read_trace, read_traces,
                             trace_bytes, write_traces)


def _sample_traces() -> list[Trace]:
    """Two NPUs, every node type and every attribute kind the writer emits."""
    a, b = Trace(0), Trace(1)
    load = a.add_mem_load("load w", tensor_size=4096)
    comp = a.add_comp("matmul", num_ops=2 * 64 * 64 * 64, tensor_size=3 * 4096, deps=[load], duration_micros=7)
    store = a.add_mem_store("store y", tensor_size=4096, deps=[comp])
    coll = a.add_comm_coll("all-reduce y", CollectiveType.ALL_REDUCE, 1 << 20, deps=[store])
    a.add_comm_send("send y", dst=1, size=4096, tag=7, deps=[coll], ctrl_deps=[comp])
    recv = b.add_comm_recv("recv y", src=0, size=4096, tag=7)
    b.add_comm_coll("all-reduce y", CollectiveType.ALL_REDUCE, 1 << 20)
    b.add_node("custom", NodeType.COMP, {"num_ops": 1, "tensor_size": 2, "note": "x", "ratio": 0.5,
                                         "dims": [3, 4]}, deps=[recv])
    return [a, b]


def test_schema_matches_chakras_own_field_for_field():
    """Every message, field (number, type, repeated, oneof) and enum value we declare at run
    time is the one in Chakra's generated et_def_pb2 (mlc-chakra)."""
    from chakra.schema.protobuf import et_def_pb2

    theirs = et_def_pb2.DESCRIPTOR
    ours = messages()["Node"].DESCRIPTOR.file
    assert ours.package == theirs.package == "ChakraProtoMsg"
    for name, mine in ours.message_types_by_name.items():
        ref = theirs.message_types_by_name[name]
        got = [(f.name, f.number, f.type, f.is_repeated, f.message_type and f.message_type.name,
                f.containing_oneof and f.containing_oneof.name) for f in mine.fields]
        want = [(f.name, f.number, f.type, f.is_repeated, f.message_type and f.message_type.name,
                 f.containing_oneof and f.containing_oneof.name) for f in ref.fields]
        assert got == want, name
    for name, mine in ours.enum_types_by_name.items():
        ref = theirs.enum_types_by_name[name]
        assert [(v.name, v.number) for v in mine.values] == [(v.name, v.number) for v in ref.values][:len(mine.values)]
    assert {"Node", "GlobalMetadata", "AttributeProto", "IOInfo"} <= set(ours.message_types_by_name)


def test_write_read_round_trip(tmp_path):
    traces = _sample_traces()
    paths = write_traces(tmp_path / "w", traces)
    assert [p.name for p in paths] == ["w.0.et", "w.1.et"]
    assert not list(tmp_path.glob(".*"))                       # no temporary files left
    back = read_traces(tmp_path / "w", npus=2)
    for trace, nodes in zip(traces, back):
        assert nodes == trace.nodes
    version, _ = read_trace(paths[0])
    assert version == "0.0.4"
    assert all(node.attrs["is_cpu_op"] is False for nodes in back for node in nodes)


def _jsonize(path: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / (path.name + ".json")
    tool = Path(sys.executable).with_name("chakra_jsonizer")
    subprocess.run([str(tool), "--input_filename", str(path), "--output_filename", str(out)],
                   check=True, capture_output=True)
    text, pos, docs = out.read_text(), 0, []
    decoder = json.JSONDecoder()
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


def test_chakra_jsonizer_reads_every_node_back(tmp_path):
    """Chakra's own reader (mlc-chakra's chakra_jsonizer) decodes our files node for node:
    GlobalMetadata first, then each node with its id, name, type, dependencies and the
    attributes in the members ASTRA-sim reads (int64 num_ops, uint64 tensor_size, int32
    comm_src/dst/tag, int64 comm_type/comm_size, bool is_cpu_op)."""
    traces = _sample_traces()
    paths = write_traces(tmp_path / "j", traces)
    member = {"num_ops": "int64Val", "tensor_size": "uint64Val", "comm_type": "int64Val", "comm_size": "int64Val",
              "comm_src": "int32Val", "comm_dst": "int32Val", "comm_tag": "int32Val", "is_cpu_op": "boolVal",
              "note": "stringVal", "ratio": "doubleVal"}
    for trace, path in zip(traces, paths):
        meta, *docs = _jsonize(path, tmp_path)
        assert meta == {"version": "0.0.4"}
        assert len(docs) == len(trace.nodes)
        for node, doc in zip(trace.nodes, docs):
            assert int(doc.get("id", 0)) == node.id
            assert doc["name"] == node.name
            assert doc["type"] == f"{node.type.name}_NODE"
            assert [int(d) for d in doc.get("dataDeps", [])] == list(node.data_deps)
            assert [int(d) for d in doc.get("ctrlDeps", [])] == list(node.ctrl_deps)
            assert int(doc.get("durationMicros", 0)) == node.duration_micros
            attrs = {a["name"]: a for a in doc["attr"]}
            assert set(attrs) == set(node.attrs)
            for name, value in node.attrs.items():
                if name == "dims":
                    assert [int(v) for v in attrs[name]["int64List"]["values"]] == value
                    continue
                got = attrs[name].get(member[name], False if member[name] == "boolVal" else 0)
                assert type(value)(got) == value, name


def test_bad_input_is_a_compile_error(tmp_path):
    t = Trace(0)
    with pytest.raises(CompileError, match="depends on node 3"):
        t.add_comp("x", 1, 1, deps=[3])
    with pytest.raises(CompileError, match="comm_tag"):
        t.add_comm_send("s", dst=1, size=8, tag=2**31)
    with pytest.raises(CompileError, match="another NPU"):
        t.add_comm_recv("r", src=0, size=8, tag=1)
    with pytest.raises(CompileError, match="CollectiveCommType"):
        t.add_comm_coll("c", 42, 8)
    with pytest.raises(CompileError, match="tensor_size"):
        t.add_mem_load("l", tensor_size=-1)
    with pytest.raises(CompileError, match="cover NPUs"):
        write_traces(tmp_path / "gap", [Trace(0), Trace(2)])
    with pytest.raises(CompileError, match="version"):
        trace_bytes(Trace(0), version="")
    write_traces(tmp_path / "n", [Trace(0), Trace(1), Trace(2)])
    with pytest.raises(CompileError, match="expected traces for 4 NPUs.*found 3"):
        read_traces(tmp_path / "n", npus=4)
    blob = (tmp_path / "n.0.et").read_bytes()
    (tmp_path / "cut.0.et").write_bytes(trace_bytes(_sample_traces()[0])[:-3])
    with pytest.raises(CompileError, match="truncated"):
        read_trace(tmp_path / "cut.0.et")
    (tmp_path / "bad.0.et").write_bytes(blob + b"\x03\xff\xff\xff")
    with pytest.raises(CompileError, match="malformed"):
        read_trace(tmp_path / "bad.0.et")


def test_a_smaller_trace_set_replaces_a_larger_one(tmp_path):
    write_traces(tmp_path / "s", [Trace(i) for i in range(4)])
    write_traces(tmp_path / "s", [Trace(i) for i in range(2)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.0.et", "s.1.et"]
    assert len(read_traces(tmp_path / "s", npus=2)) == 2


def test_trace_node_is_what_the_api_returns():
    t = Trace(3)
    i = t.add_comm_send("s", dst=0, size=10, tag=5)
    assert t.nodes[i] == TraceNode(0, "s", NodeType.COMM_SEND, (), (), {"is_cpu_op": False, "comm_src": 3,
                                                                       "comm_dst": 0, "comm_size": 10,
                                                                       "comm_tag": 5})
