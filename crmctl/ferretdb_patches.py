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
- a multi-statement update closes each statement's cursor when that statement is done (now in
  crmctl/ferretdb_writes.py, whose patches also run a write command's statements in one transaction);
- write transactions of one database queue on a Go mutex instead of SQLite's busy handler, which
  sleeps up to 100 ms per try: three services writing bulks at once fell to ~75 documents a second
  and their requests timed out (30 s); the infrastructure note also upgrades modernc.org/sqlite.

The module cache is never changed: the build copies the module into the build folder, patches the
copy, and builds with a go.mod of its own that points FerretDB at the copy. A patch whose anchor text
is not found once stops the build with the file named, so an upgrade cannot silently drop a fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from crmctl.ferretdb_encoding import ENCODING_PATCHES
from crmctl.ferretdb_reads import READ_PATCHES
from crmctl.ferretdb_registry import REGISTRY_PATCHES
from crmctl.ferretdb_replace import REPLACE_PATCHES
from crmctl.ferretdb_writes import WRITE_PATCHES, go_fragment as _go

GO_PUSHDOWN = _go("pushdown")  # into the SQLite backend's collection.go: the pushdown patches below
GO_SORTABLE = _go("sortable")  # into the handler's msg_find.go: which sorts the backend applies, time limits
GO_SJSON = _go("sjson_decode")  # into the handler's sjson.go: a stored document decoded in one pass


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
        replacement=(
            "\tOnlyRecordIDs bool\n\tComment       string\n\n\tCrmCount bool // crm patch: count in the backend if the filter is pushed down exactly\n"
            "\tCrmFields []string // crm patch: the only fields the handler needs, when set (see crmRowsIterator)\n}\n"
        ),
        why="a count request for the backend",
    ),
    Patch(
        path="internal/backends/collection.go",
        anchor="type QueryResult struct {\n\tIter types.DocumentsIterator\n}\n",
        replacement=(
            "type QueryResult struct {\n\tIter types.DocumentsIterator\n\n"
            "\tCrmCount   int64 // crm patch: the count, when CrmCounted\n"
            "\tCrmCounted bool  // crm patch: the backend counted (Iter is empty)\n"
            "\tCrmExact   bool  // crm patch: Iter holds exactly the documents the filter matches\n"
            "\tCrmCovered bool  // crm patch: Iter's documents hold only QueryParams.CrmFields\n}\n"
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
    *(Patch(**p) for p in REGISTRY_PATCHES),  # the metadata registry: FTS tables, no write for an index already there
    # The read path's decode (issue 22): every document a find returns is decoded from its stored JSON.
    Patch(
        path="internal/handler/sjson/sjson.go",
        anchor='\t"bytes"\n\t"encoding/json"\n\t"fmt"\n\t"io"\n\t"time"\n',
        replacement='\t"bytes"\n\t"encoding/base64"\n\t"encoding/json"\n\t"fmt"\n\t"io"\n\t"strconv"\n\t"strings"\n\t"sync"\n\t"time"\n\t"unicode/utf8"\n',
        why="imports for the one-pass decoder below",
    ),
    Patch(
        path="internal/handler/sjson/sjson.go",
        anchor="func Unmarshal(data []byte) (*types.Document, error) {\n",
        replacement=GO_SJSON + "// unmarshalSlow is upstream's Unmarshal (crm patch: renamed; the one above tries a faster path first).\nfunc unmarshalSlow(data []byte) (*types.Document, error) {\n",
        why="decoding each stored document with a json.Decoder per field is most of a read's CPU",
    ),
    *(Patch(**p) for p in READ_PATCHES),  # the read path's covered rows and exact filters (after the pushdown and decode patches)
    # The leak detector's patches (resource.go) are among the write patches below.
    *(Patch(**p) for p in ENCODING_PATCHES),  # after the others: their anchors are in the text those leave
    *(Patch(**p) for p in WRITE_PATCHES),
    *(Patch(**p) for p in REPLACE_PATCHES),
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
