"""Spectral normalization switch for any atmos model (CREDIT/WXFormer style).

:func:`apply_spectral_norm` wraps the ``weight`` of every ``nn.Linear``,
``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d`` (the ViT patch embedding is a
``Conv2d`` and is included) with
:func:`torch.nn.utils.parametrizations.spectral_norm`. The effective weight is
``W / sigma(W)`` where ``sigma`` is the largest singular value of ``W`` reshaped to
a matrix, estimated by power iteration (one iteration per training forward pass;
15 at wrapping time):

* ``Linear``: ``W`` is ``[out, in]``;
* ``ConvNd``: ``W`` ``[out, in, *k]`` is reshaped to ``[out, in * prod(k)]``;
* ``ConvTransposeNd``: ``W`` ``[in, out, *k]`` is reshaped (``dim=1``) to
  ``[out, in * prod(k)]``.

So the bound is on that matrix, not on the operator norm of the convolution
itself (which can be up to ``sqrt(prod(k))`` times larger). In eval mode no power
iteration runs and the last estimate is used.

:func:`remove_spectral_norm` folds the normalization into a plain ``weight``
(evaluated without a further power iteration), so that a model trained with the
switch runs and exports without parametrizations and gives identical eval outputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "SPECTRAL_NORM_TYPES",
    "apply_spectral_norm",
    "has_spectral_norm",
    "remove_spectral_norm",
    "spectral_norm_layers",
]

#: Module types whose ``weight`` is normalized.
SPECTRAL_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def _is_sn(p: nn.Module) -> bool:
    return type(p).__name__ == "_SpectralNorm"


def _sn_param(module: nn.Module) -> nn.Module | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if _is_sn(p):
            return p
    return None


def spectral_norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every layer whose weight is spectrally normalized."""
    return [(name, m) for name, m in model.named_modules() if _sn_param(m) is not None]


def has_spectral_norm(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is spectrally normalized."""
    return bool(spectral_norm_layers(model))


def apply_spectral_norm(model: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Wrap every Linear/Conv/ConvTranspose weight of ``model`` in place.

    Parameters
    ----------
    model : nn.Module
    n_power_iterations : int
        Power iterations per training forward pass.
    eps : float
        Numerical floor of the power-iteration normalisation.

    Returns
    -------
    nn.Module
        ``model`` itself. Layers already normalized are left as they are.
    """
    for module in list(model.modules()):
        if isinstance(module, SPECTRAL_NORM_TYPES) and _sn_param(module) is None:
            if getattr(module, "weight", None) is None:
                continue
            spectral_norm(module, n_power_iterations=n_power_iterations, eps=eps)
    return model


@torch.no_grad()
def remove_spectral_norm(model: nn.Module) -> nn.Module:
    """Fold spectral normalization into plain weights, in place.

    Each wrapped layer's ``weight`` becomes an ordinary parameter equal to the
    normalized weight as evaluated in eval mode (current ``u``, ``v`` estimates, no
    extra power iteration), so eval-mode outputs are unchanged.

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    for _, module in spectral_norm_layers(model):
        sn = _sn_param(module)
        was_training = sn.training
        sn.eval()
        try:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        finally:
            sn.train(was_training)
    return model
