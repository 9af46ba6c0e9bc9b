"""The one registry that maps ONNX op types to their implementation per backend.

Tests and benchmarks iterate over it, so a new op or kernel variant is tested and
benchmarked without anyone remembering to. An op module registers its class with
``@register``; the C backend (when built) adds the op codes it implements.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from .errors import UnsupportedOpError

T = TypeVar("T")

#: op type -> backend name -> implementation (an OpImpl subclass for "numba")
REGISTRY: dict[str, dict[str, object]] = {}
#: ops that aipnet itself writes into packed graphs (never found in ONNX files); they are
#: tested by their technique's tests (tests/test_aip.py), not by the ONNX case list
PRIVATE_OPS = frozenset({"AipFC"})


def register(op: str, backend: str = "numba") -> Callable[[T], T]:
    """Class decorator: make ``cls`` the ``backend`` implementation of ``op``."""

    def deco(cls: T) -> T:
        REGISTRY.setdefault(op, {})[backend] = cls
        if backend == "numba":
            cls.op = op  # type: ignore[attr-defined]
        return cls

    return deco


def supported_ops(backend: str = "numba") -> list[str]:
    """Sorted op types that ``backend`` implements."""
    _load_ops()
    return sorted(op for op, impls in REGISTRY.items() if backend in impls)


def lookup(op: str, backend: str = "numba", node_name: str = "") -> object:
    """The implementation of ``op`` for ``backend``, or an error naming the op and node."""
    _load_ops()
    impls = REGISTRY.get(op, {})
    if backend not in impls:
        where = f" in node {node_name!r}" if node_name else ""
        raise UnsupportedOpError(
            f"unsupported op {op!r}{where} for backend {backend!r}; supported ops: "
            + ", ".join(supported_ops(backend))
        )
    return impls[backend]


def _load_ops() -> None:
    from . import ops  # noqa: F401  (registers every op on import)
