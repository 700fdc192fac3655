"""What can go wrong with the outbox, as types a caller can catch."""


class OutboxError(Exception):
    """The outbox cannot do what was asked; the message names the file and the reason."""


class OutboxRecordError(OutboxError, ValueError):
    """A record that cannot be stored: not a dict, not JSON, a telemetry record without ``ts``…

    This is a programming error in the caller, raised at ``add`` time so it never
    reaches a commit (a record that is not strict JSON would also be refused by the
    central side and block the queue forever).
    """


class ForeignFile(OutboxError):
    """Something that is not an outbox stands where the outbox should be: it is refused, never touched."""
