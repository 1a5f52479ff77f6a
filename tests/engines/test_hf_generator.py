"""The transformers generator: KV forking equals recompute, exact entropies, stops, accounting."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from arpo.core.entropy import entropy_from_logits
from arpo.engines.base import Request, SamplingParams
from arpo.engines.hf import HFGenerator, _draw, _top_p_filter
from arpo.models.tiny import build_tiny_llama

SAMPLE = SamplingParams()


def full_recompute(model, ids: list[int]) -> torch.Tensor:
    """Logits at every position of ``ids`` from one forward pass with no cache."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def assert_matches_recompute(model, ids: list[int], generated, temperature: float = 1.0) -> None:
    """Recorded log-probs/entropies of the last len(generated) tokens equal a full recompute."""
    logits = full_recompute(model, ids)
    scaled = logits / temperature
    log_probs = torch.log_softmax(scaled, dim=-1)
    entropies = entropy_from_logits(scaled)
    n = len(generated.token_ids)
    assert ids[len(ids) - n :] == generated.token_ids
    for j, pos in enumerate(range(len(ids) - n, len(ids))):
        assert generated.logprobs[j] == pytest.approx(log_probs[pos - 1, ids[pos]].item(), abs=1e-9)
        assert generated.entropies[j] == pytest.approx(entropies[pos - 1].item(), abs=1e-9)


def test_forked_generation_equals_full_recompute(model64, tokenizer, prompts):
    gen = HFGenerator(model64, tokenizer)
    roots = [gen.add_path(p) for p in prompts[:2]]
    gen.prefill(roots)
    kids = [gen.fork(roots[0], len(prompts[0])) for _ in range(3)] + [gen.fork(roots[1], len(prompts[1]))]
    first = gen.generate(kids, [12, 5, 9, 7], SAMPLE, [])
    for kid, out in zip(kids, first, strict=True):
        assert_matches_recompute(model64, gen.token_ids(kid), out)
    # a tool result appended to one path, then a second round for two paths of different lengths
    tool_ids = tokenizer.encode("<result>42</result>", add_special_tokens=False)
    gen.extend(kids[0], tool_ids)
    boundary = gen.length(kids[0])
    second = gen.generate([kids[0], kids[2]], [10, 10], SAMPLE, [])
    for kid, out in zip([kids[0], kids[2]], second, strict=True):
        assert_matches_recompute(model64, gen.token_ids(kid), out)
    # branch at the tool-result boundary: reuses the stored logits, nothing recomputed
    before = gen.stats.snapshot()
    branch = gen.fork(kids[0], boundary)
    expected = full_recompute(model64, gen.token_ids(branch))[-1]
    assert torch.allclose(gen._paths[branch].logits, expected, atol=1e-5)
    (out,) = gen.generate([branch], [8], SAMPLE, [])
    assert gen.stats.since(before).prefill_tokens == 0
    assert_matches_recompute(model64, gen.token_ids(branch), out)
    # fork in the middle of a segment: one token is recomputed, results still exact
    before = gen.stats.snapshot()
    mid = gen.fork(kids[1], len(prompts[0]) + 3)
    (out,) = gen.generate([mid], [6], SAMPLE, [])
    assert gen.stats.since(before).prefill_tokens == 1
    assert_matches_recompute(model64, gen.token_ids(mid), out)


