"""SAGESnet: a learned multiscale simulator for carbon nanostructures.

Units are LAMMPS ``metal`` throughout: Å, ps, Å/ps, eV, bar, K.
"""

__version__ = "0.1.0"
