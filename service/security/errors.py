"""Errors of the security package."""


class SecurityError(Exception):
    """Base class for every error of this package."""


class AuthFileError(SecurityError):
    """The auth file (``FINETUNE_AUTH_FILE``) is missing, unreadable or malformed.

    The message names the file and what to change; the service refuses to start with it.
    """


class InvalidPrefix(SecurityError, ValueError):
    """A storage prefix that cannot safely bound access (bad URI, ``..``, a query...)."""
