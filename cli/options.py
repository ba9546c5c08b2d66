"""Click parameter types shared by the verbs: numbers that must be finite and inside a range.

``click.FloatRange`` accepts ``nan`` and ``inf`` (``float("nan")`` parses, and NaN compares false
against every bound), which then surface deep inside a run as a traceback or a misleading
"diverged" message. :class:`FiniteFloat` refuses them at parse time with one line naming the
option, the value, the allowed range and the unit.
"""

from __future__ import annotations

import math

import click


class FiniteFloat(click.ParamType):
    """A finite float, optionally bounded: ``FiniteFloat(min=0, min_open=True, unit="ps")`` is a
    positive time. ``why`` (optional) is appended to the out-of-range message to say where the
    bound comes from."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False, unit: str = "", why: str = ""):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open
        self.unit, self.why = unit, why

    def _range(self) -> str:
        lo = "" if self.min is None else f"{'>' if self.min_open else '>='} {self.min:g}"
        hi = "" if self.max is None else f"{'<' if self.max_open else '<='} {self.max:g}"
        return " and ".join(s for s in (lo, hi) if s) + (f" {self.unit}" if self.unit else "")

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number" + (f"; give one in {self.unit}" if self.unit else ""),
                          param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number; give a value {self._range() or 'that is finite'}",
                          param, ctx)
        below = self.min is not None and (number < self.min or (self.min_open and number == self.min))
        above = self.max is not None and (number > self.max or (self.max_open and number == self.max))
        if below or above:
            self.fail(f"{number:g}{' ' + self.unit if self.unit else ''} is out of range; it must be {self._range()}"
                      + (f" ({self.why})" if self.why else ""), param, ctx)
        return number


#: A positive time, ps.
POSITIVE_PS = FiniteFloat(min=0.0, min_open=True, unit="ps")
#: A thermodynamic temperature, K (absolute zero and up).
TEMPERATURE_K = FiniteFloat(min=0.0, unit="K", why="absolute zero is the lowest temperature")
#: A random seed of NumPy's generators: a non-negative integer (kept to 31 bits, which every
#: consumer of a seed takes).
SEED = click.IntRange(0, 2**31 - 1)
