"""atmos: an xarray-native toolkit for weather and climate emulation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("atmos")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from atmos import accessor as _accessor  # noqa: F401  (registers ds.atmos)
from atmos.errors import AtmosError
from atmos.io.open import open_dataset

# ``atmos.rollout`` is the subpackage (``from atmos.rollout import rollout`` for the function); it and
# everything that needs torch are imported on first use, so ``import atmos`` stays light.
__all__ = ["AtmosError", "__version__", "open_dataset"]
