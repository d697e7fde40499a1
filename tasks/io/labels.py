"""Label spellings shared by the readers of labelled data (text tables and class
folders, tabular classification targets).

Labels are typed by people. Labels that differ only in letter case or spacing
(``Positive``, ``positive``, ``pos itive``: the same :func:`label_key`) are never
trained as separate classes: with ``"refuse"`` (the default) the reader raises an error
listing each group of spellings with their counts and first place; with ``"merge"``
each group becomes one class spelled as in ``class_names`` when given, else as its most
frequent spelling (ties: the first in sorted order). Readers trim surrounding
whitespace before this rule.
"""

from __future__ import annotations

from collections.abc import Sequence

#: What to do with labels that differ only in letter case or spacing (module docstring).
LABEL_VARIANT_POLICIES = ("refuse", "merge")


def label_key(label: str) -> str:
    """What two spellings of one label share: letters case-folded, all whitespace
    removed (``" Very Good"``, ``"very good"``, ``"VeryGood"`` -> ``"verygood"``)."""
    return "".join(str(label).casefold().split())


def merge_label_variants(
    values: list[str],
    policy: str = "refuse",
    *,
    where=None,
    class_names: Sequence[str] | None = None,
    source: str = "",
    locate=None,
    unit: str = "document",
) -> tuple[list[str], dict]:
    """Apply the label-spelling rule (module docstring) to one label per document.

    Args:
        values: The (trimmed) label of each document.
        policy: ``"refuse"`` or ``"merge"``.
        where: Optional name of each document (for the error message), e.g. its path.
        class_names: Fixed class names; a variant of one of them merges into it.
        source: What the labels are, for the message (file and column).
        locate: Optional ``locate(rows) -> [str]`` naming rows (``line 7``).
        unit: What one label belongs to, for the counts (``document``, ``row``).

    Returns:
        ``(values, merged)``: the labels with variants replaced (``"merge"``), and
        ``{kept spelling: {variant: documents}}`` of what was merged (empty if nothing).

    Raises:
        ValueError: ``"refuse"`` and some labels differ only in case or spacing: one
            line listing each group's spellings with their counts and first place.
    """
    if policy not in LABEL_VARIANT_POLICIES:
        raise ValueError(
            f"`label_variants` must be one of {list(LABEL_VARIANT_POLICIES)}. Received: {policy!r}"
        )
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, v in enumerate(values):
        counts[v] = counts.get(v, 0) + 1
        first.setdefault(v, i)
    groups: dict[str, list[str]] = {}
    for v in sorted(set(counts) | set(class_names or ())):
        groups.setdefault(label_key(v), []).append(v)
    variants = {k: g for k, g in groups.items() if len(g) > 1}
    if not variants:
        return values, {}
    if policy == "refuse":

        def place(v):
            if v not in first:
                return "in `classes`"
            i = first[v]
            if locate is not None:
                return f"first at {locate([i])[0]}"
            return f"first at {where[i]}" if where is not None else f"first at row {i}"

        def documents(v):
            n = counts.get(v, 0)
            return f"{n} {unit}{'' if n == 1 else 's'}"

        listed = "; ".join(
            ", ".join(f"{v!r} ({documents(v)}, {place(v)})" for v in g) for g in variants.values()
        )
        raise ValueError(
            f"{source}: labels differ only in letter case or spacing: {listed}. Fix the "
            "spellings, or set `data.label_variants: merge` to train each group as one "
            "class"
        )
    fixed = set(class_names or ())
    canonical, merged = {}, {}
    for g in variants.values():
        in_fixed = [v for v in g if v in fixed]
        keep = in_fixed[0] if in_fixed else max(g, key=lambda v: (counts.get(v, 0), -g.index(v)))
        merged[keep] = {v: counts.get(v, 0) for v in g if v != keep}
        canonical.update({v: keep for v in g})
    return [canonical.get(v, v) for v in values], merged
