"""The shared training loop: the explicit ``before_optimizer_step`` call of each step."""

from __future__ import annotations

import torch

from tinynewsrec.train.loop import LoopConfig, fit


def test_before_optimizer_step_sees_clipped_gradients_and_the_step_applies_what_it_leaves():
    from accelerate import Accelerator

    accelerator = Accelerator()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    data = torch.randn(8, 4) * 100  # large gradients, so clipping bites
    seen = []

    def before_optimizer_step(m):
        grads = [p.grad for p in m.parameters()]
        seen.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        assert all(torch.equal(p.detach(), s) for p, s in zip(m.parameters(), start))  # not stepped yet
        for g in grads:
            g.zero_()  # what it leaves is what the optimiser applies

    def step(m, batch):
        return m(batch).pow(2).mean(), {}

    cfg = LoopConfig(epochs=1, batch_size=4, seed=0, grad_clip=0.5)
    fit(accelerator, model, optimizer, 8, lambda rows: data[rows], step, cfg,
        before_optimizer_step=before_optimizer_step)
    assert len(seen) == 2 and all(n <= 0.5 + 1e-5 for n in seen)
    assert all(torch.equal(p.detach(), s) for p, s in zip(model.parameters(), start))
