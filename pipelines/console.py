"""Tables on the console (rich), as every command prints them."""

from __future__ import annotations

import math

#: columns printed whole, whatever the console width (ids people copy)
WHOLE_COLUMNS = ("run_id", "best run_id")


def print_frame(frame, title: str) -> None:
    """Print a DataFrame as a rich table (floats to 4 significant digits; a missing or
    undefined value, such as a change against a baseline of 0, as ``n/a``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in frame.columns:
        text = frame[col].dtype == object or str(frame[col].dtype).startswith("string")
        whole = col in WHOLE_COLUMNS  # never wrapped or cut: other columns give way
        width = max([len(str(col))] + [len(cell(v)) for v in frame[col]]) if whole else None
        table.add_column(
            str(col), justify="left" if text else "right", no_wrap=whole, min_width=width
        )
    for row in frame.itertuples(index=False):
        table.add_row(*[cell(v) for v in row])
    Console(width=160).print(table)


def cell(value) -> str:
    """One table cell: None blank, a missing number (NaN, pandas ``NA``) ``n/a``."""
    import pandas as pd

    if value is None:
        return ""
    if value is pd.NA:
        return "n/a"
    return number(value) if isinstance(value, float) else str(value)


def number(value: float) -> str:
    """A float to 4 significant digits; NaN (e.g. a ratio against 0: C22) as ``n/a``."""
    return "n/a" if math.isnan(value) else f"{value:.4g}"
