"""volmigrate.api: the Block Storage (Cinder v3) compatible API of `volmigrate serve`."""
