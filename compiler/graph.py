"""The compiler's front end: a ``torch.export`` program -> a small graph of supported ops.

:func:`from_exported` walks the exported ATen graph and builds :class:`Graph`, a list of
:class:`Op` in topological order, each naming its input and output values. Supported:

* on the accelerator: ``conv2d`` (stride, padding, groups 1, dilation 1) and ``linear``,
  each with a ReLU fused after it when the ReLU is its only user; ``batch_norm`` (eval)
  folded into the convolution before it;
* on the host, between accelerator segments: ``max_pool2d``, ``avg_pool2d``,
  ``adaptive_avg_pool2d``, ``flatten``/``view``/``reshape``, residual ``add``, ``matmul``
  of two activations, and the float ops the machine has no unit for (``softmax``,
  ``layer_norm``, ``gelu``, ``tanh``, ``sigmoid``, a ReLU that cannot be fused);
* ``dropout``, ``clone``, ``contiguous``, ``detach``: identities.

Anything else raises :class:`CompileError` naming the op and where it comes from in the
model (the ``nn.Module`` path and the source line torch.export recorded).
"""

from dataclasses import dataclass, field

import numpy as np

from . import CompileError

__all__ = ["Op", "Graph", "from_exported", "MACHINE_OPS", "HOST_OPS"]

MACHINE_OPS = ("conv", "linear")
HOST_OPS = ("maxpool", "avgpool", "adaptive_avgpool", "flatten", "reshape", "add", "matmul", "softmax",
            "layernorm", "gelu", "tanh", "sigmoid", "relu")


@dataclass
class Op:
    """One op: ``kind``, its ``name`` (the model path), input value names, output value name,
    attributes, parameters (numpy float64) and the output's shape."""

    kind: str
    name: str
    inputs: list
    output: str
    shape: tuple
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def on_machine(self) -> bool:
        return self.kind in MACHINE_OPS


@dataclass
class Graph:
    """The model as ops; ``input`` and ``output`` name the graph's values."""

    ops: list
    input: str
    input_shape: tuple
    output: str

    def users(self, value: str) -> list[Op]:
        return [op for op in self.ops if value in op.inputs]

    def producer(self, value: str) -> Op | None:
        return next((op for op in self.ops if op.output == value), None)


def _module(node) -> str:
    """The ``nn.Module`` path the node comes from, or its graph name (``forward``'s own ops)."""
    stack = node.meta.get("nn_module_stack") or {}
    path = [p for p, _ in stack.values() if p]
    return path[-1] if path else node.name


def _where(node) -> str:
    """Where a node comes from, for error messages: module path and source line."""
    trace = (node.meta.get("stack_trace") or "").strip().splitlines()
    line = next((t.strip() for t in reversed(trace) if t.strip().startswith("File")), "")
    return _module(node) + (f" ({line})" if line else "")


def _shape(node) -> tuple:
    val = node.meta.get("val")
    return tuple(int(d) for d in val.shape) if hasattr(val, "shape") else ()


def _ints(value, n: int = 2) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) if len(value) == n else tuple(int(value[0]) for _ in range(n))
    return tuple(int(value) for _ in range(n))


