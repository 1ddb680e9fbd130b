"""volmigrate.db: the data model of volumes and migrations, and the queries on it.

Knows nothing of flows, drivers or the engine; callers pass plain values in and
get plain dicts out, so nothing above holds an ORM object across threads.
"""
