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
//     array (MongoDB matches an array that contains the value); both are ranges of the field's index;
//   - an `ix_` field (see crmKeyConditions): exact equality, `$in`, string ranges and literal `$regex`;
//   - `$and` of any of these.
//
// The third result says whether the conditions select exactly the documents that match (every key
// pushed, none as a superset): only then may a LIMIT or a COUNT be applied in SQL.
//
// Upstream pushed `_id` down only when it was the whole filter, so every other query, `{_id, version}`
// included, read and decoded the whole collection.
func crmPushdown(filter *types.Document, fts string, ordered bool) (string, []any, bool) {
	conds, args, exact := crmConditions(filter, fts, ordered)
	if len(conds) == 0 {
		return "", nil, exact
	}

	return " WHERE " + strings.Join(conds, " AND "), args, exact
}

// crmConditions is a crm patch: the SQL conditions of a filter document (see crmPushdown); fts is the
// collection's FTS table (metadata.CrmFTSIndex), or empty; ordered says the rows are read in the order
// of an `ix_` field's index.
func crmConditions(filter *types.Document, fts string, ordered bool) ([]string, []any, bool) {
	if filter == nil {
		return nil, nil, true
	}

	var conds []string
	var args []any
	exact := true

	for _, key := range filter.Keys() {
		value := must.NotFail(filter.Get(key))

		if key == "$and" {
			arr, ok := value.(*types.Array)
			if !ok {
				exact = false
				continue
			}

			for i := 0; i < arr.Len(); i++ {
				sub, ok := must.NotFail(arr.Get(i)).(*types.Document)
				if !ok {
					exact = false
					continue
				}

				c, a, e := crmConditions(sub, fts, ordered)
				conds = append(conds, c...)
				args = append(args, a...)
				exact = exact && e
			}

			continue
		}

		if !crmPlainField(key) {
			exact = false
			continue
		}

		if strings.HasPrefix(key, "ix_") {
			c, a := crmKeyConditions(key, value, fts, ordered)
			if c == nil {
				exact = false
				continue
			}

			conds = append(conds, c...)
			args = append(args, a...)

			continue
		}

		values := crmScalars(value)
		if len(values) == 0 {
			exact = false
			continue
		}

		col := metadata.DefaultColumn + "->'" + key + "'"
		cond := fmt.Sprintf("%s IN (%s)", col, strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", "))

		if key != "_id" {
			cond = fmt.Sprintf(`(%s OR (%s >= '[' AND %s < '\'))`, cond, col, col)
			exact = false
		}

		conds = append(conds, cond)

		for _, v := range values {
			args = append(args, crmJSON(v))
		}
	}

	return conds, args, exact
}

// crmKeyConditions is a crm patch: exact SQL conditions on an `ix_` field, or nil.
//
// By convention (the services' repositories keep it) an `ix_` field is a string of characters JSON
// does not escape, never an array: so its JSON text orders like the string, equality, `$in` and the
// ranges `$gt $gte $lt $lte` on it are exact ranges of its index, and SQLite's order of the field is
// MongoDB's (the find handler then skips its in-memory sort, see crmSortable). A `$regex` without
// options whose pattern is a plain literal is a substring test (instr) on the field's value; on
// `ix_terms` with an FTS table, " <word>" (a word's start) is a prefix query of that table instead,
// which selects the same rows since `ix_terms` holds lower-case words between single spaces. When the
// rows are read in an index's order (a list page), `+rowid` keeps SQLite on that index and checks each
// row against the word's rows, so a common word finds its first page at once; otherwise (a count, a
// search without a sort) SQLite starts from the word's rows, so a rare word costs its few rows.
func crmKeyConditions(key string, value any, fts string, ordered bool) ([]string, []any) {
	col := metadata.DefaultColumn + "->'" + key + "'"

	switch v := value.(type) {
	case string:
		return []string{col + " = ?"}, []any{crmJSON(v)}
	case *types.Document:
		var conds []string
		var args []any

		for _, op := range v.Keys() {
			arg := must.NotFail(v.Get(op))

			switch op {
			case "$eq", "$gt", "$gte", "$lt", "$lte":
				s, ok := arg.(string)
				if !ok {
					return nil, nil
				}

				sqlOp := map[string]string{"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
				conds = append(conds, fmt.Sprintf("%s %s ?", col, sqlOp))
				args = append(args, crmJSON(s))
			case "$in":
				values := crmScalars(must.NotFail(types.NewDocument("$in", arg)))
				if len(values) == 0 {
					return nil, nil
				}

				conds = append(conds, fmt.Sprintf("%s IN (%s)", col, strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", ")))
				for _, s := range values {
					args = append(args, crmJSON(s))
				}
			case "$regex":
				s, ok := arg.(string)
				if !ok || s == "" || strings.ContainsAny(s, `\.+*?()|[]{}^$`) {
					return nil, nil
				}

				if word, ok := crmSearchWord(key, s, fts); ok {
					rowid := "rowid"
					if ordered {
						rowid = "+rowid"
					}

					conds = append(conds, fmt.Sprintf("%s IN (SELECT rowid FROM %q WHERE %q MATCH ?)", rowid, fts, fts))
					args = append(args, `"`+word+`"*`)

					continue
				}

				conds = append(conds, fmt.Sprintf("instr(%s->>'%s', ?) > 0", metadata.DefaultColumn, key))
				args = append(args, s)
			case "$options":
				if s, ok := arg.(string); !ok || s != "" {
					return nil, nil
				}
			default:
				return nil, nil
			}
		}

		if len(conds) == 0 {
			return nil, nil
		}

		return conds, args
	}

	return nil, nil
}