def from_exported(ep) -> Graph:
    """The :class:`Graph` of an ``ExportedProgram`` with one tensor input and one output."""
    sig = ep.graph_signature
    params = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    state = ep.state_dict
    constants = getattr(ep, "constants", {}) or {}
    tensors = {}
    for name, target in params.items():
        value = state.get(target, constants.get(target))
        tensors[name] = value.detach().double().numpy() if value is not None else None
    user_inputs = [s for s in sig.user_inputs]
    if len(user_inputs) != 1:
        raise CompileError(f"the model must take one tensor input, not {len(user_inputs)} ({user_inputs})")
    ops, alias = [], {}
    graph_input = user_inputs[0]
    input_shape = None
    output = None

    def value(arg):
        name = arg.name if hasattr(arg, "name") else arg
        return alias.get(name, name)

    def param(arg):
        name = arg.name if hasattr(arg, "name") else None
        if name not in tensors:
            raise CompileError(f"expected a parameter, got {arg!r}")
        return tensors[name]

    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name == graph_input:
                input_shape = _shape(node)
            continue
        if node.op == "output":
            outs = node.args[0]
            if len(outs) != 1:
                raise CompileError(f"the model must return one tensor, not {len(outs)}")
            output = value(outs[0])
            continue
        if node.op != "call_function":
            raise CompileError(f"unsupported graph node {node.op} {node.target} in {_where(node)}")
        target = str(node.target)
        op_name = target.split(".")[1] if target.startswith("aten.") else target
        args = node.args
        where = _where(node)
        shape = _shape(node)
        name = node.name
        if op_name in ("dropout", "clone", "contiguous", "detach", "alias", "lift_fresh_copy"):
            alias[node.name] = value(args[0])
            continue
        if op_name == "conv2d":
            weight = param(args[1])
            bias = param(args[2]) if len(args) > 2 and args[2] is not None else np.zeros(weight.shape[0])
            stride = _ints(args[3] if len(args) > 3 else 1)
            padding = args[4] if len(args) > 4 else 0
            if isinstance(padding, str):
                raise CompileError(f"conv2d padding={padding!r} in {where} is not supported: give numbers")
            padding = _ints(padding)
            dilation = _ints(args[5] if len(args) > 5 else 1)
            groups = int(args[6]) if len(args) > 6 else 1
            if groups != 1 or dilation != (1, 1):
                raise CompileError(f"conv2d with groups={groups}, dilation={dilation} in {where}: only "
                                   "groups=1, dilation=1 run on the accelerator")
            if stride[0] != stride[1] or padding[0] != padding[1]:
                raise CompileError(f"conv2d with stride {stride} and padding {padding} in {where}: the "
                                   "accelerator lowering needs square strides and paddings")
            ops.append(Op("conv", _module(node), [value(args[0])], name, shape,
                          {"stride": stride[0], "padding": padding[0], "kernel": tuple(weight.shape[2:])},
                          {"weight": weight, "bias": bias}))
        elif op_name == "linear":
            weight = param(args[1])
            bias = param(args[2]) if len(args) > 2 and args[2] is not None else np.zeros(weight.shape[0])
            ops.append(Op("linear", _module(node), [value(args[0])], name, shape, {},
                          {"weight": weight, "bias": bias}))
        elif op_name in ("batch_norm", "_native_batch_norm_legit_no_training"):
            w, b, mean, var = (param(a) if a is not None else None for a in args[1:5])
            eps = float(args[7] if op_name == "batch_norm" else args[6]) if len(args) > 6 else 1e-5
            ops.append(Op("bn", _module(node), [value(args[0])], name, shape, {"eps": eps},
                          {"weight": w, "bias": b, "mean": mean, "var": var}))
        elif op_name == "getitem":
            alias[node.name] = value(args[0])           # batch norm's tuple output: element 0
        elif op_name in ("relu", "relu_"):
            ops.append(Op("relu", _module(node), [value(args[0])], name, shape))
        elif op_name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
            kernel = _ints(args[1])
            stride = _ints(args[2]) if len(args) > 2 and args[2] else kernel
            padding = _ints(args[3]) if len(args) > 3 else (0, 0)
            ops.append(Op("avgpool" if op_name == "avg_pool2d" else "maxpool", _module(node), [value(args[0])],
                          name, shape, {"kernel": kernel, "stride": stride, "padding": padding}))
        elif op_name == "adaptive_avg_pool2d":
            ops.append(Op("adaptive_avgpool", _module(node), [value(args[0])], name, shape,
                          {"size": _ints(args[1])}))
        elif op_name in ("flatten", "view", "reshape", "_unsafe_view"):
            ops.append(Op("flatten" if op_name == "flatten" else "reshape", _module(node), [value(args[0])],
                          name, shape))
        elif op_name in ("add", "add_") and len(args) >= 2 and hasattr(args[1], "name"):
            ops.append(Op("add", _module(node), [value(args[0]), value(args[1])], name, shape))
        elif op_name in ("matmul", "bmm", "mm"):
            if not (hasattr(args[0], "name") and hasattr(args[1], "name")) or args[1].name in tensors:
                raise CompileError(f"{op_name} of an activation and a parameter in {where}: use nn.Linear")
            ops.append(Op("matmul", _module(node), [value(args[0]), value(args[1])], name, shape))
        elif op_name in ("softmax", "_softmax"):
            ops.append(Op("softmax", _module(node), [value(args[0])], name, shape, {"dim": int(args[1])}))
        elif op_name == "layer_norm":
            weight = param(args[2]) if len(args) > 2 and args[2] is not None else None
            bias = param(args[3]) if len(args) > 3 and args[3] is not None else None
            eps = float(args[4]) if len(args) > 4 else 1e-5
            ops.append(Op("layernorm", _module(node), [value(args[0])], name, shape,
                          {"normalized": tuple(args[1]), "eps": eps}, {"weight": weight, "bias": bias}))
        elif op_name in ("gelu", "tanh", "sigmoid"):
            ops.append(Op(op_name, _module(node), [value(args[0])], name, shape,
                          {"approximate": node.kwargs.get("approximate", "none")} if op_name == "gelu" else {}))
        else:
            raise CompileError(f"unsupported op {target} in {where}: the compiler lowers conv2d, linear, "
                               "batch_norm, relu, pooling, flatten/reshape, add, matmul and the host float ops "
                               "(softmax, layer_norm, gelu, tanh, sigmoid)")
    if input_shape is None or output is None:
        raise CompileError("the exported program has no tensor input or output")
    graph = Graph(ops, graph_input, input_shape, output)
    _fold_batch_norms(graph)
    _fuse_relus(graph)
    return graph


