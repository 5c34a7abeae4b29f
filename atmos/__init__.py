"""atmos: an xarray-native toolkit for weather and climate emulation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("atmos")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from atmos.errors import AtmosError

__all__ = ["AtmosError", "__version__"]