// crmSearchWord is a crm patch: the word a literal `$regex` " <word>" on `ix_terms` looks for, when the
// collection has an FTS table (see crmKeyConditions).
func crmSearchWord(key, pattern, fts string) (string, bool) {
	word, ok := strings.CutPrefix(pattern, " ")
	if !ok || key != "ix_terms" || fts == "" || word == "" || strings.ContainsAny(word, " \"") {
		return "", false
	}

	return word, true
}

// crmFewRows is a crm patch: below this many FTS rows a search word counts as rare (see crmFewMatches).
const crmFewRows = 1000

// crmFewMatches is a crm patch: whether a search word of the filter (a literal `$regex` " <word>" on
// `ix_terms`, at the top or in `$and`) has fewer than crmFewRows rows in the collection's FTS table.
//
// A list page read in an `ix_` field's order checks each row of the index range against the word's
// rows (`+rowid IN`, see crmKeyConditions) until the page is full: right for a common word, whose first
// page comes at once, but a rare one walks the whole range. Measured on 1,000,000 rows (SQLite 3.40,
// 51 rows a page): a word in 25 rows 119 ms walking against 0.4 ms read from its FTS rows and sorted,
// one in 203 rows 25 ms against 2.6 ms, one in 452,932 rows 90 ms walking against 3.3 s sorted. So a
// page reads a rare word's rows first (`rowid IN`, ORDER BY through a temporary B-tree) and walks the
// index otherwise; asking whether a word has crmFewRows rows costs 0.3-37 ms, least for rare words.
func crmFewMatches(ctx context.Context, db *fsql.DB, fts string, filter *types.Document) bool {
	if fts == "" || filter == nil {
		return false
	}

	for _, key := range filter.Keys() {
		value := must.NotFail(filter.Get(key))

		if arr, ok := value.(*types.Array); ok && key == "$and" {
			for i := 0; i < arr.Len(); i++ {
				if sub, ok := must.NotFail(arr.Get(i)).(*types.Document); ok && crmFewMatches(ctx, db, fts, sub) {
					return true
				}
			}

			continue
		}

		cond, ok := value.(*types.Document)
		if !ok {
			continue
		}

		pattern, _ := cond.Get("$regex")
		s, _ := pattern.(string)

		word, ok := crmSearchWord(key, s, fts)
		if !ok {
			continue
		}

		var n int64
		q := fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM %q WHERE %q MATCH ? LIMIT ?)`, fts, fts)

		if err := db.QueryRowContext(ctx, q, `"`+word+`"*`, crmFewRows).Scan(&n); err == nil && n < crmFewRows {
			return true
		}
	}

	return false
}

// crmSortAfterMatch is a crm patch: an ORDER BY on an `ix_` field spelled so that SQLite sorts the
// matching rows instead of reading the field's index in order (see crmFewMatches).
func crmSortAfterMatch(orderBy string) string {
	column, ok := strings.CutPrefix(orderBy, " ORDER BY ")
	if !ok {
		return orderBy
	}

	order := ""
	if c, ok := strings.CutSuffix(column, " DESC"); ok {
		column, order = c, " DESC"
	}

	return " ORDER BY +(" + column + ")" + order
}

// crmOrdered is a crm patch: the rows are read in the order of an `ix_` field (see crmOrderBy).
func crmOrdered(sort *types.Document) bool {
	return sort.Len() == 1 && sort.Keys()[0] != "$natural"
}

// crmFTSTable is a crm patch: the collection's FTS table (see metadata.CrmFTSIndex), or empty.
func crmFTSTable(meta *metadata.Collection) string {
	for _, index := range meta.Settings.Indexes {
		if index.Name == metadata.CrmFTSIndex {
			return meta.TableName + "_fts"
		}
	}

	return ""
}

// crmJSON is a crm patch: a value as the JSON text SQLite's `->` gives for it.
func crmJSON(v any) string {
	return string(must.NotFail(sjson.MarshalSingleValue(v)))
}

// crmOrderBy is a crm patch: ORDER BY one `ix_` field, spelled like its index so that SQLite reads the
// rows in the index's order instead of sorting them (see crmKeyConditions for why that order is right).
func crmOrderBy(sort *types.Document) string {
	key := sort.Keys()[0]

	order := ""
	if must.NotFail(sort.Get(key)).(int64) == -1 {
		order = " DESC"
	}

	return fmt.Sprintf(" ORDER BY %s->'%s'%s", metadata.DefaultColumn, key, order)
}

// crmCount is a crm patch: the number of rows matching an exact pushed-down filter, counted by SQLite
// (from the field's index) instead of decoding every document in Go.
func crmCount(ctx context.Context, db *fsql.DB, table, whereClause string, args []any, limit int64) (*backends.QueryResult, error) {
	q := fmt.Sprintf(`SELECT COUNT(*) FROM %q`, table) + whereClause
	if limit > 0 { // counting stops there: "are there more than N?"
		q = fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM %q%s LIMIT ?)`, table, whereClause)
		args = append(args, limit)
	}

	var n int64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return nil, lazyerrors.Error(err)
	}

	return &backends.QueryResult{Iter: newQueryIterator(ctx, nil, false), CrmCount: n, CrmCounted: true}, nil
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


