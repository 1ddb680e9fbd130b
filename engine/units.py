"""Temporary re-export while the tree moves to volmigrate.common (removed in this change)."""
from volmigrate.common.units import *  # noqa: F401,F403
from volmigrate.common.units import parse_size, parse_volume_size  # noqa: F401