def _replace_value(graph: Graph, old: str, new: str) -> None:
    for op in graph.ops:
        op.inputs = [new if v == old else v for v in op.inputs]
    if graph.output == old:
        graph.output = new


def _fold_batch_norms(graph: Graph) -> None:
    """``conv -> batch_norm`` (eval) becomes one conv with scaled weights and a new bias."""
    for bn in [op for op in graph.ops if op.kind == "bn"]:
        conv = graph.producer(bn.inputs[0])
        if conv is None or conv.kind != "conv" or len(graph.users(conv.output)) != 1:
            raise CompileError(f"batch_norm in {bn.name} does not follow a convolution it can be folded into")
        p = bn.params
        gamma = p["weight"] if p["weight"] is not None else np.ones_like(p["mean"])
        beta = p["bias"] if p["bias"] is not None else np.zeros_like(p["mean"])
        scale = gamma / np.sqrt(p["var"] + bn.attrs["eps"])
        conv.params["weight"] = conv.params["weight"] * scale[:, None, None, None]
        conv.params["bias"] = (conv.params["bias"] - p["mean"]) * scale + beta
        conv.attrs["folded_bn"] = bn.name
        graph.ops.remove(bn)
        _replace_value(graph, bn.output, conv.output)


def _fuse_relus(graph: Graph) -> None:
    """A ReLU that is the only user of a conv/linear runs in that layer's POST."""
    for relu in [op for op in graph.ops if op.kind == "relu"]:
        layer = graph.producer(relu.inputs[0])
        if layer is not None and layer.on_machine and len(graph.users(layer.output)) == 1 \
                and not layer.attrs.get("relu"):
            layer.attrs["relu"] = True
            graph.ops.remove(relu)
            _replace_value(graph, relu.output, layer.output)
