"""volmigrate.engine: the embedding API (MigrationService) and what runs behind it."""

from volmigrate.engine.service import (  # noqa: F401
    ACCEPTED_MESSAGE,
    REJECTED_PREFIX,
    MigrationResponse,
    MigrationService,
)
