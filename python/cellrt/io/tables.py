"""Columnar tables (dict of 1-D arrays) to Parquet or CSV, written atomically."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

FORMATS = ("parquet", "csv")


def concat_tables(tables: list[dict]) -> dict:
    """Row-wise concatenation; columns missing from a table are filled with NaN / ''."""
    columns: list[str] = []
    for table in tables:
        columns += [c for c in table if c not in columns]
    out = {}
    for column in columns:
        parts = []
        for table in tables:
            rows = len(next(iter(table.values()))) if table else 0
            if column in table:
                parts.append(np.asarray(table[column]))
            elif rows:
                kind = next((np.asarray(t[column]).dtype for t in tables if column in t), np.dtype(float))
                parts.append(np.full(rows, "" if kind.kind in "OUS" else np.nan,
                                     dtype=object if kind.kind in "OUS" else np.float64))
        out[column] = np.concatenate(parts) if parts else np.empty(0)
    return out


def write_table(path: Path, table: dict, table_format: str = "parquet") -> Path:
    if table_format not in FORMATS:
        raise ValueError(f"table_format should be one of {FORMATS}, got {table_format!r}")
    path = Path(path)
    if table_format == "parquet":
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        arrays = {name: pa.array(_plain(values)) for name, values in table.items()}
        with atomic_path(path) as tmp:
            pq.write_table(pa.table(arrays), tmp)
        return path
    columns = list(table)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in zip(*(_csv_cells(table[c]) for c in columns)):
            writer.writerow(row)
    return path


def read_table(path: Path, *, as_text: bool = False) -> dict:
    """A table written by write_table. CSV cells become float64 columns where every cell parses as a
    number or is empty (NaN, in a column with numbers), else text; ``as_text=True`` keeps every CSV
    cell as written (no type guessing: a numeric plate barcode or an integer id is not turned into a
    float)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        table = pq.read_table(path)
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    out = {}
    for index, name in enumerate(header):
        values = [r[index] for r in body]
        if as_text:
            out[name] = np.array(values, dtype=object)
            continue
        try:
            if not any(values):
                raise ValueError("no cell to tell the type by")
            out[name] = np.array([v if v else "nan" for v in values], dtype=np.float64)
        except ValueError:
            out[name] = np.array(values, dtype=object)
    return out


def _plain(values):
    array = np.asarray(values)
    if array.dtype.kind in "OUS":
        if _integers_with_missing(array):
            return [None if v is None else int(v) for v in array.tolist()]   # Parquet: int64 with nulls
        return [str(v) for v in array.tolist()]
    return array


def is_count(value) -> bool:
    """An integer cell (Python or numpy int, not a bool): what a column of integers with missing cells holds
    beside None."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _integers_with_missing(array: np.ndarray) -> bool:
    """An object column of integers and None (a count that some rows do not have)."""
    if array.dtype != object or not any(v is None for v in array.tolist()):
        return False
    return all(v is None or is_count(v) for v in array.tolist())


def _csv_cells(values) -> list:
    """Cells of one CSV column: missing numbers (NaN, or None in a column of integers) as empty
    cells, the convention pandas and spreadsheets read back as missing."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return ["" if v != v else str(v) for v in array]
    if _integers_with_missing(array):
        return ["" if v is None else str(int(v)) for v in array.tolist()]
    return _plain(array)
