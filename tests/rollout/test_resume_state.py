"""--resume continues from the saved model state: bit-identical, computing only the missing leads."""

from __future__ import annotations

import numpy as np
import pytest

from atmos.rollout import Forecaster
from atmos.rollout.api import rollout
from atmos.rollout.state import STATE_FILE


def _count_advances(monkeypatch):
    calls = {"n": 0}
    orig = Forecaster.advance

    def counting(self, state):
        calls["n"] += 1
        return orig(self, state)

    monkeypatch.setattr(Forecaster, "advance", counting)
    return calls


@pytest.mark.parametrize("which, kwargs", [
    ("vit", {}),
    ("vit", {"members": 3, "perturb": 0.2, "step": "12h"}),
    ("gru", {}),  # recurrent carry (GRU hidden states) and a history of 2 steps
    # bred vectors (cycled before the init) and temporal dropout (masks drawn from the seed and the step)
    ("vit", {"members": 3, "perturbation": "bred", "perturbation_scale": 0.2, "perturbation_options": {"cycles": 1}}),
    ("gru", {"members": 3, "perturbation": "temporal-dropout", "perturbation_scale": 0.5}),
])
def test_resume_from_saved_state_is_bit_identical_and_proportional(which, kwargs, request, mock_ds, tmp_path,
                                                                   monkeypatch):
    fc = request.getfixturevalue(f"{which}_fc")
    init = "2020-01-02"
    ref = rollout(fc, mock_ds, init, 4, out=tmp_path / "ref.zarr", **kwargs)
    n_lead = ref.sizes["prediction_timedelta"]
    every = 2 if kwargs.get("step") == "12h" else 1
    stop_at = n_lead // 2

    def stop(i, k):
        if k == stop_at:
            raise KeyboardInterrupt

    out = tmp_path / "f.zarr"
    with pytest.raises(KeyboardInterrupt):
        rollout(fc, mock_ds, init, 4, out=out, callback=stop, **kwargs)
    assert (out / STATE_FILE).is_file()
    calls = _count_advances(monkeypatch)
    got = rollout(fc, mock_ds, init, 4, out=out, resume=True, **kwargs)
    # only the missing leads are computed: (n_lead - 1 - stop_at) leads of `every` model steps
    assert calls["n"] == (n_lead - 1 - stop_at) * every
    assert not (out / STATE_FILE).exists()
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)


def test_state_of_another_lead_is_ignored(vit_fc, mock_ds, tmp_path, monkeypatch):
    """A state file that does not match the store's progress (e.g. after kill -9) costs recomputation only."""
    init = "2020-01-02"
    ref = rollout(vit_fc, mock_ds, init, 2, out=tmp_path / "ref.zarr")
    out = tmp_path / "f.zarr"

    def stop(i, k):
        if k == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout(vit_fc, mock_ds, init, 2, out=out, callback=stop)
    from atmos.rollout.writer import ForecastWriter

    w = ForecastWriter.open(out)  # one more lead written without a new saved state
    w.write(0, 4, {n: ref[n].values[0, 4] for n in ref.data_vars})
    w.close()
    calls = _count_advances(monkeypatch)
    got = rollout(vit_fc, mock_ds, init, 2, out=out, resume=True)
    assert calls["n"] == ref.sizes["prediction_timedelta"] - 1  # re-run from the initial time
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
