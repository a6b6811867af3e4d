"""User-facing errors: the CLI prints their message (what and where) instead of a traceback."""


class KefuError(Exception):
    """A problem the user can fix: bad config, bad data, missing model. The message says what and where."""
