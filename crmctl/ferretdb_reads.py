"""The FerretDB patches of its read path: an `$or` pushed down, rows the backend selected exactly not
filtered again, and rows decoded as just the fields a plain projection keeps.

The leads' duplicate check asks, for each chunk of creates, for the stored leads sharing an email, a
phone or a name. It was three finds (each ~0.4 ms of the client's CPU whatever it returns, two of the
three usually nothing), since an `$or` was not pushed down to SQLite (a scan); now the pushdown reads
an `$or` whose every branch pushes down as the OR of the branches (crmOrCondition in pushdown.go.txt:
SQLite's MULTI-INDEX OR). The handler then filtered every row again in Go, comparing each with every
value of each `$in` (~15 µs a row for three 250-value `$in`): a row the backend selected exactly (the
same rule a count or a LIMIT in SQL relies on) is no longer filtered again (exact.go.txt). And each row
found was decoded whole, a 1.5 KB lead with its binary card, to keep three short keys: with a
projection of plain top-level fields that keeps `_id`, on rows selected exactly, the backend decodes
just those fields (sjson_fields.go.txt, in the decoder's one pass over the stored JSON), which are the
projection's answer already, so the handler's projection (~3 µs a field a row) is skipped too.
FerretDB's CPU per matching create of bench_leads' data went from ~40 to ~24 µs (the lookup alone).
"""

from __future__ import annotations

from crmctl.ferretdb_writes import go_fragment as _go

GO_COVERED = _go("covered")  # into the SQLite backend's query_iterator.go: rows decoded as a few top-level fields
GO_EXACT = _go("exact")  # into the handler's msg_find.go: rows the backend selected exactly are not filtered again
GO_SJSON_FIELDS = _go("sjson_fields")  # into the handler's sjson.go: a stored document decoded as a few of its fields

# Keyword arguments of crmctl.ferretdb_patches.Patch, applied after its pushdown, find and decode patches.
READ_PATCHES: list[dict[str, str]] = [
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\t\treturn crmCount(ctx, db, meta.TableName, whereClause, args, params.Limit) // crm patch: see crmCount\n\t}\n",
        replacement=(
            "\t\treturn crmCount(ctx, db, meta.TableName, whereClause, args, params.Limit) // crm patch: see crmCount\n\t}\n\n"
            "\tcovered := exact && len(params.CrmFields) > 0 // crm patch: see crmRowsIterator\n"
        ),
        why="a find that needs a few top-level fields of exactly selected rows decodes only those",
    ),
    dict(
        path="internal/backends/sqlite/collection.go",
        anchor="\treturn &backends.QueryResult{\n\t\tIter: newQueryIterator(ctx, rows, params.OnlyRecordIDs),\n\t}, nil\n",
        replacement=(
            "\treturn &backends.QueryResult{\n\t\tIter: crmRowsIterator(ctx, rows, params, covered), // crm patch: see crmRowsIterator\n"
            "\t\tCrmExact: exact, CrmCovered: covered, // crm patch: see crmExactIterator\n\t}, nil\n"
        ),
        why="the backend says when its rows are exactly the filter's matches",
    ),
    dict(
        path="internal/backends/sqlite/query_iterator.go",
        anchor='import (\n\t"context"\n\t"fmt"\n\t"slices"\n\t"sync"\n',
        replacement='import (\n\t"context"\n\t"fmt"\n\t"slices"\n\t"sync"\n\n\t"github.com/FerretDB/FerretDB/internal/backends"\n',
        why="imports for crmRowsIterator",
    ),
    dict(
        path="internal/backends/sqlite/query_iterator.go",
        anchor="\tonlyRecordIDs bool\n}\n",
        replacement="\tonlyRecordIDs bool\n\n\tcrmFields []string // crm patch: the only fields to decode (see crmRowsIterator)\n}\n",
        why="a query's rows may be decoded as a few fields",
    ),
    dict(
        path="internal/backends/sqlite/query_iterator.go",
        anchor="\t\tif doc, err = sjson.Unmarshal(b); err != nil {\n",
        replacement="\t\tif doc, err = sjson.CrmUnmarshalFields(b, iter.crmFields); err != nil { // crm patch: see crmRowsIterator\n",
        why="rows decoded as the fields the handler needs",
    ),
    dict(
        path="internal/backends/sqlite/query_iterator.go",
        anchor="var (\n\t_ types.DocumentsIterator = (*queryIterator)(nil)\n)\n",
        replacement="var (\n\t_ types.DocumentsIterator = (*queryIterator)(nil)\n)\n" + GO_COVERED,
        why="a find's rows decoded as a few top-level fields",
    ),
    dict(
        path="internal/handler/msg_find.go",
        anchor="\th.L.DebugContext(ctx, fmt.Sprintf(\"Converted %+v for %+v to %+v.\", params, cInfo, qp))\n",
        replacement=(
            "\tif crmWholeFilter(qp, params) { // crm patch: see crmCoveredFields\n\t\tqp.CrmFields = crmCoveredFields(params.Projection)\n\t}\n\n"
            "\th.L.DebugContext(ctx, fmt.Sprintf(\"Converted %+v for %+v to %+v.\", params, cInfo, qp))\n"
        ),
        why="the backend is told which fields a plain projection keeps",
    ),
    dict(
        path="internal/handler/msg_find.go",
        anchor="\titer, err := h.makeFindIter(queryRes.Iter, closer, params)\n",
        replacement="\titer, err := h.makeFindIter(crmMarkExact(queryRes, qp, params), closer, params) // crm patch: see crmExactIterator\n",
        why="a find whose filter the backend applied exactly is not filtered again",
    ),
    dict(
        path="internal/handler/msg_find.go",
        anchor="\titer = common.FilterIterator(iter, closer, params.Filter)\n",
        replacement=(
            "\tcrmRows, crmExact := iter.(crmExactIterator) // crm patch: see crmExactIterator\n"
            "\tif !crmExact {\n\t\titer = common.FilterIterator(iter, closer, params.Filter)\n\t}\n"
        ),
        why="the handler's filter is skipped for rows the backend selected exactly",
    ),
    dict(
        path="internal/handler/msg_find.go",
        anchor="\tif iter, err = common.ProjectionIterator(iter, closer, params.Projection, params.Filter); err != nil {\n",
        replacement=(
            "\tif !crmRows.projected { // crm patch: covered rows are the projection already (see crmExactIterator)\n"
            "\t\titer, err = common.ProjectionIterator(iter, closer, params.Projection, params.Filter)\n\t}\n\n"
            "\tif err != nil {\n"
        ),
        why="the projection is not applied again to rows decoded as just its fields",
    ),
    dict(
        path="internal/handler/msg_find.go",
        anchor="\n// handleMaxTimeMSError returns the MaxTimeMSExpired error if provided error is a result of context cancellation.\n",
        replacement="\n" + GO_EXACT + "\n// handleMaxTimeMSError returns the MaxTimeMSExpired error if provided error is a result of context cancellation.\n",
        why="the marker of exactly selected rows",
    ),
    dict(
        path="internal/handler/sjson/sjson.go",
        anchor="// unmarshalSlow is upstream's Unmarshal (crm patch: renamed; the one above tries a faster path first).\n",
        replacement=GO_SJSON_FIELDS + "// unmarshalSlow is upstream's Unmarshal (crm patch: renamed; the one above tries a faster path first).\n",
        why="a stored document decoded as a few of its top-level fields",
    ),
]
