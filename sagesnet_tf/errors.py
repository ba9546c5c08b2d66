"""The one exception type a user sees.

Every error a user can cause (bad input file, impossible option, LAMMPS failure, corrupt shard)
is raised as :class:`SagesnetError` with a one-line message that says what is wrong and how to
fix it. The CLI prints it as a single line and exits with status 2; ``--debug`` adds the
traceback.
"""


class SagesnetError(Exception):
    """A user-facing error: ``str(err)`` is one line saying what is wrong and how to fix it."""
