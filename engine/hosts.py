"""Temporary re-export while the tree moves to volmigrate.common (removed in this change)."""
from volmigrate.common.hosts import *  # noqa: F401,F403
from volmigrate.common.hosts import Host, parse_host  # noqa: F401
