"""`fast_init`: a frozen dataclass's constructor, as cheap as a plain class's.

`@dataclass(frozen=True)` generates an `__init__` that sets each field through
`object.__setattr__` (the class's own `__setattr__` refuses), about twice the cost of a plain
class's constructor. The gateway builds four frozen objects per message (`Delivery`, `Receipt`,
`Routed`, `OutRecord`: 25 fields), so this was ~2.5 us of its CPU per message (issue 16,
bench/README.md). `fast_init` replaces only `__init__`, with one that stores the fields straight
into the instance's `__dict__`, which the frozen `__setattr__` does not guard. Everything else is
the dataclass's own: assignment still raises `FrozenInstanceError`; eq, hash, repr, order and
`dataclasses.replace` are unchanged; type checkers see the plain dataclass.

    @fast_init
    @dataclass(frozen=True)
    class Receipt: ...

Raises: TypeError (at class creation) for a class it cannot take: not a frozen dataclass, slots,
or fields with `default_factory`, `init=False` or `kw_only`, or a `__post_init__`.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """`cls` (a frozen dataclass) with the cheaper `__init__`; see the module docstring."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" in vars(cls) \
            or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init: {cls.__name__} is not a frozen dataclass without slots "
                        "and __post_init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    missing = dataclasses.MISSING
    if any(not f.init or f.kw_only or f.default_factory is not missing for f in fields):
        raise TypeError(f"fast_init: {cls.__name__} has a field with default_factory, "
                        "init=False or kw_only")
    namespace = {f"_default_{f.name}": f.default for f in fields if f.default is not missing}
    args = ", ".join(f.name if f.default is missing else f"{f.name}=_default_{f.name}"
                     for f in fields)
    stores = "".join(f"\n    d[{f.name!r}] = {f.name}" for f in fields)
    exec(f"def __init__(self, {args}):\n    d = self.__dict__{stores}\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls
