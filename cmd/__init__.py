"""volmigrate.cmd: the `volmigrate` command line."""
