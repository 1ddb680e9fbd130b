"""What the data mover raises.

The data mover knows nothing of migrations or flows, so these are not flow
errors: the flows catch them where they call the data mover and raise their
own, keeping the text, which is written for administrators (it becomes a
failed migration's reason as it stands).
"""


class DataMoverError(Exception):
    """Moving or checking a volume's data could not be done; the message says why."""


class CopyFailed(DataMoverError):
    """The data could not be copied faithfully (a tool failed, an I/O error, a short source)."""


class CopyAborted(DataMoverError):
    """The caller's abort event stopped a copy or a verification; the message is its reason."""


class CopyParked(DataMoverError):
    """The caller asked the copy to stop for a restart: it made what it wrote durable
    (recorded through ``on_checkpoint``) and stopped, to be resumed from there."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the copy stopped at a durable checkpoint, byte {offset}, to be "
                         f"resumed")
        self.offset = offset
