"""The FerretDB patches of its SQLite metadata registry: FTS tables behind an index, and no write for an index already there.

The registry keeps each database's collections and indexes in a metadata table, under one lock for
every database: a ``createIndexes`` takes it, and every command's look-up of its collection waits.
Upstream's ``createIndexes`` rewrote the collection's metadata row even when every index it named
was already there, which each service asks at every start. That write is outside the queue of the
database's writers (crmctl/ferretdb_writes.py), so under other instances' bulk writes SQLite's busy
handler lost to them for its whole timeout (10 s) and answered "database is locked", with the
registry held meanwhile: FerretDB stalled for every client, and the starting instance failed (the
scale-out scenario of tests/reliability, once in a CI run). Now an index already there writes nothing.

A change that does write (a new collection or index, a drop, a rename) takes the database's write turn
(the writers' queue of crmctl/ferretdb_writes.py) before the registry's lock, always in that order, so
SQLite never busy-waits on it and no change commits between a write command's read and its write
(SQLite then refused the write: "database is locked (517)", four writers of one document beside two
makers of collections got ~20 a second). A write command that holds the turn commits first, as it does
every 500 writes. Every insert asks for its collection: one that exists is found under the shared lock,
without the exclusive one.
"""

from __future__ import annotations

from crmctl.ferretdb_writes import go_fragment as _go

_CREATE = "func (r *Registry) CollectionCreate(ctx context.Context, params *CollectionCreateParams) (bool, error) {\n"
_LOCK = "\tr.rw.Lock()\n\tdefer r.rw.Unlock()\n"


def _turn(db_name: str, failed: str) -> str:
    """Go: take the write turn of ``db_name`` (returning ``failed`` on an error) until the function returns."""
    return f"\tdone, err := r.crmWriteTurn(ctx, {db_name}) // crm patch\n\tif err != nil {{\n\t\treturn {failed}\n\t}}\n\tdefer done()\n\n"


# Applied with crmctl.ferretdb_patches' own (keyword arguments of its Patch), in this order.
REGISTRY_PATCHES: list[dict[str, str]] = [
    dict(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor="\t\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\t\t_ = r.indexesDrop(ctx, dbName, collectionName, created)\n\t\t\treturn lazyerrors.Error(err)\n\t\t}\n",
        replacement=(
            "\t\tvar err error\n\n"
            "\t\tif index.Name == CrmFTSIndex { // crm patch: see CrmFTSIndex\n"
            "\t\t\terr = crmFTS(ctx, db, c.TableName, false)\n\t\t} else {\n\t\t\t_, err = db.ExecContext(ctx, q)\n\t\t}\n\n"
            "\t\tif err != nil {\n\t\t\t_ = r.indexesDrop(ctx, dbName, collectionName, created)\n\t\t\treturn lazyerrors.Error(err)\n\t\t}\n"
        ),
        why="an ix_terms_fts index is an FTS5 table kept by triggers",
    ),
    dict(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor="\t\tq := fmt.Sprintf(\"DROP INDEX %q\", c.TableName+\"_\"+name)\n\t\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\t\treturn lazyerrors.Error(err)\n\t\t}\n",
        replacement=(
            "\t\tif name == CrmFTSIndex { // crm patch: see CrmFTSIndex\n"
            "\t\t\tif err := crmFTS(ctx, db, c.TableName, true); err != nil {\n\t\t\t\treturn lazyerrors.Error(err)\n\t\t\t}\n"
            "\t\t} else {\n"
            "\t\t\tq := fmt.Sprintf(\"DROP INDEX %q\", c.TableName+\"_\"+name)\n\t\t\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\t\t\treturn lazyerrors.Error(err)\n\t\t\t}\n"
            "\t\t}\n"
        ),
        why="dropping an ix_terms_fts index drops its FTS table and triggers",
    ),
    dict(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor="\tq = fmt.Sprintf(\"DROP TABLE %q\", c.TableName)\n\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\treturn false, lazyerrors.Error(err)\n\t}\n",
        replacement=(
            "\tq = fmt.Sprintf(\"DROP TABLE %q\", c.TableName)\n\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\treturn false, lazyerrors.Error(err)\n\t}\n\n"
            "\tif err := crmFTS(ctx, db, c.TableName, true); err != nil { // crm patch: the collection's FTS table, if any\n"
            "\t\treturn false, lazyerrors.Error(err)\n\t}\n"
        ),
        why="a dropped collection leaves no FTS table behind",
    ),
    dict(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor="// IndexesCreate creates indexes in the collection.\n",
        replacement=_go("fts") + "// IndexesCreate creates indexes in the collection.\n",
        why="the FTS table behind an ix_terms_fts index",
    ),
    dict(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor=(
            "\tq := fmt.Sprintf(\"UPDATE %q SET settings = ? WHERE table_name = ?\", metadataTableName)\n"
            "\tif _, err := db.ExecContext(ctx, q, c.Settings, c.TableName); err != nil {\n"
            "\t\t_ = r.indexesDrop(ctx, dbName, collectionName, created)\n"
        ),
        replacement=(
            "\tif len(created) == 0 { // crm patch: every index was there, nothing to write (see crmctl/ferretdb_registry.py)\n"
            "\t\treturn nil\n\t}\n\n"
            "\tq := fmt.Sprintf(\"UPDATE %q SET settings = ? WHERE table_name = ?\", metadataTableName)\n"
            "\tif _, err := db.ExecContext(ctx, q, c.Settings, c.TableName); err != nil {\n"
            "\t\t_ = r.indexesDrop(ctx, dbName, collectionName, created)\n"
        ),
        why="createIndexes of indexes already there rewrote the metadata outside the writers' queue",
    ),
    dict(
        path="internal/util/fsql/db.go",
        anchor="// InTransaction wraps the given function f in a transaction.\n",
        replacement=(
            "// CrmWriteTurn is a crm patch: the write lock for statements that write outside a transaction (the\n"
            "// registry's changes of collections and indexes); the returned func gives it back.\n"
            "func (db *DB) CrmWriteTurn() func() {\n\tdb.writeMu.Lock()\n\n\treturn db.writeMu.Unlock\n}\n\n"
            "// InTransaction wraps the given function f in a transaction.\n"
        ),
        why="the write lock for the registry's changes",
    ),
    dict(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor=_CREATE + _LOCK,
        replacement=(
            _go("registry_turn") + _CREATE
            + "\tif r.CollectionGet(ctx, params.DBName, params.Name) != nil { // crm patch: asked by every insert\n"
            + "\t\treturn false, nil\n\t}\n\n"
            + _turn("params.DBName", "false, err") + _LOCK
        ),
        why="a collection that exists needs no exclusive lock; one made takes the write turn first",
    ),
    *(
        dict(path="internal/backends/sqlite/metadata/registry.go", anchor=head + _LOCK,
             replacement=head + _turn("dbName", failed) + _LOCK, why="a change takes the database's write turn before the registry's lock")
        for head, failed in (
            ("func (r *Registry) CollectionDrop(ctx context.Context, dbName, collectionName string) (bool, error) {\n", "false, err"),
            ("func (r *Registry) IndexesCreate(ctx context.Context, dbName, collectionName string, indexes []IndexInfo) error {\n", "err"),
            ("func (r *Registry) IndexesDrop(ctx context.Context, dbName, collectionName string, indexNames []string) error {\n", "err"),
            ("\t\treturn false, nil\n\t}\n\n", "false, err"),  # CollectionRename, after its database check
        )
    ),
]
