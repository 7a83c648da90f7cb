"""The FerretDB patches of its SQLite metadata registry: FTS tables behind an index, and no write for an index already there.

The registry keeps each database's collections and indexes in a metadata table, under one lock for
every database: a ``createIndexes`` takes it, and every command's look-up of its collection waits.
Upstream's ``createIndexes`` rewrote the collection's metadata row even when every index it named
was already there, which each service asks at every start. That write is outside the queue of the
database's writers (crmctl/ferretdb_writes.py), so under other instances' bulk writes SQLite's busy
handler lost to them for its whole timeout (10 s) and answered "database is locked", with the
registry held meanwhile: FerretDB stalled for every client, and the starting instance failed (the
scale-out scenario of tests/reliability, once in a CI run). Now an index already there writes nothing.
"""

from __future__ import annotations

from crmctl.ferretdb_writes import go_fragment as _go

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
]
