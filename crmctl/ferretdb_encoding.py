"""The FerretDB patches that encode and decode stored documents in one pass (``sjson``): profiles of the writes.

Upstream's ``sjson`` wrote every field of a document into buffers of its own, looked every key up twice,
and ran a ``json.Decoder`` for every string, nested document and array it read. These patches encode a
document in one pass (``sjson_encode.go.txt``) and decode strings without escapes, nested documents and
arrays in place (``sjson_string.go.txt``). What they measured (bench/bench_ferretdb_writes.py) is in the
README, "Local stack details". Split from crmctl/ferretdb_writes.py, whose transaction patches follow these.
"""

from __future__ import annotations

from crmctl.ferretdb_writes import go_fragment as _go

# Applied after crmctl.ferretdb_patches' own and before WRITE_PATCHES: keyword arguments of its Patch.
ENCODING_PATCHES: list[dict[str, str]] = [
    dict(
        path="internal/handler/sjson/sjson.go",
        anchor="\t\"sync\"\n\t\"time\"\n\t\"unicode/utf8\"\n",
        replacement="\t\"sync\"\n\t\"sync/atomic\"\n\t\"time\"\n\t\"unicode/utf8\"\n",
        why="imports for the one-pass encoder",
    ),
    dict(
        path="internal/handler/sjson/sjson.go",
        anchor=(
            "// Marshal encodes given document fields and set its schema in the field $s.\n"
            "// Use it when you need to encode a document with schema, for example, when you want to store it in a database.\n"
            "func Marshal(d *types.Document) ([]byte, error) {\n"
        ),
        replacement=(
            _go("sjson_encode")
            + "// marshalSlow is upstream's Marshal (crm patch: renamed; Marshal above tries a one-pass encoder first).\n"
            "func marshalSlow(d *types.Document) ([]byte, error) {\n"
        ),
        why="encoding a stored document wrote every field into buffers of its own and looked every key up twice",
    ),
    dict(
        path="internal/handler/sjson/sjson.go",
        anchor="\tif v == nil {\n\t\tpanic(\"v is nil\")\n\t}\n\n\tb, err := toSJSON(v).MarshalJSON()\n",
        replacement=(
            "\tif v == nil {\n\t\tpanic(\"v is nil\")\n\t}\n\n"
            "\tif b, ok := crmAppendValue(nil, v); ok { // crm patch: see Marshal\n\t\treturn b, nil\n\t}\n\n"
            "\tb, err := toSJSON(v).MarshalJSON()\n"
        ),
        why="a single value (a WHERE argument) encoded through buffers of its own",
    ),
    dict(
        path="internal/handler/sjson/string.go",
        anchor="import (\n\t\"bytes\"\n\t\"encoding/json\"\n",
        replacement="import (\n\t\"bytes\"\n\t\"encoding/json\"\n\t\"unicode/utf8\"\n",
        why="imports for crmString",
    ),
    dict(
        path="internal/handler/sjson/string.go",
        anchor="// stringType represents BSON UTF-8 string type.\n",
        replacement=_go("sjson_string") + "// stringType represents BSON UTF-8 string type.\n",
        why="a string without escapes decoded without a json.Decoder",
    ),
    dict(
        path="internal/handler/sjson/string.go",
        anchor="\tr := bytes.NewReader(data)\n\tdec := json.NewDecoder(r)\n\n\tvar o string\n",
        replacement=(
            "\tif s, ok := crmString(data); ok { // crm patch: see crmString\n\t\t*str = stringType(s)\n\t\treturn nil\n\t}\n\n"
            "\tr := bytes.NewReader(data)\n\tdec := json.NewDecoder(r)\n\n\tvar o string\n"
        ),
        why="every string of a document read ran a json.Decoder of its own",
    ),
    dict(
        path="internal/handler/sjson/sjson.go",
        anchor=(
            "\tvar v map[string]json.RawMessage\n\tr := bytes.NewReader(data)\n\tdec := json.NewDecoder(r)\n\n"
            "\terr := dec.Decode(&v)\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n"
            "\tif err = checkConsumed(dec, r); err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n"
        ),
        replacement=(
            "\tvar v map[string]json.RawMessage\n\n"
            "\t// crm patch: one json.Unmarshal, which also refuses trailing data, instead of a Decoder that\n"
            "\t// copies the document into a buffer of its own first.\n"
            "\terr := json.Unmarshal(data, &v)\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n"
            "\tvar r *bytes.Reader\n\tvar dec *json.Decoder\n"
        ),
        why="a read document was copied into a Decoder's buffer",
    ),
    dict(
        path="internal/handler/sjson/document.go",
        anchor=(
            "\tr := bytes.NewReader(data)\n\tdec := json.NewDecoder(r)\n\n\tvar rawMessages map[string]json.RawMessage\n"
            "\tif err := dec.Decode(&rawMessages); err != nil {\n\t\treturn lazyerrors.Error(err)\n\t}\n\n\tif err := checkConsumed(dec, r); err != nil {\n\t\treturn lazyerrors.Error(err)\n\t}\n"
        ),
        replacement=(
            "\tvar rawMessages map[string]json.RawMessage\n"
            "\tif err := json.Unmarshal(data, &rawMessages); err != nil { // crm patch: as in Unmarshal\n\t\treturn lazyerrors.Error(err)\n\t}\n"
        ),
        why="a nested document was copied into a Decoder's buffer",
    ),
    dict(
        path="internal/handler/sjson/array.go",
        anchor=(
            "\tr := bytes.NewReader(data)\n\tdec := json.NewDecoder(r)\n\n\tvar rawMessages []json.RawMessage\n"
            "\tif err := dec.Decode(&rawMessages); err != nil {\n\t\treturn lazyerrors.Error(err)\n\t}\n\n\tif err := checkConsumed(dec, r); err != nil {\n\t\treturn lazyerrors.Error(err)\n\t}\n"
        ),
        replacement=(
            "\tvar rawMessages []json.RawMessage\n"
            "\tif err := json.Unmarshal(data, &rawMessages); err != nil { // crm patch: as in Unmarshal\n\t\treturn lazyerrors.Error(err)\n\t}\n"
        ),
        why="an array was copied into a Decoder's buffer",
    ),
]
