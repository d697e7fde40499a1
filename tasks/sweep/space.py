"""Search spaces as data (see :mod:`dlpipe.models.spaces`) translated to Hyperopt.

* :func:`validate_space` checks a space and folds one-value ranges into constants
  (shared case C12: ``randint(1, 2)`` crashes Ray's HyperOptSearch at construction).
* :func:`to_hyperopt` builds the Hyperopt expression; every label is derived from the
  path of its key (``gru/units``, ``gru/regularization/1/dropout``), so labels are
  unique and readable in Hyperopt's trials.
* :func:`sweep_space` puts several families under one ``family`` choice (a conditional
  space, Bergstra et al. 2013, "Making a science of model search").
* :func:`decode` turns a sampled configuration into ``(family, hp)``: nested groups
  merged, values as sampled (the type conversion to Python int/float happens once, at
  the model boundary: :func:`dlpipe.models.hparams.coerce_hparams`, case C09). Choices
  come back as their values, never as indices (case C10).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

LEAF_ARITY = {
    "choice": None,
    "uniform": 2,
    "quniform": 3,
    "loguniform": 2,
    "qloguniform": 3,
    "normal": 2,
    "randint": 2,
}


class SpaceError(ValueError):
    """A search space is malformed; the message names the path of the bad entry."""


def is_leaf(node) -> bool:
    """A one-key mapping naming a distribution, e.g. ``{"uniform": [0, 1]}``."""
    return isinstance(node, Mapping) and len(node) == 1 and next(iter(node)) in LEAF_ARITY


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(f"`{where}` must hold finite numbers. Received: {value!r}")
    return value


def validate_space(space: Mapping, where: str = "space") -> dict:
    """Check a space and return it with one-value ranges folded into constants (C12).

    Args:
        space: mapping of hyperparameter names to constants, leaves or groups.
        where: dotted path used in error messages.

    Returns:
        A new space, same structure, where ``uniform [a, a]``, ``quniform [a, a, q]``,
        ``randint [a, a+1]``, ``normal [mu, 0]`` and ``choice [x]`` became constants.

    Raises:
        SpaceError: wrong arity, non-numeric bounds, ``lo > hi``, ``loguniform`` bounds
            <= 0, ``q <= 0``, an empty choice, or a non-string key.
    """
    if not isinstance(space, Mapping):
        raise SpaceError(f"`{where}` must be a mapping of hyperparameters. Received: {space!r}")
    out = {}
    for key, node in space.items():
        if not isinstance(key, str):
            raise SpaceError(f"`{where}` keys must be strings. Received: {key!r}")
        out[key] = _validate_node(node, f"{where}.{key}")
    return out


def _validate_node(node, where: str):
    if is_leaf(node):
        kind, args = next(iter(node.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise SpaceError(f"`{where}.choice` must be a non-empty list. Received: {args!r}")
            options = [
                validate_space(o, f"{where}.choice[{i}]")
                if isinstance(o, Mapping) and not is_leaf(o)
                else o
                for i, o in enumerate(args)
            ]
            return options[0] if len(options) == 1 else {"choice": options}
        if not isinstance(args, list) or len(args) != LEAF_ARITY[kind]:
            raise SpaceError(
                f"`{where}.{kind}` takes {LEAF_ARITY[kind]} numbers. Received: {args!r}"
            )
        nums = [_number(a, f"{where}.{kind}") for a in args]
        if kind == "normal":
            if nums[1] < 0:
                raise SpaceError(f"`{where}.normal` sigma must be >= 0. Received: {nums[1]}")
            return nums[0] if nums[1] == 0 else {kind: nums}
        lo, hi = nums[0], nums[1]
        if lo > hi and kind != "randint":
            raise SpaceError(f"`{where}.{kind}` needs low <= high. Received: {args!r}")
        if kind in ("loguniform", "qloguniform") and lo <= 0:
            raise SpaceError(
                f"`{where}.{kind}` bounds must be > 0 (they are values, not "
                f"logs). Received: {args!r}"
            )
        if kind in ("quniform", "qloguniform") and nums[2] <= 0:
            raise SpaceError(f"`{where}.{kind}` step q must be > 0. Received: {args!r}")
        if kind == "randint":
            if not all(isinstance(a, int) for a in args) or hi <= lo:
                raise SpaceError(
                    f"`{where}.randint` needs integers low < high (high "
                    f"excluded: randint [a, a+1] is the constant a). "
                    f"Received: {args!r}"
                )
            return lo if hi == lo + 1 else {kind: nums}
        if lo == hi:
            return lo
        return {kind: nums}
    if isinstance(node, Mapping):
        if len(node) == 1 and isinstance(next(iter(node.values())), list):
            key = next(iter(node))
            raise SpaceError(
                f"`{where}`: unknown distribution `{key}` (known: {', '.join(LEAF_ARITY)})"
            )
        return validate_space(node, where)
    if isinstance(node, list):
        raise SpaceError(
            f"`{where}`: a list must be wrapped in a distribution, e.g. {{choice: {node!r}}}"
        )
    return node


def is_constant(space: Mapping) -> bool:
    """True when a validated space has no distribution left (a single configuration)."""
    return not any(
        is_leaf(node) or (isinstance(node, Mapping) and not is_constant(node))
        for node in space.values()
    )


def to_hyperopt(space: Mapping, prefix: str):
    """Translate a validated space into a Hyperopt expression (nested dict of ``hp.*``).

    Labels are ``<prefix>/<key>`` (and ``<label>/<i>/...`` inside choice option ``i``).
    """
    from hyperopt import hp

    def node_expr(node, label):
        if not is_leaf(node):
            if isinstance(node, Mapping):
                return {k: node_expr(v, f"{label}/{k}") for k, v in node.items()}
            return node
        kind, args = next(iter(node.items()))
        if kind == "choice":
            return hp.choice(
                label,
                [
                    node_expr(o, f"{label}/{i}") if isinstance(o, Mapping) else o
                    for i, o in enumerate(args)
                ],
            )
        if kind == "uniform":
            return hp.uniform(label, *args)
        if kind == "quniform":
            return hp.quniform(label, *args)
        if kind == "loguniform":
            return hp.loguniform(label, math.log(args[0]), math.log(args[1]))
        if kind == "qloguniform":
            return hp.qloguniform(label, math.log(args[0]), math.log(args[1]), args[2])
        if kind == "normal":
            return hp.normal(label, *args)
        return hp.randint(label, int(args[0]), int(args[1]))

    return {k: node_expr(v, f"{prefix}/{k}") for k, v in space.items()}


def sweep_space(spaces: Mapping[str, Mapping]) -> dict:
    """The Hyperopt space of a sweep over one or several families.

    Args:
        spaces: family name -> validated space.

    Returns:
        ``{"model": {"family": name, "hp": expr}}`` for one family, or
        ``{"model": hp.choice("family", [...])}`` over several.
    """
    from hyperopt import hp

    options = [{"family": name, "hp": to_hyperopt(space, name)} for name, space in spaces.items()]
    return {"model": options[0] if len(options) == 1 else hp.choice("family", options)}


def flatten_hp(tree: Mapping, where: str = "hp") -> dict:
    """Merge nested groups (and chosen sub-spaces) into one flat hyperparameter dict.

    Raises:
        SpaceError: the same hyperparameter is set at two places.
    """
    flat: dict = {}
    for key, value in tree.items():
        items = (
            flatten_hp(value, f"{where}.{key}").items()
            if isinstance(value, Mapping)
            else [(key, value)]
        )
        for k, v in items:
            if k in flat:
                raise SpaceError(f"hyperparameter `{k}` is set twice in the space ({where})")
            flat[k] = v
    return flat


def decode(config: Mapping) -> tuple[str, dict]:
    """A sampled sweep configuration -> ``(family, flat hp)`` (values, not indices)."""
    model = config["model"]
    return model["family"], flatten_hp(model["hp"])


def warm_start_point(spaces: Mapping[str, Mapping], point: Mapping) -> dict:
    """A user's warm-start configuration as Hyperopt label values (choice = index).

    Args:
        spaces: family -> validated space (as given to :func:`sweep_space`).
        point: ``{"family": name, <hp>: value, ...}``; every searched hyperparameter
            of that family's space must be given (constants may be left out).

    Returns:
        ``{label: value}`` for Ray's ``HyperOptSearch(points_to_evaluate=[...])``.

    Raises:
        SpaceError: unknown family, a searched hyperparameter missing, or a value that
            is not among a choice's options.
    """
    family = point.get("family")
    if family not in spaces:
        raise SpaceError(f"warm start `family` must be one of {list(spaces)}. Received: {family!r}")
    values = {k: v for k, v in point.items() if k != "family"}
    out: dict = {}
    if len(spaces) > 1:
        out["family"] = list(spaces).index(family)

    def walk(space, label):
        for key, node in space.items():
            sub = f"{label}/{key}"
            if is_leaf(node):
                kind, args = next(iter(node.items()))
                if kind == "choice" and any(isinstance(o, Mapping) for o in args):
                    index = _matching_option(args, values, sub)
                    out[sub] = index
                    walk(args[index], f"{sub}/{index}")
                    continue
                if key not in values:
                    raise SpaceError(f"warm start for `{family}` must give `{key}`")
                if kind == "choice":
                    if values[key] not in args:
                        raise SpaceError(f"warm start `{key}`={values[key]!r} is not one of {args}")
                    out[sub] = args.index(values[key])
                else:
                    out[sub] = values[key]
            elif isinstance(node, Mapping):
                walk(node, sub)

    walk(spaces[family], family)
    return out


def _matching_option(options, values: Mapping, where: str) -> int:
    """Index of the first choice option whose constants agree with ``values`` and
    whose searched keys are all given."""
    for i, option in enumerate(options):
        if not isinstance(option, Mapping):
            continue
        flat = flatten_hp({k: v for k, v in option.items() if not is_leaf(v)})
        searched = [k for k, v in option.items() if is_leaf(v)]
        if all(values.get(k, object()) == v for k, v in flat.items()) and all(
            k in values for k in searched
        ):
            return i
    raise SpaceError(f"warm start matches no option of `{where}`; options: {options}")
