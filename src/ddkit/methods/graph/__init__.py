"""Graph condensation for node classification (issue 39): GCond and DosCond.

* :mod:`~ddkit.methods.graph.condense` -- ``gcond`` (gradient matching with a GCN trained on the
  condensed graph between matching steps) and ``doscond`` (one-step matching at random
  initialisations), both learning node features and an adjacency made from them.

The data they read (:class:`ddkit.data.graph.GraphNodes`), the GCN (:mod:`ddkit.models.graph`)
and the evaluation on the real graph (:mod:`ddkit.eval.graph`) live in their layers.
"""
