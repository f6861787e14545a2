"""Independent reader for the end-to-end tests: does pyarrow agree with compactor?

    check_output.py OUTPUT [INPUT ...]

Reads OUTPUT fully (read_table + validate(full=True)), reads the INPUTs in order, shapes each
to OUTPUT's schema by column name (safe casts only: a lossy cast fails; missing columns become
null), and compares the concatenation with OUTPUT value by value. Prints one JSON object:
{"rows": N, "expected_rows": M, "equal": bool, "types_kept": bool or null, "schema": [...],
"detail": "..."}; types_kept is null when the inputs' schemas differ.
With no INPUT, it only reads and validates OUTPUT.
INT96 columns are read as microseconds, as compactor writes them when that is exact (a
concatenated output keeps them INT96, and is read the same way as its inputs).
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def shaped(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type, safe=True))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def same_column(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Equal values; floats compared bit for bit, so NaN equals NaN and -0.0 differs from 0.0."""
    a, b = a.combine_chunks(), b.combine_chunks()
    if a.equals(b):
        return True
    if pa.types.is_floating(a.type) and a.type == b.type:
        bits = {16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[a.type.bit_width]
        return a.is_null().equals(b.is_null()) and a.view(bits).equals(b.view(bits))
    return False


def read_output(output: str) -> pa.Table:
    """A local path, or s3://bucket/key read through pyarrow's own S3 client pointed at
    $COMPACTOR_S3_ENDPOINT with the AWS_* credentials from the environment."""
    if not output.startswith("s3://"):
        return pq.read_table(output, coerce_int96_timestamp_unit="us")
    from pyarrow import fs
    endpoint = os.environ["COMPACTOR_S3_ENDPOINT"]
    s3 = fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[1],
        scheme=endpoint.split("://", 1)[0],
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
    )
    return pq.read_table(output[len("s3://"):], filesystem=s3, coerce_int96_timestamp_unit="us")


def main() -> None:
    output, inputs = sys.argv[1], sys.argv[2:]
    out = read_output(output)
    out.validate(full=True)
    schema = out.schema.remove_metadata()
    out = out.replace_schema_metadata(None)
    if not inputs:  # only read and validate the output
        print(json.dumps({"rows": out.num_rows, "schema": [str(f) for f in out.schema]}))
        return
    tables = [pq.read_table(p, coerce_int96_timestamp_unit="us") for p in inputs]
    # Inputs of one schema must come out with exactly their types (a string stays a string,
    # not a large string or a view); inputs that differ are unified, checked by the caller.
    input_schemas = {str(t.schema.remove_metadata()) for t in tables}
    types_kept = str(schema) in input_schemas if len(input_schemas) == 1 else None
    expected = pa.concat_tables([shaped(t, schema) for t in tables])
    detail = ""
    equal = out.num_rows == expected.num_rows
    for name in schema.names if equal else []:
        if not same_column(out.column(name), expected.column(name)):
            equal = False
            detail = f"column {name} differs: {out.column(name).slice(0, 5)} vs {expected.column(name).slice(0, 5)}"
            break
    print(json.dumps({
        "rows": out.num_rows,
        "expected_rows": expected.num_rows,
        "equal": equal,
        "types_kept": types_kept,
        "schema": [f"{f.name}: {f.type}{'' if f.nullable else ' not null'}" for f in out.schema],
        "detail": detail,
    }))


if __name__ == "__main__":
    main()
