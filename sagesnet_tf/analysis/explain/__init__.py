"""What the model learned: the sensitivity grid and the latent clusters of ``sagesnet-tf explain``.

- :mod:`~sagesnet_tf.analysis.explain.sensitivity`: per cell, how strongly the tensile stress a
  short rollout later depends on the cell's atoms now (a gradient through the learned step).
- :mod:`~sagesnet_tf.analysis.explain.clusters`: k-means over the encoder's cell latents, and the
  purity of the clusters against geometric labels.
- :mod:`~sagesnet_tf.analysis.explain.geometry`: the ground truth: kirigami cut corners in a frame
  and each atom's label (bulk, edge, cut-tip, broken).
- :mod:`~sagesnet_tf.analysis.explain.run`: the command's outputs (docs/EXPLAIN.md).
"""

from sagesnet_tf.analysis.explain.run import OUTPUT_FILES, explain

__all__ = ["OUTPUT_FILES", "explain"]
