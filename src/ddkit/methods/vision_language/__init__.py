"""Vision-language dataset distillation (issue 71): small sets of image-text pairs for training a
dual encoder by contrastive learning, judged by retrieval (:mod:`ddkit.eval.retrieval`).

* :mod:`~ddkit.methods.vision_language.base` -- what every paired method shares: the encoder
  options, the check that the data are pairs, the ``ipc`` of a paired run (pairs, not images per
  class);
* :mod:`~ddkit.methods.vision_language.mtt` -- ``vl-mtt``: bi-trajectory matching (Wu et al.,
  TMLR 2024) with LoRS's learned similarity as an option (Xu et al., ICML 2024);
* :mod:`~ddkit.methods.vision_language.coresets` -- ``vl-random`` and ``vl-herding``: real pairs.

The encoders live in :mod:`ddkit.models.text`; the set format and the evaluation in
:mod:`ddkit.eval.retrieval`.
"""
