"""atmos: an xarray-native toolkit for weather and climate emulation.

``import atmos`` is light (no xarray, numpy or torch; the CLI starts in a fraction of a
second): the public names are resolved on first use (PEP 562 ``__getattr__``), and so are
the subpackages (``atmos.io``, ``atmos.grids``, ``atmos.rollout``, ...). Two things happen
as soon as the module they need is imported, whatever imports it and in whichever order:

* ``xarray``: the ``ds.atmos`` / ``da.atmos`` accessors are registered (:mod:`atmos.accessor`),
  so ``import atmos; import xarray`` and ``import xarray; import atmos`` both give ``ds.atmos``;
* ``atmos.io.open``: the catalog is installed as its name resolver, so ``open_dataset(NAME)``
  (``atmos.open_dataset``, ``atmos.io.open_dataset`` ...) resolves catalog names.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from atmos.errors import AtmosError

if TYPE_CHECKING:  # pragma: no cover
    from atmos._version import __version__
    from atmos.io.open import open_dataset, set_name_resolver

__all__ = ["AtmosError", "__version__", "open_dataset"]

#: Public names served lazily: name -> the module defining it.
_LAZY: dict[str, str] = {
    "__version__": "atmos._version",
    "open_dataset": "atmos.io.open",
    "set_name_resolver": "atmos.io.open",
}


def __getattr__(name: str) -> Any:
    """``atmos.open_dataset``, ``atmos.__version__``, ...; and ``atmos.<subpackage>`` on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:  # ``import atmos; atmos.io.compute_stats(...)`` without ``import atmos.io``
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names and the subpackages (for tab completion)."""
    import pkgutil

    subs = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return sorted({*__all__, *_LAZY, *subs, "__doc__", "__file__", "__name__", "__path__"})


# -- post-import hooks ---------------------------------------------------------------------
class _HookedLoader:  # duck-typed (importlib.abc would import importlib.resources: +13 ms)
    """The module's own loader, plus a callback once the module has been executed."""

    def __init__(self, loader: Any, after: Callable[[ModuleType], None]) -> None:
        self._loader, self._after = loader, after

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module gets its real loader back before its code runs: importlib.resources,
        # inspect, linecache and pickle see exactly what a plain import gives them.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _PostImportHooks:  # a sys.meta_path finder (duck-typed, like _HookedLoader)
    """Run a callback right after a module's first successful import; leaves ``sys.meta_path`` when done.

    It finds nothing itself: for a watched name it asks the other finders and wraps the loader of
    the spec they return, so the module is imported exactly as without it. A failed import keeps
    the callback for the next try.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, Callable[[ModuleType], None]] = {}
        self._lock = threading.RLock()

    def watch(self, name: str, hook: Callable[[ModuleType], None]) -> None:
        with self._lock:
            module = sys.modules.get(name)
            if module is not None:  # already imported (e.g. ``import xarray`` before ``import atmos``)
                hook(module)
                return
            self._hooks[name] = hook
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        hook = self._hooks.get(fullname)
        if hook is None:
            return None
        for finder in list(sys.meta_path):
            find = None if finder is self else getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # a namespace package or a legacy loader: imported without the hook
        spec.loader = _HookedLoader(spec.loader, lambda module: self._done(fullname, module))
        return spec

    def _done(self, name: str, module: ModuleType) -> None:
        with self._lock:
            hook = self._hooks.pop(name, None)
            if not self._hooks and self in sys.meta_path:
                sys.meta_path.remove(self)
        if hook is not None:
            hook(module)


def _register_accessor(xarray: ModuleType) -> None:
    """``ds.atmos`` / ``da.atmos`` (:mod:`atmos.accessor`), once xarray is there."""
    del xarray
    try:
        import atmos.accessor  # noqa: F401
    except Exception as err:  # never break the user's ``import xarray``  # pragma: no cover
        warnings.warn(
            f"atmos could not register the xarray accessor ds.atmos ({type(err).__name__}: {err}); "
            "`import atmos.accessor` shows the full error.",
            RuntimeWarning,
            stacklevel=2,
        )


def _install_name_resolver(io_open: ModuleType) -> None:
    """The catalog resolves dataset names for ``open_dataset`` (atmos.io does not know the catalog)."""
    from atmos import catalog

    io_open.set_name_resolver(io_open.NameResolver(catalog.lookup, catalog.entry_names))
    if "atmos.accessor" not in sys.modules:  # xarray came in past the hook (another finder before it)
        _register_accessor(io_open)


_post_import = _PostImportHooks()
_post_import.watch("atmos.io.open", _install_name_resolver)
_post_import.watch("xarray", _register_accessor)
