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

Then the pushdown: upstream hands SQLite a WHERE clause only for a filter that is exactly
``{_id: value}``; ``{_id, version}``, ``{lead_id, status}`` or ``_id $in`` read and decoded every
document in Go (200 ms at 10,000 documents, against 1.5 ms from the index). The backend may return
more documents than match, since the handler filters them all again, so the patch pushes down each
condition as a superset: ``_id`` equality or ``$in`` (an ``_id`` is never an array) and, for plain
top-level fields, string equality or ``$in`` OR any array (MongoDB also matches an array that
holds the value). Both are ranges of the field's index (EXPLAIN: ``MULTI-INDEX OR``).

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


# Go added to the SQLite backend's collection.go (see the pushdown patches below).
GO_PUSHDOWN = r'''// crmPushdown is a crm patch: filter pushdown beyond a lone _id. The handler filters every document
// the backend returns again, so a pushed condition only has to keep every document that may match:
//   - `_id: <string|ObjectID>` or `_id: {$in: [...]}` anywhere in the filter: _id = ? / IN (...)
//     (an _id is never an array);
//   - a plain top-level field equal to a string, or `$in` strings: the field's value IN (...), or any
//     array (MongoDB matches an array that contains the value); both are ranges of the field's index.
//
// Upstream pushed `_id` down only when it was the whole filter, so every other query, `{_id, version}`
// included, read and decoded the whole collection.
func crmPushdown(filter *types.Document) (string, []any) {
	if filter == nil {
		return "", nil
	}

	var conds []string
	var args []any

	for _, key := range filter.Keys() {
		if !crmPlainField(key) {
			continue
		}

		values := crmScalars(must.NotFail(filter.Get(key)))
		if len(values) == 0 {
			continue
		}

		col := metadata.DefaultColumn + "->'" + key + "'"
		cond := fmt.Sprintf("%s IN (%s)", col, strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", "))

		if key != "_id" {
			cond = fmt.Sprintf(`(%s OR (%s >= '[' AND %s < '\'))`, cond, col, col)
		}

		conds = append(conds, cond)

		for _, v := range values {
			args = append(args, string(must.NotFail(sjson.MarshalSingleValue(v))))
		}
	}

	if len(conds) == 0 {
		return "", nil
	}

	return " WHERE " + strings.Join(conds, " AND "), args
}

// crmPlainField is a crm patch: a top-level field name safe to spell in SQL (no operator, path or quote).
func crmPlainField(key string) bool {
	if key == "" {
		return false
	}

	for i, r := range key {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}

	return true
}

// crmScalars is a crm patch: the strings (or ObjectIDs) a filter value matches by equality, or nil.
func crmScalars(v any) []any {
	switch v := v.(type) {
	case string, types.ObjectID:
		return []any{v}
	case *types.Document:
		if v.Len() != 1 {
			return nil
		}

		in, err := v.Get("$in")
		if err != nil {
			return nil
		}

		arr, ok := in.(*types.Array)
		if !ok || arr.Len() == 0 || arr.Len() > 500 {
			return nil
		}

		values := make([]any, 0, arr.Len())

		for i := 0; i < arr.Len(); i++ {
			switch e := must.NotFail(arr.Get(i)).(type) {
			case string, types.ObjectID:
				values = append(values, e)
			default:
				return nil
			}
		}

		return values
	}

	return nil
}

'''


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
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor='\t// that logic should exist in one place\n\t// TODO https://github.com/FerretDB/FerretDB/issues/3235\n\tif params.Filter.Len() == 1 {\n\t\tv, _ := params.Filter.Get("_id")\n\t\tswitch v.(type) {\n\t\tcase string, types.ObjectID:\n\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n\t\t}\n\t}\n',
        replacement="\twhereClause, args = crmPushdown(params.Filter) // crm patch: see crmPushdown\n",
        why="a query pushes its filter down only when the filter is a lone _id; all others scan the collection",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor='\t// that logic should exist in one place\n\t// TODO https://github.com/FerretDB/FerretDB/issues/3235\n\tif params.Filter.Len() == 1 {\n\t\tv, _ := params.Filter.Get("_id")\n\t\tswitch v.(type) {\n\t\tcase string, types.ObjectID:\n\t\t\tfilterPushdown = true\n\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n\t\t}\n\t}\n',
        replacement=(
            "\twhereClause, args = crmPushdown(params.Filter) // crm patch: see crmPushdown\n"
            "\tfilterPushdown = whereClause != \"\"\n"
        ),
        why="explain reports the same pushdown as the query",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor="// InsertAll implements backends.Collection interface.\n",
        replacement=GO_PUSHDOWN + "// InsertAll implements backends.Collection interface.\n",
        why="the pushdown of equality filters on _id and top-level string fields",
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
