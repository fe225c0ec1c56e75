"""gateway.frozen.fast_init: the cheaper constructor leaves a frozen dataclass what it was."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from gateway.frozen import fast_init
from gateway.records import OutRecord, Receipt
from gateway.router import Routed
from gateway.source import Delivery


@dataclasses.dataclass(frozen=True)
class Plain:
    a: str
    b: int = 2
    c: tuple[int, ...] = ()


@fast_init
@dataclasses.dataclass(frozen=True)
class Fast:
    a: str
    b: int = 2
    c: tuple[int, ...] = ()


@pytest.mark.parametrize(("args", "kwargs"), [(("x",), {}), (("x", 3), {"c": (1,)}),
                                              ((), {"a": "y", "b": 5})])
def test_it_builds_what_the_dataclass_builds(args: tuple, kwargs: dict) -> None:
    plain, fast = Plain(*args, **kwargs), Fast(*args, **kwargs)
    assert dataclasses.astuple(plain) == dataclasses.astuple(fast)
    assert repr(fast) == repr(plain).replace("Plain", "Fast")
    assert fast == Fast(*args, **kwargs) and hash(fast) == hash(Fast(*args, **kwargs))
    assert dataclasses.replace(fast, b=9).b == 9


def test_it_stays_frozen_and_checks_its_arguments() -> None:
    fast = Fast("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("x", d=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [OutRecord, Receipt, Routed, Delivery])
def test_the_hot_path_classes_keep_their_dataclass_signature(cls: type) -> None:
    plain = dataclasses.dataclass(frozen=True)(type(cls.__name__, (), {
        "__annotations__": {f.name: f.type for f in dataclasses.fields(cls)},
        **{f.name: f.default for f in dataclasses.fields(cls)
           if f.default is not dataclasses.MISSING}}))
    ours = inspect.signature(cls.__init__)
    assert [(p.name, p.default) for p in ours.parameters.values()] == \
        [(p.name, p.default) for p in inspect.signature(plain.__init__).parameters.values()]


@pytest.mark.parametrize("make", [
    lambda: dataclasses.dataclass(type("Open", (), {"__annotations__": {"a": int}})),
    lambda: dataclasses.dataclass(frozen=True)(type("Factory", (), {
        "__annotations__": {"a": list}, "a": dataclasses.field(default_factory=list)})),
    lambda: dataclasses.dataclass(frozen=True, slots=True)(type("Slots", (), {
        "__annotations__": {"a": int}})),
])
def test_classes_it_cannot_take_are_refused(make) -> None:
    with pytest.raises(TypeError, match="fast_init"):
        fast_init(make())
