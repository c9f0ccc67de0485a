"""``--method auto`` (issue 87): choose the method and its settings for a dataset, an IPC and a
time budget by a tournament on a validation split carved from the training split, then spend
the rest of the budget on the winner.

One job per module: :mod:`~ddkit.methods.auto.candidates` (what may compete on the data),
:mod:`~ddkit.methods.auto.validation` (the validation split), :mod:`~ddkit.methods.auto.tournament`
(successive halving on validation accuracy under a cost model), :mod:`~ddkit.methods.auto.runner`
(distilling and scoring a candidate), :mod:`~ddkit.methods.auto.record` (the decision record and
its table) and :mod:`~ddkit.methods.auto.resolve` (what a run calls). ``auto`` is a name a run
resolves, as ``recommended`` is, not a registered method: the set it writes is the winner's.
"""

from ddkit.methods.auto.resolve import AUTO, AutoChoice, AutoRequest, choose, plan

__all__ = ["AUTO", "AutoChoice", "AutoRequest", "choose", "plan"]
