"""The film pipeline's user-facing error: printed by the CLI as one line."""


class FilmError(Exception):
    """A problem with the script, the cast or the request that the user can fix."""
