"""Names of the values migration flows keep in the TaskFlow store."""

# Injected when the flow is created.
MIGRATION_ID = "migration_id"
VOLUME_ID = "volume_id"
SOURCE_HOST = "source_host"
DEST_HOST = "dest_host"
VOLUME_SIZE = "volume_size"

# Provided by tasks.
DEST_VOLUME_ID = "dest_volume_id"
SOURCE_CONNECTION = "source_connection"
DEST_CONNECTION = "dest_connection"
BYTES_WRITTEN = "bytes_written"

# Migration cases (the `case` column of a migration row).
CASE_GENERIC_DD = "generic-dd"
CASE_GENERIC_FILE_IO = "generic-file-io"
CASE_DRIVER_ASSISTED = "driver-assisted"
