"""Errors whose message is meant for the user (the CLI prints them as one line)."""


class JVideoError(Exception):
    """Bad input or a missing resource in the model side of jvideo."""
