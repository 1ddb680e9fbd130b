"""volmigrate.cli: the `volmigrate` command line."""
