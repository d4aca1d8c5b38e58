"""What says a fault is a full disk: the trainer child and the worker judge it alike.

TensorFlow reports a write that failed with ENOSPC ("No space left on device") as a
ResourceExhaustedError, the class it also uses for an allocator out of memory: a full disk is
told apart by its errno or its words, anywhere in the chain of causes.
"""

from __future__ import annotations

import errno

#: The C library's words for ENOSPC, as they appear in TensorFlow's and Python's messages.
NO_SPACE = "No space left on device"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if NO_SPACE in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
