"""Bridges between atmos and other weather-AI frameworks (optional extras).

* :mod:`atmos.interop.earth2studio` — any atmos checkpoint as an earth2studio prognostic
  model (:class:`~atmos.interop.earth2studio.AtmosPrognostic`, usable with
  ``earth2studio.run.deterministic``), and earth2studio data sources as atmos initial
  conditions (:func:`~atmos.interop.earth2studio.dataset_from_source`). Needs
  ``pip install "atmos[earth2studio]"``.

Nothing is imported here: importing :mod:`atmos.interop` loads neither torch nor the
frameworks it bridges to. Nothing else in atmos (the CLI aside) imports this package.
"""

__all__: list[str] = []
