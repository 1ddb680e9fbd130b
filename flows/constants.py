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

# Migration cases (the `case` column of a migration row), named for how the
# data moves: copied by this host between two local paths (files or block
# devices: the kernel copy, or dd), copied by this host through file-like
# objects, or moved by the backend itself.
CASE_HOST_COPY_PATHS = "host-copy-paths"
CASE_HOST_COPY_FILE_IO = "host-copy-file-io"
CASE_DRIVER_ASSISTED = "driver-assisted"
# Names used before schema revision 0004 rewrote the rows; flow details
# persisted under them still carry them in their factory arguments.
OLD_CASE_NAMES = {"generic-dd": CASE_HOST_COPY_PATHS,
                  "generic-file-io": CASE_HOST_COPY_FILE_IO}
