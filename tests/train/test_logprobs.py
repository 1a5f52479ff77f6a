"""The learner's output layer runs only where a trained token is predicted, and the log-probs,
entropies and gradients it gives equal a full log-softmax over every position (float64,
each trajectory forwarded alone; gradients to 1e-6, measured up to 4e-7 on entries up to ~4), in
every layout."""

from __future__ import annotations

import pytest
import torch

from arpo.core.entropy import entropy_from_logits
from arpo.train.logprobs import token_logprobs
from tests.train.test_packing import layout, rows_for, sample_trees


@pytest.fixture(scope="module")
def trees(model64, tokenizer, prompts):
    trees = sample_trees(model64, tokenizer, prompts[:3], m=4, n=2)
    assert any(node.role.value == "tool" for tree in trees for node in tree.nodes), "no tool result to skip"
    return trees


def brute_force(model, rows, copy_rows, copy_cols):
    """Each copy's log-prob and entropy from its trajectory's full logits (no selection)."""
    logprobs, entropies = [], []
    for row, col in zip(copy_rows.tolist(), copy_cols.tolist(), strict=True):
        ids = torch.tensor([rows[row].token_ids])
        logits = model(input_ids=ids, use_cache=False).logits[0, col - 1]
        logprobs.append(torch.log_softmax(logits, dim=-1)[ids[0, col]])
        entropies.append(entropy_from_logits(logits))
    return torch.stack(logprobs), torch.stack(entropies)


class OutputRows:
    """How many hidden states the model's output layer is fed, over all its calls."""

    def __init__(self, model):
        self.count = 0
        self.handle = model.get_output_embeddings().register_forward_hook(self.record)

    def record(self, _module, args, _output):
        self.count += args[0].reshape(-1, args[0].shape[-1]).shape[0]


@pytest.mark.parametrize("packing", ["flat", "tree", "prefix"])
def test_logprobs_entropies_and_gradients_equal_a_full_log_softmax(model64, trees, packing):
    rows = rows_for(trees, "soft")
    batch = layout(trees, rows, packing)
    weights = torch.linspace(-1.0, 1.0, batch.num_copies, dtype=torch.float64)
    model64.zero_grad()
    logprobs = torch.zeros(batch.num_copies, dtype=torch.float64)
    entropies = torch.zeros_like(logprobs)
    for unit in batch.units:
        lp, ent = unit.logprobs(model64, with_entropy=True)
        (weights[unit.copies] * lp + 0.1 * ent).sum().backward()
        logprobs[unit.copies], entropies[unit.copies] = lp.detach(), ent.detach()
    grads = {name: p.grad.clone() for name, p in model64.named_parameters()}
    model64.zero_grad()
    expected_lp, expected_ent = brute_force(model64, rows, batch.copy_rows, batch.copy_cols)
    (weights * expected_lp + 0.1 * expected_ent).sum().backward()
    assert torch.allclose(logprobs, expected_lp.detach(), atol=1e-9, rtol=0)
    assert torch.allclose(entropies, expected_ent.detach(), atol=1e-9, rtol=0)
    for name, p in model64.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-6, rtol=0), name
    model64.zero_grad()


@pytest.mark.parametrize("packing", ["flat", "tree", "prefix"])
def test_the_output_layer_sees_only_the_positions_that_predict_a_trained_token(model64, trees, packing):
    rows = rows_for(trees, "soft")
    batch = layout(trees, rows, packing)
    seen = OutputRows(model64)
    try:
        with torch.no_grad():
            for unit in batch.units:
                unit.logprobs(model64)
    finally:
        seen.handle.remove()
    if packing == "flat":  # every trained copy, predicted at its own (row, column − 1)
        assert seen.count == batch.num_copies
    elif packing == "tree":  # each distinct predecessor once (sibling branches share their parent's)
        predecessors = {
            (k, r, int(u.inputs.predecessor[r, c]))
            for k, u in enumerate(batch.units)
            for r, c in zip(u.rows.tolist(), u.cols.tolist(), strict=True)
        }
        assert seen.count == len(predecessors) < batch.num_copies
    else:  # column ≥ 1 at its own predecessor; column 0 by the prompt's last position, once per chunk
        assert seen.count == sum(int((u.cols > 0).sum()) for u in batch.units) + len(batch.units)
    assert seen.count < batch.tokens_forwarded  # prompts and tool results get no logits


def test_token_logprobs_of_wanted_tokens_only(model64, tokenizer, prompts):
    ids = torch.tensor([prompts[0][:12], prompts[1][:12]])
    mask = torch.ones_like(ids)
    wanted = (torch.tensor([0, 0, 1]), torch.tensor([3, 7, 11]))
    with torch.no_grad():
        some, _ = token_logprobs(model64, ids, mask, wanted=wanted)
        every, _ = token_logprobs(model64, ids, mask)
        full = torch.log_softmax(model64(input_ids=ids).logits[:, :-1], dim=-1)
    expected = full.gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(every[:, 1:], expected, atol=1e-12, rtol=0) and bool((every[:, 0] == 0).all())
    picked = torch.zeros_like(some)
    picked[wanted] = every[wanted]
    # the wanted ones as before, 0 elsewhere; "as before" to float64 rounding, not bitwise: the output
    # layer's product over 3 rows and over every row may take kernels that sum in another order (on
    # an AVX2-only AMD CPU they do)
    assert torch.allclose(some, picked, atol=1e-12, rtol=0) and bool((some[picked == 0] == 0).all())
    with pytest.raises(ValueError, match="column 0 has no context"):
        token_logprobs(model64, ids, mask, wanted=(torch.tensor([0]), torch.tensor([0])))
