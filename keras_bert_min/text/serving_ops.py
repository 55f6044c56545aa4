"""Which ops a serving graph may use: core TensorFlow ops and the TF Text ops that stock TF
Serving links in (`SERVING_SAFE_TF_TEXT_OPS`); `unservable_ops` lists the others of a graph.

Every exported SavedModel is checked with it (`export.unservable_saved_model_ops`), and the
tests trace every text pipeline of the package through it.
"""

import tensorflow as tf

# The tensorflow-text ops that stock TF Serving links in. Every other op of a serving graph
# must be a core TensorFlow op (see `unservable_ops`).
SERVING_SAFE_TF_TEXT_OPS = frozenset({
    "WordpieceTokenizeWithOffsets",       # WordpieceTokenizer, BertTokenizer
    "FastWordpieceTokenizeWithOffsets",   # FastWordpieceTokenizer
    "RegexSplitWithOffsets",              # regex_split, BertTokenizer's BasicTokenizer
    "NormalizeUTF8",                      # normalize_utf8
    "CaseFoldUTF8",                       # case_fold_utf8
})


def _as_graph_def(graph):
    if isinstance(graph, tf.compat.v1.GraphDef):
        return graph
    return getattr(graph, "graph", graph).as_graph_def()  # a ConcreteFunction has a .graph


def graph_op_types(graph):
    """Every op type in a graph, including the bodies of the functions in its library.

    Args:
        graph: a `GraphDef` (e.g. a SavedModel's `meta_graphs[0].graph_def`), a `tf.Graph`, or
            a `ConcreteFunction`.

    Returns:
        set of str.
    """
    graph_def = _as_graph_def(graph)
    op_types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        op_types.update(node.op for node in function.node_def)
    return op_types


def unservable_ops(graph):
    """The op types of `graph` that stock TF Serving may lack: an empty list means servable.

    An op is servable if it is a core TensorFlow op (one of `tf.raw_ops`, which tensorflow-text
    does not extend), one of `SERVING_SAFE_TF_TEXT_OPS`, or a call of a function of the graph's
    own library (whose body is checked too).

    Args:
        graph: as for `graph_op_types`.

    Returns:
        sorted list of str.

    Example:
    >>> fn = tf.function(preprocessor).get_concrete_function(tf.TensorSpec([None], tf.string))
    >>> unservable_ops(fn)
    []
    """
    graph_def = _as_graph_def(graph)
    own_functions = {function.signature.name for function in graph_def.library.function}
    return sorted(op for op in graph_op_types(graph_def)
                  if op not in SERVING_SAFE_TF_TEXT_OPS and op not in own_functions
                  and not hasattr(tf.raw_ops, op))
