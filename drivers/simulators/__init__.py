"""Simulators of storage hardware volmigrate cannot have where it is built (not real arrays)."""