# Go added to the handler's msg_find.go: which sorts the backend applies, and time-limit errors.
GO_SORTABLE = r'''
// crmSortable is a crm patch: a sort on one `ix_` field is done by the SQLite backend in the order of
// the field's index (see crmKeyConditions there), so the handler does not read every matching document
// to sort them in memory; with an exact filter the limit is pushed down too.
func crmSortable(sort *types.Document) bool {
	if sort.Len() != 1 {
		return false
	}

	key := sort.Keys()[0]
	if !strings.HasPrefix(key, "ix_") {
		return false
	}

	for _, r := range key {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}

	return true
}

// crmMaxTimeError is a crm patch: a command ended by its maxTimeMS is MaxTimeMSExpired, whatever error
// the backend gave for it (SQLite reports an interrupt rather than the context's error).
func crmMaxTimeError(ctx context.Context, err error, cmd string) error {
	if ctx.Err() != nil {
		return handlererrors.NewCommandErrorMsgWithArgument(
			handlererrors.ErrMaxTimeMSExpired,
			"Executor error during "+cmd+" command :: caused by :: operation exceeded time limit",
			cmd,
		)
	}

	return lazyerrors.Error(err)
}
'''


# Go added to the SQLite backend's metadata registry: the FTS table behind an `ix_terms_fts` index.
GO_FTS = r'''// CrmFTSIndex is a crm patch: an index of this name on a collection is a SQLite FTS5 table of the
// documents' `ix_terms` string (lower-case words between spaces), kept by triggers in the same
// transaction as every insert, update and delete, instead of an expression index. A `$regex` of
// " <word>" on `ix_terms` is then answered from it (a word prefix query) rather than by reading
// every row (the sqlite backend's crmKeyConditions): 1.2 s for a word absent from 100,000 leads.
const CrmFTSIndex = "ix_terms_fts"

// crmFTSStatements is a crm patch: the SQL that creates (or, drop, removes) the FTS table of a collection table.
func crmFTSStatements(table string, drop bool) []string {
	fts := table + "_fts"
	terms := DefaultColumn + "->>'ix_terms'"

	if drop {
		return []string{
			fmt.Sprintf("DROP TRIGGER IF EXISTS %q", fts+"_i"),
			fmt.Sprintf("DROP TRIGGER IF EXISTS %q", fts+"_u"),
			fmt.Sprintf("DROP TRIGGER IF EXISTS %q", fts+"_d"),
			fmt.Sprintf("DROP TABLE IF EXISTS %q", fts),
		}
	}

	return []string{
		fmt.Sprintf("CREATE VIRTUAL TABLE %q USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0')", fts),
		fmt.Sprintf("INSERT INTO %q(rowid, terms) SELECT rowid, %s FROM %q", fts, terms, table),
		fmt.Sprintf(
			"CREATE TRIGGER %q AFTER INSERT ON %q BEGIN INSERT INTO %q(rowid, terms) VALUES (new.rowid, new.%s); END",
			fts+"_i", table, fts, terms,
		),
		fmt.Sprintf(
			"CREATE TRIGGER %q AFTER UPDATE ON %q WHEN (old.%s) IS NOT (new.%s) BEGIN "+
				"DELETE FROM %q WHERE rowid = old.rowid; INSERT INTO %q(rowid, terms) VALUES (new.rowid, new.%s); END",
			fts+"_u", table, terms, terms, fts, fts, terms,
		),
		fmt.Sprintf("CREATE TRIGGER %q AFTER DELETE ON %q BEGIN DELETE FROM %q WHERE rowid = old.rowid; END", fts+"_d", table, fts),
	}
}

// crmFTS is a crm patch: run crmFTSStatements.
func crmFTS(ctx context.Context, db *fsql.DB, table string, drop bool) error {
	for _, q := range crmFTSStatements(table, drop) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return lazyerrors.Error(err)
		}
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
        replacement=(
            "\tvar exact bool\n"
            "\tfts := crmFTSTable(meta)\n"
            "\tfew := crmOrdered(params.Sort) && crmFewMatches(ctx, db, fts, params.Filter) // crm patch: see crmFewMatches\n"
            "\twhereClause, args, exact = crmPushdown(params.Filter, fts, crmOrdered(params.Sort) && !few) // crm patch: see crmPushdown\n\n"
            "\tif params.CrmCount && exact {\n"
            "\t\treturn crmCount(ctx, db, meta.TableName, whereClause, args, params.Limit) // crm patch: see crmCount\n"
            "\t}\n"
        ),
        why="a query pushes its filter down only when the filter is a lone _id; all others scan the collection",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor='\t// that logic should exist in one place\n\t// TODO https://github.com/FerretDB/FerretDB/issues/3235\n\tif params.Filter.Len() == 1 {\n\t\tv, _ := params.Filter.Get("_id")\n\t\tswitch v.(type) {\n\t\tcase string, types.ObjectID:\n\t\t\tfilterPushdown = true\n\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n\t\t}\n\t}\n',
        replacement=(
            "\tvar exact bool\n"
            "\tfts := crmFTSTable(meta)\n"
            "\tfew := crmOrdered(params.Sort) && crmFewMatches(ctx, db, fts, params.Filter) // crm patch: as in Query\n"
            "\twhereClause, args, exact = crmPushdown(params.Filter, fts, crmOrdered(params.Sort) && !few) // crm patch: see crmPushdown\n"
            "\tfilterPushdown = whereClause != \"\"\n"
        ),
        why="explain reports the same pushdown as the query",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor="\tq += whereClause\n\tq += prepareOrderByClause(params.Sort)\n",
        replacement=(
            "\tq += whereClause\n\n"
            "\tif few { // crm patch: see crmFewMatches\n"
            "\t\tq += crmSortAfterMatch(prepareOrderByClause(params.Sort))\n"
            "\t} else {\n"
            "\t\tq += prepareOrderByClause(params.Sort)\n"
            "\t}\n"
        ),
        why="a rare search word walks a whole list index in order before its page is full",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor="\torderByClause := prepareOrderByClause(params.Sort)\n",
        replacement=(
            "\torderByClause := prepareOrderByClause(params.Sort)\n"
            "\tif few { // crm patch: as in Query\n"
            "\t\torderByClause = crmSortAfterMatch(orderByClause)\n"
            "\t}\n"
        ),
        why="explain reports the same order as the query",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor="// InsertAll implements backends.Collection interface.\n",
        replacement=GO_PUSHDOWN + "// InsertAll implements backends.Collection interface.\n",
        why="the pushdown of equality filters on _id and top-level string fields",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor="\tif params.Limit != 0 {\n\t\tq += ` LIMIT ?`\n\t\targs = append(args, params.Limit)\n\t}\n",
        replacement=(
            "\t// crm patch: the handler also asks for a limit with a sort on an `ix_` field (crmSortable);\n"
            "\t// SQL may apply it only when the WHERE clause selects exactly the matching rows.\n"
            "\tif params.Limit != 0 && exact {\n\t\tq += ` LIMIT ?`\n\t\targs = append(args, params.Limit)\n\t}\n"
        ),
        why="a limit pushed with a sort is only right for an exact filter",
    ),
    Patch(
        path="internal/backends/sqlite/collection.go",
        anchor="\tif params.Limit != 0 {\n\t\tq += ` LIMIT ?`\n\t\targs = append(args, params.Limit)\n\t\tlimitPushdown = true\n\t}\n",
        replacement="\tif params.Limit != 0 && exact { // crm patch: as in Query\n\t\tq += ` LIMIT ?`\n\t\targs = append(args, params.Limit)\n\t\tlimitPushdown = true\n\t}\n",
        why="explain reports the same limit pushdown as the query",
    ),
    Patch(
        path="internal/backends/sqlite/query.go",
        anchor="\tif sort.Len() != 1 {\n\t\treturn \"\"\n\t}\n\n\tv := must.NotFail(sort.Get(\"$natural\"))\n",
        replacement=(
            "\tif sort.Len() != 1 {\n\t\treturn \"\"\n\t}\n\n"
            "\tif sort.Keys()[0] != \"$natural\" {\n\t\treturn crmOrderBy(sort) // crm patch: a sort on an `ix_` field\n\t}\n\n"
            "\tv := must.NotFail(sort.Get(\"$natural\"))\n"
        ),
        why="a sort on an ix_ field is read in its index's order",
    ),
    Patch(
        path="internal/backends/collection.go",
        anchor="func (cc *collectionContract) Query(ctx context.Context, params *QueryParams) (*QueryResult, error) {\n\tctx, span := otel.Tracer(\"\").Start(ctx, \"Query\")\n\tdefer span.End()\n\n\tif params == nil {\n\t\tparams = new(QueryParams)\n\t}\n\n\tif params.Sort.Len() != 0 {\n\t\tmust.BeTrue(params.Sort.Len() == 1)\n\t\tsortValue := params.Sort.Map()[\"$natural\"].(int64)\n",
        replacement="func (cc *collectionContract) Query(ctx context.Context, params *QueryParams) (*QueryResult, error) {\n\tctx, span := otel.Tracer(\"\").Start(ctx, \"Query\")\n\tdefer span.End()\n\n\tif params == nil {\n\t\tparams = new(QueryParams)\n\t}\n\n\tif params.Sort.Len() != 0 {\n\t\tmust.BeTrue(params.Sort.Len() == 1)\n\t\tsortValue := params.Sort.Map()[params.Sort.Keys()[0]].(int64) // crm patch: `$natural` or an `ix_` field\n",
        why="the backend contract admits a sort on one ix_ field",
    ),
    Patch(
        path="internal/backends/collection.go",
        anchor="\tif params.Sort.Len() != 0 {\n\t\tmust.BeTrue(params.Sort.Len() == 1)\n\t\tsortValue := params.Sort.Map()[\"$natural\"].(int64)\n",
        replacement="\tif params.Sort.Len() != 0 {\n\t\tmust.BeTrue(params.Sort.Len() == 1)\n\t\tsortValue := params.Sort.Map()[params.Sort.Keys()[0]].(int64) // crm patch: as in Query\n",
        why="the backend contract admits a sort on one ix_ field in explain",
    ),
    Patch(
        path="internal/backends/collection.go",
        anchor="\tOnlyRecordIDs bool\n\tComment       string\n}\n",
        replacement="\tOnlyRecordIDs bool\n\tComment       string\n\n\tCrmCount bool // crm patch: count in the backend if the filter is pushed down exactly\n}\n",
        why="a count request for the backend",
    ),
    Patch(
        path="internal/backends/collection.go",
        anchor="type QueryResult struct {\n\tIter types.DocumentsIterator\n}\n",
        replacement=(
            "type QueryResult struct {\n\tIter types.DocumentsIterator\n\n"
            "\tCrmCount   int64 // crm patch: the count, when CrmCounted\n"
            "\tCrmCounted bool  // crm patch: the backend counted (Iter is empty)\n}\n"
        ),
        why="the backend's count",
    ),
    Patch(
        path="internal/handler/msg_find.go",
        anchor="\tif !h.DisablePushdown && params.Filter.Len() == 0 && params.Sort.Len() == 0 && params.Skip == 0 {\n\t\tqp.Limit = params.Limit\n\t}\n\n\th.L.DebugContext(ctx, fmt.Sprintf(\"Converted %+v for %+v to %+v.\", params, cInfo, qp))\n",
        replacement=(
            "\tif !h.DisablePushdown && params.Filter.Len() == 0 && params.Sort.Len() == 0 && params.Skip == 0 {\n\t\tqp.Limit = params.Limit\n\t}\n\n"
            "\tif !h.DisablePushdown && crmSortable(params.Sort) { // crm patch: see crmSortable\n"
            "\t\tqp.Sort = params.Sort\n\n\t\tif params.Skip == 0 {\n\t\t\tqp.Limit = params.Limit\n\t\t}\n\t}\n\n"
            "\th.L.DebugContext(ctx, fmt.Sprintf(\"Converted %+v for %+v to %+v.\", params, cInfo, qp))\n"
        ),
        why="a sort (and limit) on an ix_ field is pushed down to the backend",
    ),
    Patch(
        path="internal/handler/msg_find.go",
        anchor="\titer, err := common.SortIterator(iter, closer, params.Sort)\n",
        replacement=(
            "\tvar err error\n\n"
            "\tif h.DisablePushdown || !crmSortable(params.Sort) { // crm patch: else the backend sorted\n"
            "\t\titer, err = common.SortIterator(iter, closer, params.Sort)\n\t}\n"
        ),
        why="the handler does not sort again what the backend read in index order",
    ),
    Patch(
        path="internal/handler/msg_find.go",
        anchor="\tdocs, err := iterator.ConsumeValuesN(c, int(params.BatchSize))\n\tif err != nil {\n\t\treturn nil, handleMaxTimeMSError(err, params.MaxTimeMS, \"find\")\n\t}\n",
        replacement=(
            "\tdocs, err := iterator.ConsumeValuesN(c, int(params.BatchSize))\n\tif err != nil {\n"
            "\t\tif params.MaxTimeMS != 0 {\n\t\t\treturn nil, crmMaxTimeError(ctx, err, \"find\") // crm patch: see crmMaxTimeError\n\t\t}\n\n"
            "\t\treturn nil, handleMaxTimeMSError(err, params.MaxTimeMS, \"find\")\n\t}\n"
        ),
        why="a find stopped by maxTimeMS inside SQLite reports MaxTimeMSExpired",
    ),
    Patch(
        path="internal/handler/msg_find.go",
        anchor="// handleMaxTimeMSError returns the MaxTimeMSExpired error if provided error is a result of context cancellation.\n",
        replacement=GO_SORTABLE + "\n// handleMaxTimeMSError returns the MaxTimeMSExpired error if provided error is a result of context cancellation.\n",
        why="the handler's side of the ix_ sort pushdown",
    ),
    Patch(
        path="internal/handler/msg_explain.go",
        anchor="\tif !h.DisablePushdown && params.Filter.Len() == 0 && params.Sort.Len() == 0 && params.Skip == 0 {\n\t\tqp.Limit = params.Limit\n\t}\n",
        replacement=(
            "\tif !h.DisablePushdown && params.Filter.Len() == 0 && params.Sort.Len() == 0 && params.Skip == 0 {\n\t\tqp.Limit = params.Limit\n\t}\n\n"
            "\tif !h.DisablePushdown && crmSortable(params.Sort) { // crm patch: as in find\n"
            "\t\tqp.Sort = params.Sort\n\n\t\tif params.Skip == 0 {\n\t\t\tqp.Limit = params.Limit\n\t\t}\n\t}\n"
        ),
        why="explain shows the ix_ sort pushdown of find",
    ),
    Patch(
        path="internal/handler/msg_count.go",
        anchor="\t\"github.com/FerretDB/FerretDB/internal/handler/handlererrors\"\n",
        replacement="\t\"github.com/FerretDB/FerretDB/internal/handler/handlererrors\"\n\t\"github.com/FerretDB/FerretDB/internal/handler/handlerparams\"\n",
        why="imports for the count fast path",
    ),
    Patch(
        path="internal/handler/msg_count.go",
        anchor="\t\"errors\"\n\t\"fmt\"\n",
        replacement="\t\"errors\"\n\t\"fmt\"\n\t\"time\"\n",
        why="imports for the count time limit",
    ),
    Patch(
        path="internal/handler/msg_count.go",
        anchor="\tvar qp backends.QueryParams\n\tif !h.DisablePushdown {\n\t\tqp.Filter = params.Filter\n\t}\n\n\tqueryRes, err := c.Query(connCtx, &qp)\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n",
        replacement=(
            "\tvar qp backends.QueryParams\n\tif !h.DisablePushdown {\n\t\tqp.Filter = params.Filter\n"
            "\t\tqp.CrmCount = params.Skip == 0 // crm patch: see crmCount\n\n\t\tif qp.CrmCount {\n\t\t\tqp.Limit = params.Limit // applied in SQL only to an exact filter\n\t\t}\n\t}\n\n"
            "\t// crm patch: upstream ignores maxTimeMS on count; a count is now ended by it like a find.\n"
            "\tctx := connCtx\n\n"
            "\tif v, _ := document.Get(\"maxTimeMS\"); v != nil {\n"
            "\t\tif ms, msErr := handlerparams.GetWholeNumberParam(v); msErr == nil && ms > 0 {\n"
            "\t\t\tvar cancel context.CancelFunc\n"
            "\t\t\tctx, cancel = context.WithTimeout(connCtx, time.Duration(ms)*time.Millisecond)\n\n"
            "\t\t\tdefer cancel()\n\t\t}\n\t}\n\n"
            "\tqueryRes, err := c.Query(ctx, &qp)\n\tif err != nil {\n\t\treturn nil, crmMaxTimeError(ctx, err, \"count\")\n\t}\n\n"
            "\tif queryRes.CrmCounted { // crm patch: counted by the backend\n"
            "\t\tqueryRes.Iter.Close()\n\n"
            "\t\treturn documentOpMsg(must.NotFail(types.NewDocument(\"n\", int32(queryRes.CrmCount), \"ok\", float64(1))))\n\t}\n"
        ),
        why="count decodes every matching document in Go and has no time limit",
    ),
    Patch(
        path="internal/handler/msg_count.go",
        anchor="\t_, res, err := iter.Next()\n\tif errors.Is(err, iterator.ErrIteratorDone) {\n\t\terr = nil\n\t}\n\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n",
        replacement="\t_, res, err := iter.Next()\n\tif errors.Is(err, iterator.ErrIteratorDone) {\n\t\terr = nil\n\t}\n\n\tif err != nil {\n\t\treturn nil, crmMaxTimeError(ctx, err, \"count\") // crm patch\n\t}\n",
        why="a count ended by its time limit says so",
    ),
    Patch(
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
    Patch(
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
    Patch(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor="\tq = fmt.Sprintf(\"DROP TABLE %q\", c.TableName)\n\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\treturn false, lazyerrors.Error(err)\n\t}\n",
        replacement=(
            "\tq = fmt.Sprintf(\"DROP TABLE %q\", c.TableName)\n\tif _, err := db.ExecContext(ctx, q); err != nil {\n\t\treturn false, lazyerrors.Error(err)\n\t}\n\n"
            "\tif err := crmFTS(ctx, db, c.TableName, true); err != nil { // crm patch: the collection's FTS table, if any\n"
            "\t\treturn false, lazyerrors.Error(err)\n\t}\n"
        ),
        why="a dropped collection leaves no FTS table behind",
    ),
    Patch(
        path="internal/backends/sqlite/metadata/registry.go",
        anchor="// IndexesCreate creates indexes in the collection.\n",
        replacement=GO_FTS + "// IndexesCreate creates indexes in the collection.\n",
        why="the FTS table behind an ix_terms_fts index",
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
