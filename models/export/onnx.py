"""ONNX export of the single-task zoo rankers (FM, DeepFM, DCN-v2, hashed LR) with tf2onnx.

The rankers take raw feature columns and preprocess them in their own graph. The export
keeps as much of that graph as ONNX can express; here is where each part runs:

ONNX (``OnnxRanker.model``), from the raw columns to the prediction:

- string vocabulary lookups (``StringLookup``) as ``ai.onnx.ml`` ``CategoryMapper``,
  integer vocabulary lookups (``IntegerLookup``) as ``ai.onnx.ml`` ``LabelEncoder`` (their
  out-of-vocabulary index is the mapper's default, so unseen values behave as in TF);
- ``log1p`` as ``Log(1 + x)``, standardisation, quantile bucketizing (TF ``Bucketize``:
  the number of boundaries ``<= x``, as comparisons and a sum), sin / cos of cyclical
  columns;
- embeddings, the network (FM / DCN / MLP layers) and the final sigmoid.

TensorFlow (``OnnxRanker.onnx_inputs``): only the FarmHash fingerprints
(``StringToHashBucketFast``, also ``StringToHashBucketStrong`` for salted hashing) of
Keras ``Hashing`` layers: hashed columns, hashed crosses, the hashed LR's features, and
the out-of-vocabulary hashing of lookups with more than one OOV bucket. No ONNX operator
computes FarmHash, so each hash op's output (int64 bucket ids) becomes an ONNX input
named like the op, and ``onnx_inputs`` computes it with the model's own graph: the
frozen graph that was converted, pruned to the hash outputs. The string joins and
bucketizing that only feed a hash run there too. Every other ONNX input is a raw
feature column, passed through unchanged.

So a model without hashing runs entirely in ONNX Runtime from raw rows; a model with
hashing needs TensorFlow for the bucket ids (``onnx_inputs``) and ONNX Runtime for the
rest. The exported file records both input lists in its metadata
(``reclake.raw_inputs``, ``reclake.hashed_inputs``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf_keras as keras
from tf2onnx import constants, optimizer, tf_loader, tfonnx, utils
from tf2onnx.custom_opsets.onnx_ml import LookupTableFind
from tf2onnx.handler import tf_op

HASH_OPS = ("StringToHashBucketFast", "StringToHashBucketStrong")
"""TensorFlow ops without an ONNX equivalent: their outputs become ONNX inputs."""
MIN_OPSET = 13
ML_OPSET = 2
"""``ai.onnx.ml`` version: ``LabelEncoder`` maps int64 -> int64 from version 2 on."""
HANDLER_DOMAIN = "ai.reclake.tf2onnx"
"""Private tf2onnx handler domain: conversions that list it use this module's handlers
for the ops below; every other tf2onnx conversion in the process is unaffected."""
OUTPUT_NAME = "prediction"
PARITY_TOLERANCE = 1e-5
METADATA_RAW_INPUTS = "reclake.raw_inputs"
METADATA_HASHED_INPUTS = "reclake.hashed_inputs"


@tf_op("LookupTableFindV2", domain=HANDLER_DOMAIN)
class _VocabularyLookup:
    """String -> int64 tables as tf2onnx converts them (``CategoryMapper``); int64 -> int64
    tables (Keras ``IntegerLookup``, which tf2onnx rejects) as ``LabelEncoder``."""

    @classmethod
    def version_1(cls, ctx, node, initialized_tables, **kwargs):
        if ctx.get_dtype(node.input[1]) != onnx.TensorProto.INT64:
            return LookupTableFind.version_8(ctx, node, initialized_tables=initialized_tables, **kwargs)
        table = node.inputs[0]
        while table.type == "Identity":
            table = table.inputs[0]
        keys, values = initialized_tables[table.get_attr_value("shared_name")]
        default = node.inputs[2].get_tensor_value()
        name, key_input, outputs = node.name, node.input[1], node.output
        shape = ctx.get_shape(key_input)
        ctx.remove_node(name)
        ctx.make_node(
            "LabelEncoder",
            [key_input],
            outputs=outputs,
            name=name,
            domain=constants.AI_ONNX_ML_DOMAIN,
            attr={
                "keys_int64s": np.asarray(keys, dtype=np.int64).tolist(),
                "values_int64s": np.asarray(values, dtype=np.int64).tolist(),
                "default_int64": int(default),
            },
            shapes=[shape],
            dtypes=[onnx.TensorProto.INT64],
        )
        if not ctx.find_output_consumers(table.output[0]):
            ctx.remove_node(table.name)


@tf_op("Log1p", domain=HANDLER_DOMAIN)
class _Log1p:
    """``log1p(x)`` as ``Log(x + 1)`` (ONNX has no log1p)."""

    @classmethod
    def version_1(cls, ctx, node, **kwargs):
        dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
        one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
        shifted = ctx.make_node("Add", [node.input[0], one.output[0]], op_name_scope=node.name)
        ctx.replace_input(node, node.input[0], shifted.output[0], 0)
        node.type = "Log"


@tf_op("Bucketize", domain=HANDLER_DOMAIN)
class _Bucketize:
    """TF ``Bucketize``: the number of boundaries ``<= x``, int32."""

    @classmethod
    def version_1(cls, ctx, node, **kwargs):
        boundaries = np.array(node.get_attr_value("boundaries"), dtype=np.float32)
        name, value, outputs = node.name, node.input[0], node.output
        shape = ctx.get_shape(outputs[0])
        ctx.remove_node(name)
        if ctx.get_dtype(value) != onnx.TensorProto.FLOAT:
            value = ctx.make_node("Cast", [value], attr={"to": onnx.TensorProto.FLOAT}, op_name_scope=name).output[0]
        last_axis = ctx.make_const(utils.make_name(f"{name}_axis"), np.array([-1], dtype=np.int64)).output[0]
        column = ctx.make_node("Unsqueeze", [value, last_axis], op_name_scope=name).output[0]
        cuts = ctx.make_const(utils.make_name(f"{name}_boundaries"), boundaries).output[0]
        above = ctx.make_node("GreaterOrEqual", [column, cuts], op_name_scope=name).output[0]
        counts = ctx.make_node("Cast", [above], attr={"to": onnx.TensorProto.INT64}, op_name_scope=name).output[0]
        total = ctx.make_node("ReduceSum", [counts, last_axis], attr={"keepdims": 0}, op_name_scope=name).output[0]
        ctx.make_node(
            "Cast",
            [total],
            attr={"to": onnx.TensorProto.INT32},
            outputs=outputs,
            name=name,
            shapes=[shape],
            dtypes=[onnx.TensorProto.INT32],
        )


def _input_signature(features: Mapping[str, np.ndarray]) -> dict[str, tf.TensorSpec]:
    """One ``[None]`` spec per feature: strings, int64 or float32, named after the feature."""
    signature = {}
    for name, values in features.items():
        array = np.asarray(values)
        if array.ndim != 1:
            raise ValueError(f"feature {name!r} must be a 1-D array of rows, got shape {array.shape}")
        if array.dtype.kind in "OUS":
            dtype = tf.string
        elif array.dtype.kind in "iub":
            dtype = tf.int64
        elif array.dtype.kind == "f":
            dtype = tf.float32
        else:
            raise ValueError(f"feature {name!r} has unsupported dtype {array.dtype}")
        signature[name] = tf.TensorSpec([None], dtype, name=name)
    return signature


def _cast_features(features: Mapping[str, np.ndarray], signature: Mapping[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    """Feature arrays in the dtypes of the signature (strings as numpy ``str``)."""
    missing = sorted(set(signature) - set(features))
    if missing:
        raise ValueError(f"features lack column(s) {missing}")
    cast = {}
    for name, spec in signature.items():
        values = np.asarray(features[name])
        cast[name] = values.astype(str) if spec.dtype == tf.string else values.astype(spec.dtype.as_numpy_dtype)
    return cast


def _cut_at(
    graph_def: tf.compat.v1.GraphDef, shapes: Mapping[str, tf.TensorShape], output_nodes: list[str]
) -> tf.compat.v1.GraphDef:
    """``graph_def`` with the node of every tensor in ``shapes`` (``"name:0"``) replaced by
    an int64 placeholder of the same name and shape, pruned to what ``output_nodes`` need."""
    cut = tf.compat.v1.GraphDef()
    cut.CopyFrom(graph_def)
    by_node = {tensor.split(":")[0]: shape for tensor, shape in shapes.items()}
    for node in cut.node:
        if node.name in by_node:
            node.op = "Placeholder"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tf.int64.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(by_node[node.name].as_proto())
    return tf.compat.v1.graph_util.extract_sub_graph(cut, output_nodes)


def _graph_function(
    graph_def: tf.compat.v1.GraphDef, inputs: list[str], outputs: list[str]
) -> Callable[..., list[tf.Tensor]]:
    """A TF function running ``graph_def`` from the ``inputs`` tensors to the ``outputs`` tensors."""

    def import_graph() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    graph = wrapped.graph
    return wrapped.prune(
        [graph.as_graph_element(name) for name in inputs], [graph.as_graph_element(name) for name in outputs]
    )


def _input_name(tensor_name: str) -> str:
    """An ONNX input name for a TF tensor: the op name without the ``:0`` output suffix."""
    return tensor_name.removesuffix(":0")


@dataclass
class OnnxRanker:
    """An ONNX export of a ranker, with what it needs to be fed.

    Attributes:
        model: The ONNX model (raw inputs and hashed inputs in, ``prediction [B]`` out).
        raw_inputs: Feature columns the ONNX graph reads as they are.
        hashed_inputs: ONNX inputs holding int64 hash buckets computed in TensorFlow.
        max_abs_difference: largest ``|ONNX - TensorFlow|`` on the rows the export was
            checked on.
    """

    model: onnx.ModelProto
    raw_inputs: tuple[str, ...]
    hashed_inputs: tuple[str, ...]
    _signature: dict[str, tf.TensorSpec] = field(repr=False)
    _hashing: Callable[..., list[tf.Tensor]] | None = field(repr=False)
    _hashing_inputs: tuple[str, ...] = field(repr=False)
    _session: onnxruntime.InferenceSession = field(init=False, repr=False)
    max_abs_difference: float = field(init=False, default=float("nan"))

    def __post_init__(self) -> None:
        self._session = onnxruntime.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])

    def onnx_inputs(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Map raw feature rows to the ONNX inputs.

        Args:
            features: Feature name -> ``[N]`` values, as the Keras model takes them
                (``features.feature_arrays``); extra columns are ignored.

        Returns:
            ONNX input name -> array: the raw columns in the export's dtypes, plus the
            hash buckets computed by the model's own TensorFlow hashing graph.
        """
        cast = _cast_features(features, self._signature)
        inputs = {name: cast[name] for name in self.raw_inputs}
        if self._hashing is not None:
            buckets = self._hashing(*[tf.constant(cast[name]) for name in self._hashing_inputs])
            inputs.update({name: tensor.numpy() for name, tensor in zip(self.hashed_inputs, buckets, strict=True)})
        return inputs

    def predict(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions of the ONNX model for raw feature rows: ``[N]`` float32."""
        return self._session.run([OUTPUT_NAME], self.onnx_inputs(features))[0]

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the ONNX model to ``path`` (e.g. ``ranker.onnx``); returns the path."""
        path = os.fspath(path)
        onnx.save_model(self.model, path)
        return path


def export_onnx(
    model: keras.Model,
    features: Mapping[str, np.ndarray],
    *,
    opset: int = 17,
    tolerance: float = PARITY_TOLERANCE,
) -> OnnxRanker:
    """Convert a single-output ranker to ONNX and check it against TensorFlow.

    Args:
        model: A trained single-task ranker: dict of raw ``[B]`` feature tensors in,
            ``[B]`` predictions out (every zoo ranker except ESMM / MMoE).
        features: Some rows of model input (``features.feature_arrays`` output). Their
            names and dtypes (strings, integers -> int64, floats -> float32) define the
            ONNX inputs; the export is checked on them.
        opset: ONNX opset (>= 13).
        tolerance: Largest allowed ``|ONNX - TensorFlow|`` on ``features``.

    Returns:
        The ``OnnxRanker``.

    Raises:
        ValueError: if the model has several outputs, ``features`` is empty or
            malformed, the graph holds an op tf2onnx cannot convert, or the ONNX
            predictions differ from TensorFlow's by more than ``tolerance``.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    if getattr(model, "multitask", False):
        raise ValueError(f"{type(model).__name__} is multi-task; export_onnx handles single-output rankers")
    signature = _input_signature(features)
    cast = _cast_features(features, signature)
    if not signature or len(next(iter(cast.values()))) == 0:
        raise ValueError("export_onnx needs at least one row of features to trace and check the model")

    frozen = _freeze(model, signature)
    proto, raw_inputs = _convert(frozen, opset, model)
    hashed_inputs = tuple(_input_name(tensor) for tensor in frozen.hash_shapes)
    hashing, hashing_inputs = _hashing_function(frozen) if frozen.hash_shapes else (None, ())
    onnx.helper.set_model_props(
        proto,
        {METADATA_RAW_INPUTS: json.dumps(list(raw_inputs)), METADATA_HASHED_INPUTS: json.dumps(list(hashed_inputs))},
    )
    exported = OnnxRanker(proto, raw_inputs, hashed_inputs, signature, hashing, hashing_inputs)
    difference = float(np.max(np.abs(exported.predict(cast) - model(cast, training=False).numpy())))
    exported.max_abs_difference = difference
    if difference > tolerance:
        raise ValueError(f"ONNX predictions differ from TensorFlow's by up to {difference:.3g} (> {tolerance})")
    return exported


@dataclass(frozen=True)
class _FrozenGraph:
    """A ranker's call as a frozen TF graph.

    Attributes:
        graph_def: Variables folded into constants.
        tables: Lookup table contents by shared name (for tf2onnx's table handlers).
        features: Input tensor name -> feature name, in the graph's input order.
        output: The prediction tensor's name.
        hash_shapes: Output tensor of every ``HASH_OPS`` node -> its static shape.
    """

    graph_def: tf.compat.v1.GraphDef
    tables: dict
    features: dict[str, str]
    output: str
    hash_shapes: dict[str, tf.TensorShape]


def _freeze(model: keras.Model, signature: Mapping[str, tf.TensorSpec]) -> _FrozenGraph:
    concrete = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(signature)
    if not isinstance(concrete.structured_outputs, tf.Tensor):
        raise ValueError(f"export_onnx handles single-output rankers; {type(model).__name__} returns several outputs")
    # The concrete function's inputs follow tf.nest.flatten of the signature (sorted keys).
    names = [spec.name for spec in tf.nest.flatten(concrete.structured_input_signature)]
    inputs = [tensor.name for tensor in concrete.inputs[: len(names)]]
    output = concrete.outputs[0].name
    graph_def, tables = tf_loader.from_trackable(model, concrete, inputs, [output], False)
    inside_functions = sorted({n.op for f in graph_def.library.function for n in f.node_def if n.op in HASH_OPS})
    if inside_functions:
        raise ValueError(f"hash ops {inside_functions} sit inside graph functions; cannot split the graph at them")
    hash_shapes = {
        f"{node.name}:0": concrete.graph.get_tensor_by_name(f"{node.name}:0").shape
        for node in graph_def.node
        if node.op in HASH_OPS
    }
    return _FrozenGraph(graph_def, tables, dict(zip(inputs, names, strict=True)), output, hash_shapes)


def _node(tensor_name: str) -> str:
    return tensor_name.split(":")[0]


def _convert(frozen: _FrozenGraph, opset: int, model: keras.Model) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """The ONNX part: the frozen graph with every hash output made an int64 input.

    Returns:
        ``(ONNX model, the raw feature inputs it still reads)``.
    """
    graph_def = _cut_at(frozen.graph_def, frozen.hash_shapes, [_node(frozen.output)])
    kept = {node.name for node in graph_def.node}
    raw_tensors = [tensor for tensor in frozen.features if _node(tensor) in kept]
    renames = {tensor: frozen.features[tensor] for tensor in raw_tensors}
    renames.update({tensor: _input_name(tensor) for tensor in frozen.hash_shapes})
    renames[frozen.output] = OUTPUT_NAME
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")
        try:
            onnx_graph = tfonnx.process_tf_graph(
                tf_graph,
                continue_on_error=False,
                opset=opset,
                extra_opset=[
                    utils.make_opsetid(constants.AI_ONNX_ML_DOMAIN, ML_OPSET),
                    utils.make_opsetid(HANDLER_DOMAIN, 1),
                ],
                input_names=raw_tensors + list(frozen.hash_shapes),
                output_names=[frozen.output],
                initialized_tables=frozen.tables,
                tensors_to_rename=renames,
            )
        except Exception as error:  # tf2onnx raises plain Exceptions for unsupported ops
            raise ValueError(f"tf2onnx cannot convert {type(model).__name__}: {error}") from error
        proto = optimizer.optimize_graph(onnx_graph).make_model(f"{model.name} (reclake)")
    _drop_private_opsets(proto)
    return proto, tuple(frozen.features[tensor] for tensor in raw_tensors)


def _hashing_function(frozen: _FrozenGraph) -> tuple[Callable[..., list[tf.Tensor]], tuple[str, ...]]:
    """The TensorFlow part: raw features -> every hash output, pruned from the frozen graph.

    Returns:
        ``(function of the feature tensors, the feature names it takes in order)``.
    """
    upstream = tf.compat.v1.graph_util.extract_sub_graph(
        frozen.graph_def, [_node(tensor) for tensor in frozen.hash_shapes]
    )
    needed = {node.name for node in upstream.node}
    inputs = [tensor for tensor in frozen.features if _node(tensor) in needed]
    function = _graph_function(frozen.graph_def, inputs, list(frozen.hash_shapes))
    return function, tuple(frozen.features[tensor] for tensor in inputs)


def _drop_private_opsets(proto: onnx.ModelProto) -> None:
    """Remove the handler domain (no node uses it) and keep one import per domain (the highest version)."""
    versions: dict[str, int] = {}
    for opset in proto.opset_import:
        if opset.domain != HANDLER_DOMAIN:
            versions[opset.domain] = max(opset.version, versions.get(opset.domain, 0))
    del proto.opset_import[:]
    proto.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in versions.items())
