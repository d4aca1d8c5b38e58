"""Who may call the API and what they may touch; keeping secrets out of logs and records.

Pure code without I/O of its own except reading the auth file: the API uses it to authenticate
tokens and check storage prefixes, every process to redact secrets from what it writes down.
"""

from service.security.errors import AuthFileError, SecurityError
from service.security.principal import Principal
from service.security.tokens import TokenTable, hash_token, new_token

__all__ = [
    "AuthFileError",
    "Principal",
    "SecurityError",
    "TokenTable",
    "hash_token",
    "new_token",
]
