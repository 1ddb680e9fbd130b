"""volmigrate.flows: one module per migration case, each building a TaskFlow graph.

Flow factories are importable by module path and take only JSON-serializable
arguments, so TaskFlow can record them with the flow detail and another
process can rebuild the flow. Tasks reach the live services (database,
drivers, notifier) through :mod:`volmigrate.flows.runtime`, never through the
persisted store.
"""
