"""Recurrent U-Net on HEALPix faces (DLWP-HPX, Karlbauer et al. 2024).

The 12 HEALPix base faces are folded into the batch (``[B*12, C, n, n]``) so that
plain ``Conv2d`` runs on each face; every convolution with a kernel larger than 1
is preceded by a HEALPix halo padding (:class:`atmos.models.layers.FoldedHealpixPad`,
reusing :mod:`atmos.grids.padding`) and uses ``padding=0``.

Architecture (defaults = DLWP-HPX)::

    encoder level i (i = 0..L-1):  [AvgPool2d(2) if i > 0] -> ConvNeXt(prev -> c_i, dilation d_i)
    decoder, coarse to fine (j = L-1..0):
        [act(ConvTranspose2d(c_j -> c_j, 2, stride 2)), concat skip of encoder level j  if j < L-1]
        -> ConvNeXt(-> c_{j-1} (c_0 at j = 0), latent c_j, dilation d_j)
        -> ConvGRU (1x1 convs): x + h', h' carried to the next call as state
    1x1 Conv2d -> residual of the prognostic channels

with ``c = channels = [136, 68, 34]`` (wide at fine resolution), ``d = [1, 2, 4]``,
ConvNeXt = ``skip + 1x1(act(kxk(act(kxk(x)))))`` with ``4 x`` latent width and GELU
capped at 10.

Differences from the reference
------------------------------
The reference (PhysicsNeMo ``HEALPixRecUNet``) maps 2 input steps to 2 output steps
per call and folds inputs as ``input_time_dim * (prognostic + insolation) + constants``
(18 channels for 7 variables). Here one call predicts one step from ``history`` steps,
and the forcings are also given at the target step, so the default model has
``2*7 + 3*1 + 2 = 19`` input and 7 output channels instead of 18 and 14: 9,826,891
parameters vs the reference's 9,822,818 (+0.04 %). Warm-up ("presteps") and the
24 h GRU reset are done by the caller: run a call on an earlier window and discard
its output, pass ``state=None`` to reset.

Symmetry
--------
Turning the globe by 90 degrees about the polar axis maps face ``f`` onto face
``4*(f//4) + (f+1)%4`` with the face-local arrays in the same orientation, so it is a
pure permutation of the face axis. The HEALPix padding commutes with that
permutation and every convolution is applied identically to each face, so the model
is exactly equivariant to it (output and GRU state permute with the input; checked
to 0 error in float64 in the tests). It is not equivariant to the other symmetries
of the grid (north-south reflection, rotations that change the face-local
orientation): the learned kernels have no symmetry of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from atmos.errors import ConfigError, DataError
from atmos.models.base import LatentForward
from atmos.models.layers import CappedGELU, ConvGRU, HpxConvNeXtBlock, assemble_inputs
from atmos.models.schema import ChannelConfig, ChannelSchema, check_int

__all__ = ["UNetGRU", "UNetGRUConfig"]

State = tuple[torch.Tensor, ...]


@dataclass
class UNetGRUConfig(ChannelConfig):
    """Configuration of :class:`UNetGRU` (JSON-safe through ``dataclasses.asdict``).

    Parameters
    ----------
    inputs, outputs, forcings, statics, history
        Channel schema; defaults are DLWP-HPX's 7 prognostic variables, TOA
        insolation, land-sea mask and orography, 2 input steps.
    nside : int
        HEALPix resolution of the data (64 in DLWP-HPX, ~110 km).
    channels : list of int
        Channels per U-Net level, fine to coarse (``[136, 68, 34]``).
    dilations : list of int
        Dilation of the ConvNeXt convolutions per level, fine to coarse (``[1, 2, 4]``);
        the decoder uses the same dilation at the same level.
    kernel_size : int
        Kernel of the ConvNeXt convolutions (odd).
    upscale_factor : int
        Latent width of the ConvNeXt blocks relative to the level's channels.
    activation_cap : float
        Cap of the capped GELU.
    recurrent : bool
        Use the ConvGRU at each decoder level (``False``: plain U-Net, state ``None``).
    spectral_norm : bool
        Wrap every Conv/ConvTranspose with spectral normalization.
    """

    nside: int = 64
    channels: list[int] = field(default_factory=lambda: [136, 68, 34])
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    kernel_size: int = 3
    upscale_factor: int = 4
    activation_cap: float = 10.0
    recurrent: bool = True
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        check_int("nside", self.nside)
        check_int("history", self.history)
        check_int("kernel_size", self.kernel_size)
        check_int("upscale_factor", self.upscale_factor)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (centred HEALPix padding), got {self.kernel_size}.")
        self.channels = [check_int("channels", c) for c in self.channels]
        self.dilations = [check_int("dilations", d) for d in self.dilations]
        levels = len(self.channels)
        if levels < 1 or len(self.dilations) != levels:
            raise ConfigError(
                f"channels {self.channels} and dilations {self.dilations} must be non-empty lists of the "
                "same length (one entry per U-Net level, fine to coarse)."
            )
        if self.nside & (self.nside - 1):
            raise ConfigError(f"nside must be a power of two, got {self.nside}.")
        for lvl, d in enumerate(self.dilations):
            n = self.nside >> lvl
            pad = (self.kernel_size - 1) // 2 * d
            if n < 1 or (self.nside % (1 << lvl)):
                raise ConfigError(
                    f"nside={self.nside} is too small for {levels} U-Net levels (level {lvl} would have "
                    f"faces of {self.nside / (1 << lvl)} pixels). Use fewer levels or a larger nside."
                )
            if pad > n:
                half = max(1, (self.kernel_size - 1) // 2)
                limits = [max(1, (self.nside >> i) // half) for i in range(levels)]
                raise ConfigError(
                    f"level {lvl} has {n}x{n} faces but dilation {d} with kernel {self.kernel_size} needs a "
                    f"HEALPix halo of {pad} > {n} pixels. With nside={self.nside} the dilations can be at "
                    f"most {limits} (fine to coarse); use smaller dilations or a larger nside."
                )

    def grid_dict(self) -> dict[str, Any]:
        return {"type": "healpix", "nside": self.nside, "layout": "faces"}

    @classmethod
    def grid_params(cls, grid: Mapping[str, Any]) -> dict[str, Any]:
        """``nside`` of a HEALPix grid (``{}`` for any other grid)."""
        return {"nside": int(grid["nside"])} if grid.get("type") == "healpix" else {}


class _DecoderLevel(nn.Module):
    def __init__(self, up: nn.Module | None, block: nn.Module, gru: nn.Module | None) -> None:
        super().__init__()
        self.up = up
        self.block = block
        self.gru = gru


class UNetGRU(LatentForward):
    """DLWP-HPX recurrent U-Net predicting the one-step residual on HEALPix faces.

    Parameters
    ----------
    config : UNetGRUConfig, optional
        Defaults to ``UNetGRUConfig()`` (nside 64, 9.83 M parameters).

    Attributes
    ----------
    schema : ChannelSchema
    config : UNetGRUConfig

    Forward
    -------
    inputs : [B, history, len(schema.inputs), 12, nside, nside]
    forcings : [B, history + 1, len(schema.forcings), 12, nside, nside] or None
    statics : [C_s, 12, nside, nside], [B, C_s, 12, nside, nside] or [B, 1, C_s, 12, nside, nside]
    state : tuple of tensors or None
        GRU hidden states returned by the previous call (``None`` = zeros, i.e. a new
        sequence). One ``[B*12, C, n_l, n_l]`` tensor per decoder level, coarse to fine;
        see :meth:`state_shapes`.

    Returns ``(delta, new_state)``: ``delta`` ``[B, len(schema.outputs), 12, nside, nside]``
    and the new GRU state (``None`` if ``recurrent=False``).
    """

    def __init__(self, config: UNetGRUConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else UNetGRUConfig()
        self.config = cfg
        self.schema: ChannelSchema = cfg.make_schema(cfg.grid_dict())
        self.grid = (12, cfg.nside, cfg.nside)
        ch, dil, levels = cfg.channels, cfg.dilations, len(cfg.channels)

        def block(lvl: int, cin: int, latent: int, cout: int) -> HpxConvNeXtBlock:
            return HpxConvNeXtBlock(
                cfg.nside >> lvl,
                cin,
                latent,
                cout,
                cfg.kernel_size,
                dil[lvl],
                cfg.upscale_factor,
                cfg.activation_cap,
            )

        self.encoder = nn.ModuleList()
        prev = self.schema.in_channels
        for lvl in range(levels):
            mods = [nn.AvgPool2d(2)] if lvl > 0 else []
            mods.append(block(lvl, prev, ch[lvl], ch[lvl]))
            self.encoder.append(nn.Sequential(*mods))
            prev = ch[lvl]

        self.decoder = nn.ModuleList()
        for lvl in reversed(range(levels)):
            cur = ch[lvl]
            nxt = ch[lvl - 1] if lvl > 0 else ch[0]
            coarsest = lvl == levels - 1
            up = (
                None
                if coarsest
                else nn.Sequential(nn.ConvTranspose2d(cur, cur, 2, stride=2), CappedGELU(cfg.activation_cap))
            )
            blk = block(lvl, cur if coarsest else 2 * cur, cur, nxt)
            gru = ConvGRU(nxt) if cfg.recurrent else None
            self.decoder.append(_DecoderLevel(up, blk, gru))
        self.output = nn.Conv2d(ch[0], self.schema.n_prognostic, 1)

    def state_shapes(self, batch_size: int) -> list[tuple[int, int, int, int]]:
        """Shapes of the GRU state tensors for a batch of ``batch_size``, coarse to fine."""
        if not self.config.recurrent:
            return []
        ch, levels = self.config.channels, len(self.config.channels)
        out = []
        for lvl in reversed(range(levels)):
            n = self.config.nside >> lvl
            out.append((batch_size * 12, ch[lvl - 1] if lvl > 0 else ch[0], n, n))
        return out

    def latent_spec(self) -> dict[str, Any]:
        """Geometry of :meth:`forward_latent`'s output: ``{"kind": "pixels", "dim": C0,
        "grid": [12, nside, nside]}`` (the finest decoder features, ``C0 = channels[0]``)."""
        return {"kind": "pixels", "dim": int(self.config.channels[0]), "grid": [int(g) for g in self.grid]}

    def forward_latent(
        self,
        inputs: torch.Tensor,
        forcings: torch.Tensor | None = None,
        statics: torch.Tensor | None = None,
        state: State | None = None,
    ) -> tuple[torch.Tensor, State | None]:
        """The finest decoder features (after the last GRU), before the output convolution.

        Returns ``(latent, new_state)`` with ``latent`` of shape
        ``[B, channels[0], 12, nside, nside]``; ``forward`` is
        ``decode_latent(forward_latent(...))``.
        """
        x = assemble_inputs(self.schema, self.grid, inputs, forcings, statics)  # [B, C, 12, n, n]
        b, c, _, n, _ = x.shape
        if state is not None and self.config.recurrent:
            expected = self.state_shapes(b)
            got = [tuple(s.shape) for s in state]
            if got != expected:
                raise DataError(
                    f"GRU state has shapes {got} but a batch of {b} needs {expected}. Pass the state "
                    "returned by the previous call with the same batch, or state=None to reset."
                )
        x = x.transpose(1, 2).reshape(b * 12, c, n, n)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for enc in self.encoder:
            x = self.run_block(enc, x)
            skips.append(x)
        new_state = []
        for i, dec in enumerate(self.decoder):
            if dec.up is not None:
                x = torch.cat([dec.up(x), skips[-1 - i]], dim=1)
            x = self.run_block(dec.block, x)
            if dec.gru is not None:
                x, h = dec.gru(x, None if state is None else state[i])
                new_state.append(h)
        latent = x.reshape(b, 12, -1, n, n).transpose(1, 2)
        return latent, (tuple(new_state) if self.config.recurrent else None)

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Output convolution: ``[B, C0, 12, n, n]`` -> residual ``[B, C_out, 12, n, n]``."""
        b, c, _, n, _ = latent.shape
        out = self.output(latent.transpose(1, 2).reshape(b * 12, c, n, n))
        return out.reshape(b, 12, -1, n, n).transpose(1, 2).contiguous()

    @property
    def recurrent(self) -> bool:
        """Whether the GRUs carry a state from step to step (``config.recurrent``)."""
        return bool(self.config.recurrent)

    def extra_repr(self) -> str:
        return (
            f"nside={self.config.nside}, in_channels={self.schema.in_channels}, "
            f"out_channels={self.schema.n_prognostic}, recurrent={self.config.recurrent}"
        )
