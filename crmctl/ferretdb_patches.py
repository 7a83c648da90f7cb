"""Small fixes applied to FerretDB 1.24.2 at build time, from a patched copy of the module.

FerretDB's SQLite backend keeps at most 100 connections per database. Its update handler holds each
statement's read cursor (one connection) open until the whole command returns, and takes a second
connection for the write. So one update command of about 100 statements (a bulk write), or about 100
single updates at once from all clients together, leaves every connection held by a reader that waits
for a writer's connection: the server stops answering every client, for good, and only a restart
frees it. Found by the reliability suite (tests/reliability); the goroutine dump shows the writers
parked in ``database/sql.(*DB).conn`` under ``sqlite.(*collection).UpdateAll``.

The worst one: FerretDB queries ``_id`` as ``->'$._id'`` but indexes it as ``->"_id"``, and SQLite
uses an expression index only for the very expression it was built on, so every find, update and
delete by ``_id`` scanned the whole collection (EXPLAIN QUERY PLAN: ``SCAN``; 9 ms per replace at
5,000 documents, growing with the collection). The patch spells the query like the index.

The connection fixes do what the delete handler of the same version already does ("close read transaction
before starting write transaction"):

- a single-document update closes its read cursor once it has the document, before the write;
- a multi-statement update closes each statement's cursor when that statement is done;
- write transactions of one database queue on a Go mutex instead of SQLite's busy handler, which
  sleeps up to 100 ms per try: three services writing bulks at once fell to ~75 documents a second
  and their requests timed out (30 s); the infrastructure note also upgrades modernc.org/sqlite.

The module cache is never changed: the build copies the module into the build folder, patches the
copy, and builds with a go.mod of its own that points FerretDB at the copy. A patch whose anchor text is not found once stops the build
with the file named, so an upgrade of FerretDB cannot silently drop a fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Patch:
    path: str  # inside the FerretDB module
    anchor: str  # text found exactly once
    replacement: str
    why: str


PATCHES = [
    Patch(
        path="internal/backends/sqlite/metadata/metadata.go",
        anchor="\tIDColumn = DefaultColumn + \"->'$._id'\"\n",
        replacement=(
            "\t// crm patch: the same expression as the _id index (`->\"_id\"`), so SQLite uses that index;\n"
            "\t// `->'$._id'` has the same value but SQLite only matches an index expression as written,\n"
            "\t// so every lookup, update and delete by _id scanned the whole table.\n"
            "\tIDColumn = DefaultColumn + \"->'_id'\"\n"
        ),
        why="lookups by _id scan the table because the query and the index spell the path differently",
    ),
    Patch(
        path="internal/handler/common/update.go",
        anchor="\t\tif !param.HasUpdateOperators {\n",
        replacement=(
            "\t\tif !param.Multi {\n"
            "\t\t\titer.Close() // crm patch: a one-document update frees its read connection before the write\n"
            "\t\t}\n\n"
            "\t\tif !param.HasUpdateOperators {\n"
        ),
        why="single-document updates and findAndModify hold a read connection while waiting for a write one",
    ),
    Patch(
        path="internal/util/fsql/db.go",
        anchor='\t"log/slog"\n\t"time"\n',
        replacement='\t"log/slog"\n\t"sync"\n\t"time"\n',
        why="import sync for the write lock below",
    ),
    Patch(
        path="internal/util/fsql/db.go",
        anchor="\tBatchSize int\n}\n",
        replacement="\tBatchSize int\n\n\twriteMu sync.Mutex // crm patch: one write transaction at a time per database\n}\n",
        why="a per-database lock for write transactions",
    ),
    Patch(
        path="internal/util/fsql/db.go",
        anchor="\tvar sqlTx *sql.Tx\n\n\tif sqlTx, err = db.sqlDB.BeginTx(ctx, nil); err != nil {\n",
        replacement=(
            "\tvar sqlTx *sql.Tx\n\n"
            "\t// crm patch: SQLite admits one writer per database; the others spin in its busy handler,\n"
            "\t// sleeping up to 100 ms a try, and three concurrent bulk writers fall to tens of documents\n"
            "\t// a second. Queue them here instead (the backend's transactions are all writes).\n"
            "\tdb.writeMu.Lock()\n"
            "\tdefer db.writeMu.Unlock()\n\n"
            "\tif sqlTx, err = db.sqlDB.BeginTx(ctx, nil); err != nil {\n"
        ),
        why="concurrent write transactions collapse in SQLite's busy handler",
    ),
    Patch(
        path="internal/handler/msg_update.go",
        anchor='\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n',
        replacement=(
            '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'
            "\t\tcloser.Close() // crm patch: free this statement's read connection before the next statement\n"
        ),
        why="an update command keeps one read connection per statement until the whole command ends",
    ),
]


class PatchError(RuntimeError):
    pass


def fingerprint() -> str:
    """Changes when a patch changes, so the binary is rebuilt."""
    text = json.dumps([p.__dict__ for p in PATCHES], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def patched_module(module_dir: Path, build_dir: Path) -> Path:
    """A patched copy of the FerretDB module in ``build_dir``; return its folder."""
    import shutil
    import stat

    target = build_dir / "FerretDB"
    if target.exists():
        shutil.rmtree(target, onerror=lambda f, p, e: (Path(p).chmod(stat.S_IWUSR | stat.S_IRUSR), f(p)))
    shutil.copytree(module_dir, target, ignore=shutil.ignore_patterns("*_test.go", "testdata", "website", "build/deps"))
    for path in target.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    texts: dict[str, str] = {}
    for patch in PATCHES:
        text = texts.get(patch.path) or (target / patch.path).read_text()
        if text.count(patch.anchor) != 1:
            raise PatchError(
                f"cannot patch {module_dir / patch.path}: the anchor for '{patch.why}' is found "
                f"{text.count(patch.anchor)} times instead of once (was FerretDB upgraded?)"
            )
        texts[patch.path] = text.replace(patch.anchor, patch.replacement)
    for path, text in texts.items():
        (target / path).write_text(text)
    return target


def build_modfile(source: Path, module_copy: Path, build_dir: Path) -> Path:
    """The wrapper's go.mod (and go.sum) with FerretDB replaced by the patched copy."""
    modfile = build_dir / "go.mod"
    modfile.write_text((source / "go.mod").read_text() + f"\nreplace github.com/FerretDB/FerretDB => {module_copy}\n")
    (build_dir / "go.sum").write_text((source / "go.sum").read_text())
    return modfile
