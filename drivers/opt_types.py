"""oslo.config types for values that oslo's own types would let through.

They sit here, in the lowest package that has options, so that the engine's
options and the drivers' share them (drivers import nothing above them).
A value they refuse makes the option's read raise ValueError, which the
engine turns into one line naming the section, the option and the value.
"""

from __future__ import annotations

import math
import os

from oslo_config import cfg, types


class FiniteFloat(types.Float):
    """A float within [min, max] that is a number.

    oslo's range check compares the value with min and max, and NaN compares
    false with everything, so ``nan`` passes any bounds: an interval of NaN
    made the progress monitor busy-loop. Infinities are beyond any max.
    """

    def __init__(self, min: float, max: float) -> None:
        super().__init__(min=min, max=max)

    def __call__(self, value) -> float | None:
        number = super().__call__(value)
        if number is not None and math.isnan(number):
            raise ValueError("not a number")
        return number


class FiniteFloatOpt(cfg.Opt):
    """A float option whose bounds are required and whose value must be a number."""

    def __init__(self, name: str, min: float, max: float, **kwargs) -> None:
        super().__init__(name, type=FiniteFloat(min=min, max=max), **kwargs)


class AbsolutePath(types.String):
    """A file system path that must be absolute (or empty: not set).

    A relative path would be resolved against whatever directory volmigrate
    happens to run from, so one volume's file would be looked for in a
    different place by each command: refused rather than guessed.
    """

    def __init__(self) -> None:
        super().__init__(type_name="absolute path")

    def __call__(self, value) -> str:
        path = super().__call__(value)
        if path and not os.path.isabs(path):
            raise ValueError("a relative path, which would depend on the directory "
                             "volmigrate runs in; give an absolute one")
        return path


class PathOpt(cfg.Opt):
    """An option naming a file or directory, as an absolute path."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, type=AbsolutePath(), **kwargs)
