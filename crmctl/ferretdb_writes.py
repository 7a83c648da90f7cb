"""The FerretDB patches that make its writes cheap: shared SQLite transactions per command, and what measuring found.

Upstream FerretDB 1.24.2 wrote each updated or deleted document in a SQLite transaction of its own,
where insert_many writes one per command. The update, delete and findAndModify handlers now open a
batch for the command (``CrmBatch`` in the backends package, ``ferretdb_go/batch.go.txt``); the SQLite
backend begins one write transaction on its first call, under the database's write lock, and runs
every read and write of the command on it (``batch_sqlite.go.txt``), committing every 500 writes so
other writers get their turn. A statement reads what earlier ones wrote (same transaction); a
multi-document update reads on a connection of its own after a commit (SQLite leaves undefined what
a read sees of writes on its own connection meanwhile). A failing statement undoes no other: SQLite
rolls back only the failing SQL statement of a constraint error, and the command commits on every
path, as when each document had its own transaction. A command holds connections only while it
holds the write lock, so the writer holding the lock always finds one (the old deadlock of ~100
statements cannot come back), and a statement's read and write are one transaction: concurrent
writers of one document no longer lose changes (upstream: 60 concurrent ``$inc`` came to ~50). The
price: one multi-document statement (update_many, delete_many) holds the write lock while it reads,
so other writers wait for it (~0.2 ms a document it touches; upstream read outside the lock).

The update command's reply is MongoDB's too (``update.go.txt``): upstream ignored ``ordered``, stopped
at the first error, answered that error alone at index 0 without ``n``/``nModified`` (pymongo's bulk
merge failed on it) and numbered ``upserted`` among the upserts; now a failing statement is a write
error at its own index, an ordered command stops there, an unordered one goes on, ``upserted``
names each upsert's statement, and an update that takes a unique index's value is a duplicate key
(E11000) of that statement (upstream: an internal error of the whole command).

The other patches here came from profiles of the writes: debug-log attributes formatted only when a
record is written (``lazylog.go.txt``), statements prepared once and kept per database
(``stmts.go.txt``), no leak tracking outside debug builds, ``GOGC=400``; strings and whole documents
encoded and decoded in one pass are crmctl/ferretdb_encoding.py's. What each
measured (bench/bench_ferretdb_writes.py, both builds in one run) is in the README, "Local stack
details"; infra/ferretdb/main.go writes a Go CPU profile when CRM_FERRETDB_CPUPROFILE names a file.
"""

from __future__ import annotations

from pathlib import Path

_GO = Path(__file__).resolve().parent / "ferretdb_go"  # Go fragments (no package clause) the patches paste in


def go_fragment(name: str) -> str:
    return (_GO / f"{name}.go.txt").read_text(encoding="utf-8")


_go = go_fragment


