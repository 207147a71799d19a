"""The blockwise cross-entropy equals the plain one, value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from funnelrec.models.chunked_ce import score_cross_entropy


@pytest.mark.parametrize("history", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 32, 1000])
def test_blockwise_cross_entropy_equals_the_plain_one(history: bool, chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    n, parts, items, t = 53, 6, 40, 5
    left = torch.randn(n, parts, generator=g, requires_grad=True)
    right = torch.randn(parts, items, generator=g, requires_grad=True)
    bias0 = torch.randn(items, generator=g, requires_grad=True)
    unseen = torch.zeros(items, dtype=torch.bool)
    unseen[[3, 17]] = True  # kept out of the softmax through the bias, as in training
    idx = torch.randint(0, items, (n, t), generator=g)
    w = torch.randn(n, t, generator=g, requires_grad=True)
    target = torch.randint(0, items, (n,), generator=g)
    target[unseen[target]] = 0

    def loss(fn):
        for p in (left, right, bias0, w):
            p.grad = None
        # Scaled, as in a sum of losses: the backward pass must scale what it kept.
        value = 2.5 * fn(bias0.masked_fill(unseen, float("-inf")))
        value.backward()
        grads = [left.grad, right.grad, bias0.grad] + ([w.grad] if history else [])
        return value.detach(), [x.clone() for x in grads]

    def plain(bias):
        s = torch.addmm(bias, left, right)
        return F.cross_entropy(s.scatter_add(1, idx, w) if history else s, target)

    def blockwise(bias):
        extra = (idx, w) if history else (None, None)
        return score_cross_entropy(left, right, bias, target, *extra, chunk=chunk)

    v1, g1 = loss(plain)
    v2, g2 = loss(blockwise)
    assert torch.allclose(v1, v2, atol=1e-6)
    for a, b in zip(g1, g2, strict=True):
        assert torch.isfinite(b).all()
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
