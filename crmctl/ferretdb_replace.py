"""The FerretDB patch that writes a guarded replacement without reading the document first.

The services store a changed document by replacing it under a guard: ``ReplaceOne({_id, version}, doc)``
(a lead, a deal, qualification's copy of a lead), so that a concurrent writer is detected. Upstream's update
handler read and decoded the stored document, filtered it in Go, compared it with the replacement and then
wrote it: in a Go profile of 10,000 replaces of lead documents the read and decode were 18% of FerretDB's
CPU. Now a replacement whose filter names a string ``_id`` and plain top-level fields equal to strings,
integers or booleans is one UPDATE whose WHERE is that guard, and whose row must not be the new document already
(``crmctl/ferretdb_go/replace.go.txt``, ``replace_sqlite.go.txt``). A written row matched and changed, as
MongoDB counts it; a row the UPDATE leaves (no match, a replacement equal to the document, a match only
MongoDB's rules see, such as an array holding the value) goes the full way, which answers as before, so no
reply changes. ``tests/integration/test_ferretdb_update_fast_paths.py`` holds each case to MongoDB's answer.
"""

from __future__ import annotations

from crmctl.ferretdb_writes import go_fragment as _go

# Applied after every other FerretDB patch, on the text they left: keyword arguments of ferretdb_patches.Patch.
REPLACE_PATCHES: list[dict[str, str]] = [
    dict(
        path="internal/backends/collection.go",
        anchor="type UpdateAllParams struct {\n\tDocs []*types.Document\n}\n",
        replacement=(
            "type UpdateAllParams struct {\n\tDocs []*types.Document\n\n"
            "\t// crm patch: when set, each document is written only where its row matches this filter (a string _id\n"
            "\t// and plain fields equal to strings, integers or booleans) and is not that document already; Updated\n"
            "\t// counts the rows written (the handler's crmGuardedReplace, the SQLite backend's crmGuardedUpdate).\n"
            "\tCrmGuard *types.Document\n}\n"
        ),
        why="an update of the backend that carries its guard",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\t\t\tr, err := tx.CrmExec(ctx, q, string(b), arg) // crm patch: prepared once per transaction\n",
        replacement=(
            "\t\t\tstmt, args := q, []any{string(b), arg}\n"
            "\t\t\tif params.CrmGuard != nil { // crm patch: see crmGuardedUpdate\n"
            "\t\t\t\tstmt, args = crmGuardedUpdate(meta.TableName, params.CrmGuard, string(b))\n"
            "\t\t\t}\n\n"
            "\t\t\tr, err := tx.CrmExec(ctx, stmt, args...) // crm patch: prepared once per transaction\n"
        ),
        why="the guard in the UPDATE's WHERE",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="// UpdateAll implements backends.Collection interface.\n",
        replacement=_go("replace_sqlite") + "// UpdateAll implements backends.Collection interface.\n",
        why="the guarded UPDATE",
    ),
    dict(
        path="internal/backends/decorators/oplog/collection.go",
        anchor=(
            "\tres, err := c.origC.UpdateAll(ctx, params)\n\tif err != nil {\n\t\treturn nil, err\n\t}\n\n"
            "\tif oplogC := c.oplogCollection(ctx); oplogC != nil {\n"
        ),
        replacement=(
            "\tres, err := c.origC.UpdateAll(ctx, params)\n\tif err != nil {\n\t\treturn nil, err\n\t}\n\n"
            "\t// crm patch: a guarded update that wrote nothing has nothing to log\n"
            "\tif oplogC := c.oplogCollection(ctx); oplogC != nil && (params.CrmGuard == nil || res.Updated > 0) {\n"
        ),
        why="the oplog records only what a guarded update wrote",
    ),
    dict(
        path="internal/handler/msg_update.go",
        anchor=(
            "func (h *Handler) crmUpdateOne(ctx context.Context, c backends.Collection, u *common.Update) "
            "(*common.UpdateResult, error) {\n"
        ),
        replacement=(
            "func (h *Handler) crmUpdateOne(ctx context.Context, c backends.Collection, u *common.Update) "
            "(*common.UpdateResult, error) {\n"
            "\tif crmGuardable(u) { // crm patch: see crmGuardedReplace\n"
            "\t\tif res, err := h.crmGuardedReplace(ctx, c, u); res != nil || err != nil {\n"
            "\t\t\treturn res, err\n\t\t}\n\t}\n\n"
        ),
        why="a guarded replacement tries the one-UPDATE way first",
    ),
    dict(
        path="internal/handler/msg_update.go",
        anchor="// crmWriteError is a crm patch: the write error of the statement at index that failed with err, or nil\n",
        replacement=(
            _go("replace")
            + "// crmWriteError is a crm patch: the write error of the statement at index that failed with err, or nil\n"
        ),
        why="the guarded replacement",
    ),
]