# Applied after crmctl.ferretdb_patches' own and the encoding patches, on the text those left: keyword arguments of its Patch.
WRITE_PATCHES: list[dict[str, str]] = [
    dict(
        path="internal/util/resource/resource.go",
        anchor="func Track(obj any, token *Token) {\n\tcheckArgs(obj, token)\n",
        replacement=(
            "func Track(obj any, token *Token) {\n"
            "\t// crm patch: leak tracking is for debug builds (upstream's tests). In a release build it took\n"
            "\t// a stack trace (pprof.Profile.Add) and set a finalizer for every transaction, statement's rows\n"
            "\t// and iterator: ~7 % of FerretDB's CPU in a bulk of updates; and a leak found panicked the server.\n"
            "\tif !debugbuild.Enabled {\n\t\treturn\n\t}\n\n"
            "\tcheckArgs(obj, token)\n"
        ),
        why="every tracked resource took a stack trace in release builds",
    ),
    dict(
        path="internal/util/resource/resource.go",
        anchor="func Untrack(obj any, token *Token) {\n\tcheckArgs(obj, token)\n",
        replacement="func Untrack(obj any, token *Token) {\n\tif !debugbuild.Enabled { // crm patch: as Track\n\t\treturn\n\t}\n\n\tcheckArgs(obj, token)\n",
        why="untracking matches tracking",
    ),
    dict(
        path="internal/util/fsql/db.go",
        anchor="// WrapDB creates a new DB.\n",
        replacement=_go("lazylog") + "// WrapDB creates a new DB.\n",
        why="a logger that formats attributes only for a record it writes",
    ),
    dict(
        path="internal/util/fsql/db.go",
        anchor="\t\tl:                logging.WithName(l, name),\n",
        replacement="\t\tl:                crmLazyAttrs(logging.WithName(l, name)), // crm patch: see crmLazyAttrs\n",
        why="every statement formatted its arguments (the documents) for a debug record it did not write",
    ),
    dict(
        path="internal/backends/collection.go",
        anchor="// UpdateAllParams represents the parameters of Collection.Update method.\n",
        replacement=_go("batch") + "// UpdateAllParams represents the parameters of Collection.Update method.\n",
        why="the batch a write command's backend calls share",
    ),
    dict(
        path="internal/util/fsql/db.go",
        anchor="// InTransaction wraps the given function f in a transaction.\n",
        replacement=(
            "// CrmBegin is a crm patch: a write transaction that spans the calls of one write command\n"
            "// (backends.CrmBatch), holding the write lock until end is called; end commits, or rolls back.\n"
            "func (db *DB) CrmBegin(ctx context.Context) (*Tx, func(commit bool) error, error) {\n"
            "\tdb.writeMu.Lock()\n\n"
            "\t// Not ended by ctx: a statement's own deadline (maxTimeMS) must not roll back the ones before it.\n"
            "\tsqlTx, err := db.sqlDB.BeginTx(context.WithoutCancel(ctx), nil)\n"
            "\tif err != nil {\n\t\tdb.writeMu.Unlock()\n\t\treturn nil, nil, lazyerrors.Error(err)\n\t}\n\n"
            "\ttx := wrapTx(sqlTx, db.l)\n"
            "\ttx.crmDB = db // crm patch: see crmStmt\n\n"
            "\tend := func(commit bool) error {\n"
            "\t\tdefer db.writeMu.Unlock()\n\n"
            "\t\tif !commit {\n\t\t\treturn tx.Rollback()\n\t\t}\n\n"
            "\t\tif err := tx.Commit(); err != nil {\n\t\t\treturn lazyerrors.Error(err)\n\t\t}\n\n"
            "\t\treturn nil\n\t}\n\n"
            "\treturn tx, end, nil\n}\n\n"
            "// InTransaction wraps the given function f in a transaction.\n"
        ),
        why="a write transaction that outlives one backend call",
    ),
    dict(
        path="internal/util/fsql/tx.go",
        anchor="\tsqlTx *sql.Tx\n\tl     *slog.Logger\n\ttoken *resource.Token\n}\n",
        replacement=(
            "\tsqlTx *sql.Tx\n\tl     *slog.Logger\n\ttoken *resource.Token\n\n"
            "\tcrmStmts map[string]*sql.Stmt // crm patch: see CrmExec\n"
            "\tcrmDB    *DB                  // crm patch: whose statements it borrows (crmStmt)\n}\n"
        ),
        why="a transaction's prepared statements",
    ),
    dict(
        path="internal/util/fsql/db.go",
        anchor="\twriteMu sync.Mutex // crm patch: one write transaction at a time per database\n}\n",
        replacement=(
            "\twriteMu sync.Mutex // crm patch: one write transaction at a time per database\n\n"
            "\tcrmStmtsMu sync.Mutex           // crm patch: guards crmStmts\n"
            "\tcrmStmts   map[string]*sql.Stmt // crm patch: statements kept across transactions (crmPrepared)\n}\n"
        ),
        why="prepared statements kept across transactions",
    ),
    dict(
        path="internal/util/fsql/db.go",
        anchor="\ttx := wrapTx(sqlTx, db.l)\n\n\tvar done bool\n",
        replacement="\ttx := wrapTx(sqlTx, db.l)\n\ttx.crmDB = db // crm patch: see crmStmt\n\n\tvar done bool\n",
        why="an insert's transaction borrows the database's prepared statements",
    ),
    dict(
        path="internal/util/fsql/tx.go",
        anchor="// Commit calls [*sql.Tx.Commit].\n",
        replacement=_go("stmts") + "// Commit calls [*sql.Tx.Commit].\n",
        why="statements prepared once per transaction",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="// InsertAll implements backends.Collection interface.\n",
        replacement=_go("batch_sqlite") + "// InsertAll implements backends.Collection interface.\n",
        why="the SQLite side of the batch",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor=(
            "\trows, err := db.QueryContext(ctx, q, args...)\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n"
            "\treturn &backends.QueryResult{\n"
        ),
        replacement=(
            "\trows, err := crmQuery(ctx, db, q, args...) // crm patch: the command batch's transaction, if any\n"
            "\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n"
            "\treturn &backends.QueryResult{\n"
        ),
        why="a statement's read sees what the command's earlier statements wrote",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\terr := db.InTransaction(ctx, func(tx *fsql.Tx) error {\n\t\tbatchSize := c.r.BatchSize\n",
        replacement=(
            "\terr := crmInTransaction(ctx, db, func(tx *fsql.Tx) error { // crm patch: an upsert joins the batch\n"
            "\t\tbatchSize := c.r.BatchSize\n"
        ),
        why="an upsert's insert joins the command's transaction",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\terr := db.InTransaction(ctx, func(tx *fsql.Tx) error {\n\t\tfor _, doc := range params.Docs {\n",
        replacement=(
            "\terr := crmInTransaction(ctx, db, func(tx *fsql.Tx) error { // crm patch: see CrmBatch\n"
            "\t\tfor _, doc := range params.Docs {\n"
        ),
        why="an updated document joins the command's transaction instead of committing its own",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\tres, err := db.ExecContext(ctx, q, args...)\n",
        replacement="\tres, err := crmExec(ctx, db, q, args...) // crm patch: see CrmBatch\n",
        why="a deleted document joins the command's transaction",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\t\t\tr, err := tx.ExecContext(ctx, q, string(b), arg)\n",
        replacement="\t\t\tr, err := tx.CrmExec(ctx, q, string(b), arg) // crm patch: prepared once per transaction\n",
        why="an update prepares its UPDATE once per transaction",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\t\t\tif _, err = tx.ExecContext(ctx, q, args...); err != nil {\n",
        replacement="\t\t\tif _, err = tx.CrmExec(ctx, q, args...); err != nil { // crm patch: prepared once per transaction\n",
        why="an insert prepares its INSERT once per transaction",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor=(
            "\t\t\tr, err := tx.CrmExec(ctx, q, string(b), arg) // crm patch: prepared once per transaction\n"
            "\t\t\tif err != nil {\n\t\t\t\treturn lazyerrors.Error(err)\n\t\t\t}\n"
        ),
        replacement=(
            "\t\t\tr, err := tx.CrmExec(ctx, q, string(b), arg) // crm patch: prepared once per transaction\n"
            "\t\t\tif err != nil {\n"
            "\t\t\t\t// crm patch: a unique index's value taken is a duplicate key (E11000), as an insert's is;\n"
            "\t\t\t\t// upstream failed the whole command with an internal error.\n"
            "\t\t\t\tvar se *sqlite3.Error\n"
            "\t\t\t\tif errors.As(err, &se) && se.Code() == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE {\n"
            "\t\t\t\t\treturn backends.NewError(backends.ErrorCodeInsertDuplicateID, err)\n"
            "\t\t\t\t}\n\n"
            "\t\t\t\treturn lazyerrors.Error(err)\n\t\t\t}\n"
        ),
        why="an update that takes a unique index's value failed its command with an internal error",
    ),
    dict(
        path="internal/handler/handlererrors/write.go",
        anchor="// Len returns the number of errors.\n",
        replacement=(
            "// CrmFirst is a crm patch: the code and message of the first error, for a statement's write error.\n"
            "func (we *WriteErrors) CrmFirst() (ErrorCode, string) {\n"
            "\treturn we.errs[0].code, we.errs[0].errmsg\n}\n\n"
            "// Len returns the number of errors.\n"
        ),
        why="a statement's write error at its own index",
    ),
    dict(
        path="internal/handler/common/update_params.go",
        anchor="\tOrdered                  bool            `ferretdb:\"ordered,ignored\"`\n",
        replacement="\tOrdered                  bool            `ferretdb:\"ordered,opt\"` // crm patch: obeyed (see crmUpdate)\n",
        why="the update command ignored `ordered`",
    ),
    dict(
        path="internal/handler/common/update_params.go",
        anchor="func GetUpdateParams(document *types.Document, l *slog.Logger) (*UpdateParams, error) {\n\tvar params UpdateParams\n",
        replacement=(
            "func GetUpdateParams(document *types.Document, l *slog.Logger) (*UpdateParams, error) {\n"
            "\tparams := UpdateParams{Ordered: true} // crm patch: MongoDB's default\n"
        ),
        why="an update command is ordered unless it says otherwise",
    ),
    dict(
        path="internal/handler/msg_update.go",
        anchor="import (\n\t\"context\"\n\t\"fmt\"\n",
        replacement="import (\n\t\"context\"\n\t\"errors\"\n\t\"fmt\"\n",
        why="imports for crmUpdate",
    ),
    dict(
        path="internal/handler/msg_update.go",
        anchor=(
            "\t// TODO https://github.com/FerretDB/FerretDB/issues/2612\n\t_ = params.Ordered\n\n"
            "\tmatched, modified, upserted, err := h.updateDocument(connCtx, params)\n"
            "\tif err != nil {\n\t\treturn nil, handleUpdateError(params.DB, params.Collection, \"update\", err)\n\t}\n\n"
            "\tres := must.NotFail(types.NewDocument(\n\t\t\"n\", matched,\n\t))\n\n"
            "\tif upserted.Len() != 0 {\n\t\tres.Set(\"upserted\", upserted)\n\t}\n\n"
            "\tres.Set(\"nModified\", modified)\n\tres.Set(\"ok\", float64(1))\n"
        ),
        replacement=(
            "\tres, err := h.crmUpdate(connCtx, params) // crm patch: see crmUpdate\n"
            "\tif err != nil {\n\t\treturn nil, handleUpdateError(params.DB, params.Collection, \"update\", err)\n\t}\n"
        ),
        why="the update command's statements share transactions and it answers as MongoDB does",
    ),
    dict(
        path="internal/handler/msg_update.go",
        anchor="// updateDocument iterate through all documents in collection and update them.\n",
        replacement=_go("update") + "// updateDocument iterate through all documents in collection and update them.\n",
        why="the update command, batched",
    ),
    dict(
        path="internal/handler/msg_findandmodify.go",
        anchor="\tres, err := h.findAndModifyDocument(connCtx, params)\n",
        replacement=(
            "\t// crm patch: the read and the write in one transaction (backends.CrmBatch), so no other writer's\n"
            "\t// change comes between them and is lost; upstream read outside the write lock.\n"
            "\tctx, batch := backends.CrmWithBatch(connCtx)\n"
            "\tres, err := h.findAndModifyDocument(ctx, params)\n\n"
            "\tif endErr := batch.End(true); endErr != nil && err == nil {\n\t\tres, err = nil, lazyerrors.Error(endErr)\n\t}\n"
        ),
        why="findAndModify read outside the write lock, so a concurrent writer's change could be lost",
    ),
    dict(
        path="internal/handler/msg_delete.go",
        anchor=(
            "\tvar deleted int32\n\twriteErrors := types.MakeArray(0)\n\n"
            "\tfor i, p := range params.Deletes {\n\t\tvar d int32\n\t\td, err = h.execDelete(connCtx, c, &p)\n"
        ),
        replacement=(
            "\tvar deleted int32\n\twriteErrors := types.MakeArray(0)\n\n"
            "\t// crm patch: the statements share write transactions (backends.CrmBatch); what the ones before\n"
            "\t// a failure wrote is committed, as when each had a transaction of its own.\n"
            "\tctx, batch := backends.CrmWithBatch(connCtx)\n"
            "\tdefer batch.End(true) //nolint:errcheck // the end after the loop reports errors; this one follows a failure\n\n"
            "\tfor i, p := range params.Deletes {\n"
            "\t\tif err = batch.Flush(); err != nil {\n\t\t\treturn nil, lazyerrors.Error(err)\n\t\t}\n\n"
            "\t\tvar d int32\n\t\td, err = h.execDelete(ctx, c, &p)\n"
        ),
        why="a delete command's statements share transactions",
    ),
    dict(
        path="internal/handler/msg_delete.go",
        anchor="\tres := must.NotFail(types.NewDocument(\n\t\t\"n\", deleted,\n\t))\n",
        replacement=(
            "\tif err = batch.End(true); err != nil { // crm patch: see CrmBatch\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n"
            "\tres := must.NotFail(types.NewDocument(\n\t\t\"n\", deleted,\n\t))\n"
        ),
        why="a delete command commits its statements before it answers",
    ),
    dict(
        path="internal/handler/msg_insert.go",
        anchor=(
            "\t\tdocs := make([]*types.Document, 0, h.BatchSize)\n"
            "\t\tdocsIndexes := make([]int, 0, h.BatchSize)\n\n"
            "\t\tfor j := 0; j < h.BatchSize; j++ {\n"
        ),
        replacement=(
            "\t\t// crm patch: crmInsertChunk documents a transaction (upstream: BatchSize, 100), the backend\n"
            "\t\t// still writing them BatchSize rows an INSERT.\n"
            "\t\tdocs := make([]*types.Document, 0, crmInsertChunk)\n"
            "\t\tdocsIndexes := make([]int, 0, crmInsertChunk)\n\n"
            "\t\tfor j := 0; j < crmInsertChunk; j++ {\n"
        ),
        why="insert_many committed every 100 documents",
    ),
    dict(
        path="internal/handler/msg_insert.go",
        anchor="// MsgInsert implements `insert` command.\n",
        replacement=(
            "// crmInsertChunk is a crm patch: the documents of an insert written in one transaction, as an update\n"
            "// command commits every 500 writes. Each commit writes every page it dirtied, and documents with random\n"
            "// ids dirty pages all over each index (an activity task: twelve): 100 a commit cost FerretDB 286/309/294\n"
            "// µs of CPU a task, 500 cost 265/257/227 (2,000 task creates a batch; 2,000 a commit 191/206, but the\n"
            "// write lock held that much longer).\n"
            "const crmInsertChunk = 500\n\n"
            "// MsgInsert implements `insert` command.\n"
        ),
        why="the size of an insert's transaction",
    ),
]
