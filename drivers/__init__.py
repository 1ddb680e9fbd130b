"""volmigrate.drivers: the driver interface and the backends.

Drivers know nothing of flows, the engine or the database: they receive plain
volume references and return plain, JSON-serializable dicts.
"""
