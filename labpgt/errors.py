"""The one exception type that the command line turns into a single line and exit status 2.

Raise :class:`UserError` for anything a person can fix (bad arguments, a malformed bench file,
a session file that is not a session, an unreachable instrument); let programming errors raise
as they are.
"""


class UserError(Exception):
    """Bad input a person can act on; the CLI prints ``labpgt: <message>`` and exits with ``exit_status`` (2, or
    a subclass's own: a storage fault's is 74)."""

    exit_status = 2