def test_stream_rows_that_join_a_running_batch_equal_full_recompute(model64, tokenizer, prompts):
    """Continuous batching: while a long row decodes, a short one ends and goes on after a tool
    result, a fresh row joins from the prompt, and a branch forked at the tool result (its stored
    logits: nothing recomputed) joins when the short row's second segment ends; every sampled token's log-prob and entropy equal a full
    recompute of its path, and each token is computed once."""
    gen = HFGenerator(model64, tokenizer)
    roots = [gen.add_path(p) for p in prompts[:2]]
    gen.prefill(roots)
    long_row, short_row = gen.fork(roots[0], len(prompts[0])), gen.fork(roots[1], len(prompts[1]))
    tool_ids = tokenizer.encode("<result>42</result>", add_special_tokens=False)
    outs: dict[int, list] = {}
    steps: list[list[int]] = []
    boundary: list[int] = []

    def on_done(done):
        steps.append([path for path, _ in done])
        for path, out in done:
            outs.setdefault(path, []).append((out, gen.length(path)))
        if [path for path, _ in done] != [short_row]:
            return []
        if len(outs[short_row]) == 1:  # its first segment: a tool result, and a fresh row
            gen.extend(short_row, tool_ids)
            boundary.append(gen.length(short_row))
            return [Request(short_row, 6), Request(gen.fork(roots[0], len(prompts[0])), 7)]
        if len(outs[short_row]) == 2:  # after the result: a branch at it
            return [Request(gen.fork(short_row, boundary[0]), 5)]
        return []

    before = gen.stats.snapshot()
    gen.stream([Request(long_row, 30), Request(short_row, 4)], SAMPLE, [], on_done)
    # the short row's first segment ended first, the others later, the long row last
    assert steps[0] == [short_row] and steps[-1] == [long_row] and len(outs) == 4
    for path, segments in outs.items():
        for out, length in segments:
            assert_matches_recompute(model64, gen.token_ids(path)[:length], out)
    sampled = sum(len(out.token_ids) for segments in outs.values() for out, _ in segments)
    cost = gen.stats.since(before)
    # the KV each row stored (decode steps padded to the joining rows' block included) is exact
    for path in outs:
        gen.extend(path, tool_ids)
        (out,) = gen.generate([path], [3], SAMPLE, [])
        assert_matches_recompute(model64, gen.token_ids(path), out)
    assert sampled == 30 + 4 + 6 + 5 + 7
    assert cost.prefill_tokens == len(tool_ids) + 1  # the tool result and the token before it
    assert cost.decode_tokens == sampled - 5  # each segment's first token: from a prefill or stored logits


def test_a_path_released_in_on_done_stops_unreported_and_the_others_go_on_exactly(
    model64, tokenizer, prompts
):
    """Releasing a running path from ``on_done`` (a speculative fill cancelled by a branch) drops its
    row at once: it is never reported, it computes nothing more, and the rows left decode exactly
    as a full recompute of their paths says."""
    gen = HFGenerator(model64, tokenizer)
    roots = [gen.add_path(p) for p in prompts[:3]]
    gen.prefill(roots)
    short_row, doomed, long_row = (gen.fork(r, len(p)) for r, p in zip(roots, prompts[:3], strict=True))
    reported: list[int] = []
    outs = {}

    def on_done(done):
        reported.extend(path for path, _ in done)
        outs.update(done)
        if [path for path, _ in done] == [short_row]:
            gen.release(doomed)
        return []

    before = gen.stats.snapshot()
    gen.stream([Request(short_row, 3), Request(doomed, 40), Request(long_row, 12)], SAMPLE, [], on_done)
    assert reported == [short_row, long_row]
    for path in (short_row, long_row):
        assert_matches_recompute(model64, gen.token_ids(path), outs[path])
    # three rows for the short row's 3 tokens, then the long row alone: the released row stopped
    assert gen.stats.since(before).decode_tokens == 3 * 3 - 3 + (12 - 3)


def test_a_peek_reports_the_first_tokens_and_a_fork_there_reuses_the_running_rows_kv(
    model64, tokenizer, prompts
):
    """A request with ``peek_after`` is reported to ``on_peek`` after that many tokens and runs on
    with the tokens it would have sampled without the peek; a branch forked in ``on_peek`` at
    where the request started (after a tool result) joins at once, reuses the tool result's KV the
    running row computed, and every token of both equals a full recompute."""
    tool_ids = tokenizer.encode("<result>42</result>", add_special_tokens=False)

    def setup():
        gen = HFGenerator(model64, tokenizer)
        gen.seed(3)
        root = gen.add_path(prompts[0])
        gen.prefill([root])
        paths = [gen.fork(root, len(prompts[0])) for _ in range(2)]
        gen.generate(paths, [5, 5], SAMPLE, [])
        gen.extend(paths[0], tool_ids)
        return gen, paths

    def run(peek_after, on_peek):
        gen, (row, other) = setup()
        outs = {}
        requests = [Request(row, 12, peek_after=peek_after), Request(other, 9)]
        gen.stream(requests, SAMPLE, [], lambda done: outs.update(done) or [], on_peek(gen, row))
        return outs[row]

    plain = run(0, lambda gen, row: None)
    quiet = run(4, lambda gen, row: lambda peeked: [])
    assert quiet.token_ids == plain.token_ids  # a peek alone changes nothing

    gen, (row, other) = setup()
    boundary = gen.length(row)
    peeks, outs, branches = [], {}, []

    def on_peek(peeked):
        peeks.extend(peeked)
        branches.append(gen.fork(row, boundary))
        return [Request(branches[0], 6)]

    before = gen.stats.snapshot()
    requests = [Request(row, 12, peek_after=4), Request(other, 9)]
    gen.stream(requests, SAMPLE, [], lambda done: outs.update(done) or [], on_peek)
    cost = gen.stats.since(before)
    ((path, peek),) = peeks
    assert path == row and peek.token_ids == outs[row].token_ids[:4]
    assert peek.entropies == outs[row].entropies[:4] and peek.logprobs == outs[row].logprobs[:4]
    assert peek.token_ids == plain.token_ids[:4]
    for path in (row, branches[0], other):
        assert_matches_recompute(model64, gen.token_ids(path), outs[path])
    # each row's last sampled token and the tool result; the branch: the running row's KV, stored at the peek
    assert cost.prefill_tokens == 1 + 1 + len(tool_ids)
    assert cost.decode_tokens == 12 + 9 + 6 - 3  # each request's first token: from a prefill or stored logits
    gen.extend(row, tool_ids)  # the KV stored at the peek and at the end is exact
    (out,) = gen.generate([row], [3], SAMPLE, [])
    assert_matches_recompute(model64, gen.token_ids(row), out)


