"""The backbone contract (atmos.models.base): models implement the Protocols, found by type not hasattr."""

from __future__ import annotations

import torch

from atmos.models import build
from atmos.models.base import Backbone, LatentBackbone

SMALL = {
    "vit": {"nlat": 8, "nlon": 16, "embed_dim": 16, "depth": 1, "num_heads": 2, "window_size": [2, 2],
            "inputs": ["t850", "z500"], "forcings": [], "statics": [], "history": 1},
    "unet_gru": {"nside": 4, "channels": [8, 4], "dilations": [1, 1], "upscale_factor": 1,
                 "inputs": ["t850", "z500"], "forcings": [], "statics": [], "history": 1},
}


def _inputs(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, model.schema.history, len(model.schema.inputs), *model.grid, generator=g)


def test_registered_models_are_latent_backbones_and_forward_is_decode_of_latent():
    for name, params in SMALL.items():
        model = build(name, **params).eval()
        assert isinstance(model, Backbone) and isinstance(model, LatentBackbone), name
        x = _inputs(model)
        with torch.no_grad():
            out, state = model(x)
            latent, state2 = model.forward_latent(x)
            assert torch.equal(out, model.decode_latent(latent))
        assert out.shape == (2, len(model.schema.outputs), *model.grid)
        assert model.recurrent == (state is not None) == (state2 is not None)


def test_a_module_without_the_contract_is_not_a_backbone():
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x

    assert not isinstance(Plain(), Backbone)
    inner = build("vit", **SMALL["vit"])

    class Wrapper(torch.nn.Module):  # schema, grid, recurrent and a call: a Backbone but not a latent one
        def __init__(self):
            super().__init__()
            self.inner, self.schema, self.grid, self.recurrent = inner, inner.schema, inner.grid, False

        def forward(self, *a):
            return self.inner(*a)

    assert isinstance(Wrapper(), Backbone) and not isinstance(Wrapper(), LatentBackbone)


def test_model_configs_say_which_fields_describe_the_data():
    """The trainer completes model.params from the config class, not by guessing field names."""
    from atmos.grids import HealpixGrid, LatLonGrid
    from atmos.models import UNetGRUConfig, ViTConfig

    ch = {"inputs": ["a", "b"], "outputs": ["a", "b"], "forcings": ["f"], "statics": ["s"]}
    latlon = LatLonGrid.equiangular(32, 64).to_dict()
    poles = LatLonGrid.equiangular(33, 64, poles=True).to_dict()
    hpx = HealpixGrid(8, "nest").to_dict()
    assert ViTConfig.data_params(ch, 2, latlon) == {**ch, "history": 2, "nlat": 32, "nlon": 64, "poles": False}
    assert UNetGRUConfig.data_params(ch, 2, hpx) == {**ch, "history": 2, "nside": 8}
    # a model gets no grid fields for a grid it cannot run on (the trainer's shape check explains)
    assert ViTConfig.grid_params(hpx) == {} and UNetGRUConfig.grid_params(latlon) == {}
    assert ViTConfig.grid_params(poles) == {"nlat": 33, "nlon": 64, "poles": True}
    build("vit", **ViTConfig.data_params(ch, 2, latlon), embed_dim=16, depth=1, num_heads=2)

