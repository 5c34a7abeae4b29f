"""atmos: an xarray-native toolkit for weather and climate emulation."""

from atmos._version import __version__
from atmos import accessor as _accessor  # noqa: F401  (registers ds.atmos)
from atmos import catalog as _catalog
from atmos.errors import AtmosError
from atmos.io.open import NameResolver as _NameResolver
from atmos.io.open import open_dataset, set_name_resolver

# atmos.io opens paths and URLs; catalog names resolve through the catalog, which sits above io.
set_name_resolver(_NameResolver(_catalog.lookup, _catalog.entry_names))

# ``atmos.rollout`` is the subpackage (``from atmos.rollout import rollout`` for the function); it and
# everything that needs torch are imported on first use, so ``import atmos`` stays light.
__all__ = ["AtmosError", "__version__", "open_dataset"]
