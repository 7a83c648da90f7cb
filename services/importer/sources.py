"""Where an import's file may come from: named files inside the configured roots, uploads under server names."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from services.importer.errors import FileRejected

# Extensions an uploaded file keeps, so a person looking in the uploads folder sees what it is;
# everything else about the client's name stays out of the path.
_UPLOAD_SUFFIXES = frozenset({".csv", ".xlsx", ".txt", ".tsv"})


def display_name(file_uri: str) -> str:
    """The file's own name, for events and status: never the folder it sits in on the server."""
    text = file_uri.replace("\\", "/").rstrip("/")
    name = PurePosixPath(unquote(urlsplit(text).path) if "://" in text else text).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name if name not in ("", ".", "..") else "file"


def upload_path(uploads_dir: str | os.PathLike[str], client_name: str | None) -> Path:
    """A fresh server-chosen path for an upload: a random name, never anything the client sent."""
    suffix = Path(client_name or "").suffix.lower()
    return Path(uploads_dir).resolve() / f"{uuid.uuid4().hex}{suffix if suffix in _UPLOAD_SUFFIXES else ''}"


def _requested_path(file_uri: str, roots: Sequence[Path]) -> Path:
    if "\x00" in file_uri:
        raise FileRejected("file_not_allowed", "the file name holds a NUL character")
    if "://" in file_uri:
        parts = urlsplit(file_uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise FileRejected(
                "unsupported_uri", f"the importer reads local files (a path or file:// URI), not {parts.scheme}:// URIs"
            )
        return Path(unquote(parts.path))
    path = Path(file_uri)
    # A relative name is looked up in the first root, the importer's inbox.
    return path if path.is_absolute() else roots[0] / path


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def resolve_import_file(file_uri: str, roots: Sequence[str | os.PathLike[str]],
                        forbidden: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """The real path of a file named by ``crm.import.start``, once it is known to be one the importer may read.

    Symlinks and ``..`` are resolved before the check, so a link inside a root pointing out of it
    is refused like the path it points to. The reasons never quote the file or the server's folders.
    """
    real_roots = [Path(root).resolve() for root in roots]
    if not real_roots:
        raise FileRejected("file_not_allowed", "this importer reads no named files (IMPORTER_FILE_ROOTS is empty); upload the file")
    name = display_name(file_uri)
    real = _requested_path(file_uri, real_roots).resolve()
    blocked = [Path(folder).resolve() for folder in forbidden]
    if not any(_inside(real, root) for root in real_roots) or any(_inside(real, folder) for folder in blocked):
        raise FileRejected(
            "file_not_allowed",
            f"{name!r} is outside the folders this importer reads (IMPORTER_FILE_ROOTS); "
            "put the file in the importer's inbox or upload it",
        )
    return checked_regular_file(real, name)


def checked_regular_file(path: Path, name: str) -> Path:
    """``path`` if it is a regular file the process can read, else the specific reason it is not."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileRejected("file_not_found", f"the file {name!r} does not exist") from None
    except PermissionError:
        raise FileRejected("file_unreadable", f"the importer may not read {name!r}") from None
    except OSError as exc:
        raise FileRejected("file_unreadable", f"the file {name!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileRejected("not_a_file", f"{name!r} is not a regular file (a folder, device or pipe); name a CSV or XLSX file")
    if not os.access(path, os.R_OK):
        raise FileRejected("file_unreadable", f"the importer may not read {name!r}")
    return path
