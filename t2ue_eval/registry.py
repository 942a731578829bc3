"""Every protection method of the evaluator by name, and the spec parser: ``name`` or
``name:key=value,key=value`` (``t2ue:mode=class,model=runs/x/model``).

One explicit table: a new method is added here, not registered by importing its module.
"""

from __future__ import annotations

from t2ue_eval.baselines import ConvolutionalUnlearnable, ErrorMinimising, MultimodalErrorMinimising, SparseLocalMask
from t2ue_eval.methods import NoProtection, T2UEClusterNoise, T2UENoise, TextCode, UniformNoise, UnlearnableClusters
from t2ue_eval.protection import ProtectionMethod

METHODS: dict[str, type[ProtectionMethod]] = {method.name: method for method in (
    NoProtection, UniformNoise, T2UENoise, TextCode, T2UEClusterNoise, UnlearnableClusters,
    ErrorMinimising, SparseLocalMask, MultimodalErrorMinimising, ConvolutionalUnlearnable,
)}


def parse_method(spec: str) -> ProtectionMethod:
    """``name`` or ``name:key=value,key=value`` to a method instance."""
    name, _, args = spec.partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown protection method {name!r}; known: {', '.join(sorted(METHODS))}")
    params = {}
    for item in filter(None, args.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"method parameter {item!r} in {spec!r} is not key=value")
        params[key.strip()] = value.strip()
    return METHODS[name](**params)