def test_a_path_released_in_on_peek_is_never_reported_even_if_it_ended_that_step(model64, tokenizer, prompts):
    """``on_peek`` runs before ``on_done``: a path it releases (a speculative fill a branch took the
    place of) is not reported, also when its request ended at the same step."""
    gen = HFGenerator(model64, tokenizer)
    root = gen.add_path(prompts[0])
    gen.prefill([root])
    peeking, ending, other = (gen.fork(root, len(prompts[0])) for _ in range(3))
    reported: list[int] = []

    def on_peek(peeked):
        assert [path for path, _ in peeked] == [peeking]
        gen.release(ending)
        return []

    requests = [Request(peeking, 8, peek_after=3), Request(ending, 3), Request(other, 5)]
    gen.stream(requests, SAMPLE, [], lambda done: reported.extend(p for p, _ in done) or [], on_peek)
    assert reported == [other, peeking]


def test_batched_greedy_equals_one_path_at_a_time(model, tokenizer, prompts):
    greedy = SamplingParams(temperature=0.0)
    gen = HFGenerator(model, tokenizer)
    batch = gen.generate([gen.add_path(p) for p in prompts], [15] * len(prompts), greedy, [])
    for prompt, together in zip(prompts, batch, strict=True):
        (alone,) = gen.generate([gen.add_path(prompt)], [15], greedy, [])
        assert alone.token_ids == together.token_ids
        assert alone.logprobs == pytest.approx(together.logprobs, abs=1e-5)


def test_temperature_scales_the_recorded_distribution(model64, tokenizer, prompts):
    gen = HFGenerator(model64, tokenizer)
    path = gen.add_path(prompts[0])
    (out,) = gen.generate([path], [10], SamplingParams(temperature=0.7), [])
    assert_matches_recompute(model64, gen.token_ids(path), out, temperature=0.7)


def test_stops_on_stop_string_eos_and_length(model, tokenizer, prompts):
    gen = HFGenerator(model, tokenizer)
    gen.seed(3)
    paths = [gen.add_path(prompts[i % len(prompts)]) for i in range(24)]
    outs = gen.generate(paths, [30] * len(paths), SAMPLE, ["</calc>", "</answer>"])
    finishes = {o.finish for o in outs}
    assert finishes == {"eos", "stop", "length"}, "the random tiny model hits every stop kind"
    for out in outs:
        text = tokenizer.decode(out.token_ids)
        if out.finish == "stop":
            assert text.endswith(out.stop_string) and text.count(out.stop_string) == 1
        elif out.finish == "eos":
            assert (
                out.token_ids[-1] == tokenizer.eos_token_id
                and tokenizer.eos_token_id not in out.token_ids[:-1]
            )
        else:
            assert len(out.token_ids) == 30 and "</calc>" not in text and "</answer>" not in text


def test_seed_reproduces_samples(model, tokenizer, prompts):
    def sample(seed):
        gen = HFGenerator(model, tokenizer)
        gen.seed(seed)
        return [o.token_ids for o in gen.generate([gen.add_path(p) for p in prompts], [20] * 4, SAMPLE, [])]

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_prefill_counts_each_prompt_token_once_across_forks(model, tokenizer, prompts):
    gen = HFGenerator(model, tokenizer)
    root = gen.add_path(prompts[0])
    gen.prefill([root])
    assert gen.stats.prefill_tokens == len(prompts[0])
    kids = [gen.fork(root, len(prompts[0])) for _ in range(8)]
    outs = gen.generate(kids, [5] * 8, SAMPLE, [])
    assert gen.stats.prefill_tokens == len(prompts[0])
    assert gen.stats.decode_tokens == sum(len(o.token_ids) - 1 for o in outs)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]], dtype=torch.float64)
    assert _top_p_filter(probs.clone(), 0.75).tolist() == [[0.5, 0.25, 0.0, 0.0]]
    assert _top_p_filter(probs.clone(), 0.76).tolist() == [[0.5, 0.25, 0.125, 0.0]]
    assert _top_p_filter(probs.clone(), 0.1).tolist() == [[0.5, 0.0, 0.0, 0.0]]
    assert _top_p_filter(probs.clone(), 1.0).tolist() == probs.tolist()


