"""The HTML study report's rendering (issue 16): one self-contained page from the
Jinja2 template ``templates/study.html.j2`` (package data), images inline as base64
data URIs, sorting by a few lines of inline JavaScript; nothing fetched from a network.

What goes on the page is gathered by :mod:`dlpipe.pipelines.html_report`; this module
only turns tables and images into the template's values and renders it.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

from dlpipe.tasks.reports.tables import atomic_write_bytes

TEMPLATE = "study.html.j2"


def image_uri(path: str | Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI (the page needs no other file)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def table_cell(value, text: str) -> dict:
    """One cell: ``text`` shown, ``value`` sorted on (a number's repr, ``""`` for a
    missing number, else the text), ``cls`` right-aligned for numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {"text": text, "value": text, "cls": ""}
    number = float(value)
    return {"text": text, "value": repr(number) if math.isfinite(number) else "", "cls": "num"}


def html_table(
    table_id: str,
    heading: str,
    frame,
    texts: list[list[str]],
    *,
    best: dict | None = None,
    row_classes: list[str] | None = None,
    id_columns: tuple = ("run_id",),
    note: str = "",
    errors: list[dict] | None = None,
) -> dict:
    """A sortable table for the template.

    Args:
        table_id: the HTML ``id`` of the ``<table>``.
        heading: its section title.
        frame: the DataFrame (its values are what columns sort on).
        texts: the shown text of every cell, row by row (as the console prints them).
        best: ``{column: "min" | "max"}``: the direction of the first click's sort.
        row_classes: a CSS class per row (``baseline``, ``failed``).
        id_columns: columns shown whole, unwrapped, in a monospace font.
        note: a line under the heading.
        errors: ``[{"run_id", "error"}]`` shown in full under the table.
    """
    best = best or {}
    columns = [{"name": str(c), "best": best.get(c, "")} for c in frame.columns]
    rows = []
    for i, (values, shown) in enumerate(zip(frame.itertuples(index=False), texts)):
        cells = [table_cell(v, t) for v, t in zip(values, shown)]
        for cell, col in zip(cells, frame.columns):
            if col in id_columns:
                cell["cls"] = "id"
        rows.append({"cells": cells, "cls": row_classes[i] if row_classes else ""})
    return {
        "id": table_id,
        "heading": heading,
        "columns": columns,
        "rows": rows,
        "note": note,
        "errors": errors or [],
    }


def render_page(context: dict) -> str:
    """The page's HTML from the template.

    Args:
        context: ``title``; ``header`` and ``dataset`` (lists of ``(name, text)``);
            ``tables`` (:func:`html_table` values); ``figures`` (``{"uri", "caption"}``);
            ``footer``.
    """
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dlpipe.tasks.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE).render(**context)


def write_page(path: str | Path, context: dict) -> Path:
    """Render the page and write it atomically. Returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render_page(context).encode("utf-8"))
    return path
