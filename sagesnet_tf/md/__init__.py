"""Molecular dynamics with LAMMPS/AIREBO: the data source SAGESnet learns from.

- :mod:`~sagesnet_tf.md.engine`: one LAMMPS process built from an Atoms (box, atoms, AIREBO).
- :mod:`~sagesnet_tf.md.protocols`: ``nvt``, ``nve``, ``npt`` and ``tension`` as LAMMPS phases.
- :mod:`~sagesnet_tf.md.recorder`: frames and thermo rows captured from inside a run.
- :mod:`~sagesnet_tf.md.run`: :func:`run_md` ties them together and writes the outputs.

See docs/MD_PROTOCOLS.md. Importing this package does not load LAMMPS; running does.
"""

from sagesnet_tf.md.protocols import NPT, NVE, NVT, PROTOCOLS, Tension, make_protocol
from sagesnet_tf.md.run import MDResult, run_md, write_md_outputs

__all__ = ["MDResult", "NPT", "NVE", "NVT", "PROTOCOLS", "Tension", "make_protocol", "run_md",
           "write_md_outputs"]
