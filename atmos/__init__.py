"""atmos: an xarray-native toolkit for weather and climate emulation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("atmos")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from atmos import accessor as _accessor  # noqa: F401  (registers ds.atmos)
from atmos.errors import AtmosError
from atmos.io.open import open_dataset
from atmos.rollout import rollout  # the function; submodules stay importable as atmos.rollout.x

__all__ = ["AtmosError", "__version__", "open_dataset", "rollout"]
