"""The ports themselves: `Store` is exactly their union, and both backends implement every
port method with the port's own signature (a port that drifted from a backend fails here,
before any flow typed against it does)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from gateway.store.ports import PORTS, Store, WorkSignal
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

BACKENDS = [SqliteStore, PostgresStore]


def methods(port: type[Any]) -> dict[str, Callable[..., Any]]:
    """The methods a port declares itself (not those it inherits from other ports)."""
    return {name: fn for name, fn in vars(port).items() if inspect.isfunction(fn) and not name.startswith("_")}


def test_store_is_exactly_the_union_of_the_ports_and_no_verb_sits_in_two() -> None:
    names = [name for port in PORTS for name in methods(port)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    declared = {name for cls in Store.__mro__ if cls is not Store for name in methods(cls)} | set(methods(Store))
    assert declared == set(names)
    assert set(PORTS) == {base for base in Store.__bases__ if base.__name__ != "Protocol"}


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("port", [*PORTS, WorkSignal], ids=lambda p: p.__name__)
def test_each_backend_implements_each_port_with_its_signature(backend: type[Any], port: type[Any]) -> None:
    if port is WorkSignal and backend is SqliteStore:
        assert not hasattr(backend, "wait_for_work")  # optional: a single process has no signal
        return
    for name, want in methods(port).items():
        got = getattr(backend, name, None)
        assert got is not None, f"{backend.__name__} lacks {port.__name__}.{name}"
        assert inspect.iscoroutinefunction(got), f"{backend.__name__}.{name} is not async"
        assert _shape(got) == _shape(want), f"{backend.__name__}.{name} differs from {port.__name__}.{name}"


def _shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, str]]:
    """Names, kinds, defaults and (textual) annotations of the parameters, plus the return."""
    sig = inspect.signature(fn)
    params = [(p.name, p.kind, p.default, " ".join(str(p.annotation).split())) for p in sig.parameters.values()]
    return [*params, ("return", None, None, " ".join(str(sig.return_annotation).split()))]
