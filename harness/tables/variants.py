"""Variants defined by data (a study's rows) rather than by a registry module.

A study row such as ``{ arch = "vgg16", reductions = [{ at = 2, method = "topk", stride = 4 }] }``
becomes an ordinary registered variant in the process that reads the study, so that every
part of the harness that knows variants by name (costs, reports, plots) treats it like the
paper's. A cell's config holds the variant's architecture and keyword arguments
(``arch``, ``model``); :func:`define_from_config` registers the variant from those alone,
so a worker that never saw the study builds the same model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from harness.core.errors import UserError
from harness.store.records import jsonable
from registry import Reduction, list_variants, register_variant, variant_info

# the dataclasses a model's JSON may hold (``{"__type__": name, ...}``), rebuilt by name
_TYPES: dict[str, type] = {"Reduction": Reduction}


def define(name: str, arch: str, kwargs: Mapping[str, Any], description: str) -> None:
    """Register ``name`` unless it is registered already with the same definition; a name
    registered with another definition is refused (the records of the two would mix)."""
    if name in set(list_variants()):
        info = variant_info(name)
        if info.arch != arch or kwargs_json(info.kwargs) != kwargs_json(kwargs):
            raise UserError(
                f"variant {name!r} is already registered with another definition "
                f"({info.arch} {kwargs_json(info.kwargs)}); give the row another name"
            )
        return
    register_variant(name, arch, description=description, **kwargs)


def define_from_config(config: Mapping[str, Any]) -> None:
    """Make a cell's variant known in this process from its config (``arch`` and ``model``),
    checking that a variant registered here under that name is the same model."""
    name, arch = config["variant"], config["arch"]
    define(name, arch, decode(config["model"]), f"{arch} {kwargs_json(config['model'])}")


def decode(value: Any) -> Any:
    """The keyword arguments a config's ``model`` entry was written from (:func:`jsonable`
    in reverse): typed dicts back into their dataclasses, integer keys (positions) back
    into ints, lists into tuples. Only the dataclasses in ``_TYPES`` are ever built."""
    if isinstance(value, dict):
        if "__type__" in value:
            cls = _TYPES.get(value["__type__"])
            if cls is None:
                raise UserError(f"a cell's model holds an unknown type {value['__type__']!r}")
            names = {f.name for f in fields(cls)}
            return cls(**{k: decode(v) for k, v in value.items() if k in names})
        return {(int(k) if k.lstrip("-").isdigit() else k): decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(decode(v) for v in value)
    return value


def kwargs_json(kwargs: Mapping[str, Any]) -> str:
    """A model's keyword arguments as the text a config holds: equal text, the same model."""
    return json.dumps(jsonable(kwargs), sort_keys=True)
