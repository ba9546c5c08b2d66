"""Bounds on run inputs that a user can set, with the reason for each.

Kept free of heavy imports so the CLI can check its options against them before TensorFlow or a
model is loaded; :func:`sagesnet_tf.simulate.simulate` checks the same bounds for Python callers.
"""

from __future__ import annotations

#: Most model steps in one run: the exported signatures count steps in an ``int32`` (more would
#: wrap around to a different, often huge, step count).
MAX_STEPS = 2**31 - 1
#: Largest |engineering strain rate|, 1/ps.
MAX_STRAIN_RATE_PER_PS = 1.0
STRAIN_RATE_LIMIT_WHY = ("faster stretching outruns the atoms: the box would grow by more than 0.2 % per 2-fs "
                         "model step, 100× the fastest MD tension rates")
