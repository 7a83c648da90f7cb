"""Why a whole file cannot be imported: the one error that the readers, the mapping and the worker share."""

from __future__ import annotations


class FileRejected(Exception):
    """The whole file cannot be imported; `code` is stable for machines, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
