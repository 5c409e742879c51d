"""Errors whose message is meant for the user (the CLI prints them as one line)."""


class MontageError(Exception):
    """Bad input, a missing or corrupt library, an unwritable output."""
