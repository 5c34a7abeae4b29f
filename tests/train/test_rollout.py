"""Gradient modes of multi-step training: what flows across step boundaries."""

from __future__ import annotations

import pytest
import torch

from atmos.train.loop import rollout


def _linear_step(a: torch.Tensor):
    def step(hist, k, carry):
        return a * hist[:, -1], carry

    return step


def _grads(chunk, steps, weights, x0=1.5, a0=0.9, y=0.3):
    """d(loss)/da for x_{k+1} = a x_k with loss on selected steps, and the grads of each prediction."""
    a = torch.tensor(a0, requires_grad=True)
    hist = torch.full((1, 1, 1), x0)
    targets = torch.full((1, steps, 1), y)
    res = rollout(_linear_step(a), hist, steps, chunk=chunk, targets=targets,
                  loss_fn=lambda p, t: ((p - t) ** 2).sum(), step_weights=weights)
    for p in res.predictions:
        p.retain_grad()
    res.loss.backward()
    return a.grad.item(), [None if p.grad is None else float(p.grad.abs().sum()) for p in res.predictions]


def test_full_backprops_through_the_rollout_detached_does_not():
    x0, a, y = 1.5, 0.9, 0.3
    # loss on step 2 only: L = (a^2 x0 - y)^2
    g_full, pg_full = _grads(None, 2, [0.0, 1.0])
    g_det, pg_det = _grads(1, 2, [0.0, 1.0])
    r = a * a * x0 - y
    assert g_full == pytest.approx(2 * r * 2 * a * x0, rel=1e-5)  # dL/da through both steps
    assert g_det == pytest.approx(2 * r * a * x0, rel=1e-5)  # step-2 input a*x0 treated as a constant
    assert pg_full[0] > 0  # the step-1 prediction receives gradient from the step-2 loss ...
    assert not pg_det[0]  # ... only without detaching


def test_truncated_cuts_gradients_every_n_steps():
    _, pg = _grads(2, 4, [0.0, 0.0, 0.0, 1.0])  # chunks [1, 2], [3, 4]; loss on step 4
    assert pg[2] > 0  # step 3 feeds step 4 within the chunk
    assert not pg[1] and not pg[0]  # nothing crosses the chunk boundary
    _, pg_full = _grads(None, 4, [0.0, 0.0, 0.0, 1.0])
    assert all(v > 0 for v in pg_full[:3])


@pytest.mark.parametrize("chunk", [1, 2, None])
def test_per_chunk_backward_equals_one_backward(chunk):
    """Backpropagating each chunk as it ends (memory saving) gives the same gradients."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    def step(hist, k, carry):
        h = hist.flatten(1)
        carry = torch.zeros_like(h[:, :3]) if carry is None else carry
        out = hist[:, -1] + net(h[:, -3:]) + 0.1 * carry
        return out, out  # a recurrent carry, detached at chunk boundaries too

    hist = torch.randn(4, 2, 3)
    targets = torch.randn(4, 3, 3)
    lf = torch.nn.functional.mse_loss
    net.zero_grad()
    rollout(step, hist, 3, chunk=chunk, targets=targets, loss_fn=lf, step_weights=[1.0, 2.0, 3.0],
            backward=lambda l: l.backward())
    per_chunk = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    res = rollout(step, hist, 3, chunk=chunk, targets=targets, loss_fn=lf, step_weights=[1.0, 2.0, 3.0])
    res.loss.backward()
    for g1, p in zip(per_chunk, net.parameters()):
        torch.testing.assert_close(g1, p.grad)
    assert len(res.step_losses) == 3
    assert float(res.loss.detach()) == pytest.approx(float(sum(res.step_losses)), rel=1e-6)
