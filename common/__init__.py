"""volmigrate.common: the vocabulary every layer speaks (host strings, sizes, volume references).

It sits below the drivers so that drivers, flows, the engine and the command
line can all import it; it imports nothing of volmigrate's own.
"""