def test_draw_samples_each_token_with_its_probability_and_never_a_zero_one():
    probs = torch.tensor([0.3, 0.0, 0.2, 0.1, 0.4, 0.0]) * 2.5  # not normalised; zeros inside and at the end
    rows, rng = 40_000, torch.Generator().manual_seed(0)
    counts = torch.bincount(_draw(probs.expand(rows, -1), rng), minlength=6)
    expected = probs / probs.sum() * rows
    assert counts[1] == counts[5] == 0
    assert (counts - expected).abs().max() < 4 * (expected * (1 - probs / probs.sum())).sqrt().max()
    again = _draw(probs.expand(rows, -1), torch.Generator().manual_seed(0))
    assert again.tolist() == _draw(probs.expand(rows, -1), torch.Generator().manual_seed(0)).tolist()
    assert again.tolist() != _draw(probs.expand(rows, -1), torch.Generator().manual_seed(1)).tolist()


@pytest.mark.parametrize(("uniform", "token"), [(0.0, 0), (0.4, 2), (0.5, 4), (1.0 - 2**-24, 4), (1.0, 4)])
def test_draw_inverts_the_cumulative_mass_at_the_edges(monkeypatch, uniform, token):
    # u = 1 (impossible from torch.rand, which is < 1) still lands on the last token of non-zero
    # probability: u·total is kept below the total, so a zero tail is never reached
    probs = torch.tensor([[0.25, 0.0, 0.25, 0.0, 0.5, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.full(shape, uniform, dtype=kw["dtype"]))
    assert _draw(probs, torch.Generator()).tolist() == [token]


def test_draw_refuses_rows_without_a_finite_mass():
    probs = torch.tensor([[0.5, 0.5], [float("nan"), 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"rows \[1, 2\] sum to zero or a non-finite number"):
        _draw(probs, torch.Generator())


def test_sliding_window_models_are_rejected(tokenizer):
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        sliding_window=16,
    )
    with pytest.raises(ValueError, match="full attention"):
        HFGenerator(MistralForCausalLM(config), tokenizer)


def test_bad_requests_fail_clearly(model, tokenizer, prompts):
    gen = HFGenerator(model, tokenizer)
    path = gen.add_path(prompts[0])
    with pytest.raises(ValueError, match="outside path"):
        gen.fork(path, len(prompts[0]) + 1)
    with pytest.raises(ValueError, match="only once"):
        gen.generate([path, path], [1, 1], SAMPLE, [])
    running, short = gen.fork(path, len(prompts[0])), gen.fork(path, len(prompts[0]))
    with pytest.raises(ValueError, match="only once while it runs"):  # joining a path still decoding
        gen.stream([Request(running, 20), Request(short, 1)], SAMPLE, [], lambda done: [Request(running, 1)])
    gen.release(path)
    with pytest.raises(KeyError, match="released"):
        gen.generate([path], [1], SAMPLE, [])


def test_padded_vocabulary_rows_are_never_sampled(tokenizer, prompts):
    """Output rows beyond the tokenizer (embedding padding) decode to nothing: excluded from
    sampling, from the recorded distribution and from the entropy normaliser ln|V|."""
    model = build_tiny_llama(tokenizer, seed=3)
    model.resize_token_embeddings(len(tokenizer) + 16, mean_resizing=False)
    with torch.no_grad():  # make the padded rows likely under the raw logits
        model.get_output_embeddings().weight[len(tokenizer) :] *= 4
    gen = HFGenerator(model, tokenizer)
    assert gen.vocab_size == len(tokenizer)
    paths = [gen.fork(gen.add_path(p), len(p)) for p in prompts]
    outs = gen.generate(paths, [40] * len(paths), SamplingParams(temperature=1.0), [])
    sampled = [t for out in outs for t in out.token_ids]
    assert len(sampled) > 50 and max(sampled) < len(tokenizer)
