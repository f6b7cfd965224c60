"""Errors a user can fix. The CLI prints their message and exits non-zero, without a traceback."""


class NaspruneError(Exception):
    """Bad input or an impossible request: an unknown name, a missing file, a config outside the space."""
