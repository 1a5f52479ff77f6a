"""``model.cpu_matmul: mkl_packed``: decode-sized products on MKL-packed weights equal ``F.linear``'s,
stay fresh when the weights change, and leave training alone."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from arpo.engines.base import SamplingParams
from arpo.engines.hf import HFGenerator
from arpo.models import mkl_packed
from arpo.models.cpu_matmul import apply_cpu_matmul
from arpo.models.mkl_packed import PACK_BUCKETS, PACK_KEEP, MKLPackedLinear, release_packs
from arpo.models.tiny import build_tiny_llama
from tests.models.weight_updates import assert_forwards_follow_weight_updates

pytestmark = pytest.mark.skipif(not mkl_packed.mkl_packing_available(), reason="no MKL in this build")


@pytest.fixture
def every_weight(monkeypatch):
    """Pack weights of any size (the tests' layers are below the size threshold)."""
    monkeypatch.setattr(mkl_packed, "PACK_MIN_WEIGHTS", 0)


def packed_layer(in_features: int, out_features: int, bias: bool = True, seed: int = 0) -> MKLPackedLinear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=bias)
    layer.__class__ = MKLPackedLinear
    return layer


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def packs(layer: nn.Module) -> dict:
    return layer.__dict__.get(mkl_packed.PACKS, {})


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 24), (8, 24), (9, 24), (2, 5, 24), (64, 24)])
def test_packed_product_equals_linear_and_packs_for_the_rows_bucket(every_weight, bias, shape):
    layer = packed_layer(24, 40, bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (*shape[:-1], 40)
    assert rel(y, F.linear(x, layer.weight, layer.bias)) < 1e-6
    rows = x.numel() // 24
    assert list(packs(layer)) == [next(b for b in PACK_BUCKETS if b >= rows)]


def test_a_rows_result_does_not_depend_on_the_other_rows_of_its_bucket(every_weight):
    layer = packed_layer(64, 96)
    x = torch.randn(8, 64)
    with torch.no_grad():
        alone, together = layer(x[:3]), layer(x)
    assert torch.equal(alone, together[:3])  # padding rows change nothing in the real ones


def test_non_contiguous_input(every_weight):
    layer = packed_layer(16, 8)
    x = torch.randn(16, 6).t()
    with torch.no_grad():
        assert rel(layer(x), F.linear(x, layer.weight, layer.bias)) < 1e-6
    assert packs(layer)


def test_training_small_and_large_row_counts_other_dtypes_and_autocast_stay_with_linear(
    every_weight, monkeypatch
):
    calls = []
    real = torch.ops.mkl._mkl_linear
    monkeypatch.setattr(
        mkl_packed.torch.ops.mkl, "_mkl_linear", lambda *a: calls.append(a) or real(*a), raising=False
    )
    layer = packed_layer(16, 8)
    x = torch.randn(4, 16)
    y = layer(x)  # autograd on: the learner's forward
    assert y.requires_grad and torch.equal(y, F.linear(x, layer.weight, layer.bias))
    with torch.no_grad():
        for rows in (1, 2, PACK_BUCKETS[-1] + 1):
            z = torch.randn(rows, 16)
            assert torch.equal(layer(z), F.linear(z, layer.weight, layer.bias))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16
        wide = copy.deepcopy(layer).double()
        assert torch.equal(wide(x.double()), F.linear(x.double(), wide.weight, wide.bias))
    monkeypatch.setattr(mkl_packed, "PACK_MIN_WEIGHTS", 16 * 8 + 1)
    with torch.no_grad():
        layer(x)
    assert calls == [] and not packs(layer)
    monkeypatch.setattr(mkl_packed, "PACK_MIN_WEIGHTS", 16 * 8)
    with torch.no_grad(), torch.inference_mode():
        layer(x)
    assert len(calls) == 1


def test_packs_follow_weight_updates_and_keep_two_buckets(every_weight):
    layer = packed_layer(32, 48)
    assert_forwards_follow_weight_updates(layer)
    with torch.no_grad():
        for rows in (3, 12, 20, 40):
            layer(torch.randn(rows, 32))
    assert len(packs(layer)) == PACK_KEEP and list(packs(layer)) == [32, 64]
    with torch.no_grad():
        layer(torch.randn(20, 32))  # a hit moves its bucket to the end: 64 goes first next time
    assert list(packs(layer)) == [64, 32]
    release_packs(layer)
    assert not packs(layer)


def test_apply_swaps_between_all_three_classes_and_drops_packs(every_weight, tokenizer):
    model = build_tiny_llama(tokenizer, seed=3)
    linears = sum(type(m) is nn.Linear for m in model.modules())
    assert apply_cpu_matmul(model, "mkl_packed") == "mkl_packed"
    assert sum(type(m) is MKLPackedLinear for m in model.modules()) == linears > 0
    with torch.no_grad():
        model(torch.tensor([[5, 6, 7]] * 2))
    assert any(packs(m) for m in model.modules())
    apply_cpu_matmul(model, "onednn")
    apply_cpu_matmul(model, "torch")
    assert sum(type(m) is nn.Linear for m in model.modules()) == linears
    assert not any(packs(m) for m in model.modules())


def test_hf_engine_decodes_on_packed_weights_like_on_plain_ones(every_weight, tokenizer, prompts):
    """Greedy trees from the same tiny model with and without packing: the same tokens, log-probs
    to float32 rounding; the engine frees the packs when it sleeps and when the weights change."""
    plain = build_tiny_llama(tokenizer, seed=4)
    packed = copy.deepcopy(plain)
    apply_cpu_matmul(packed, "mkl_packed")
    outs = []
    for model in (plain, packed):
        gen = HFGenerator(model, tokenizer)
        paths = [gen.add_path(p) for p in prompts for _ in range(2)]
        outs.append(gen.generate(paths, [24] * len(paths), SamplingParams(temperature=0.0), []))
        if model is packed:
            assert any(packs(m) for m in model.modules())
            gen.sleep()
            assert not any(packs(m) for m in model.modules())
            gen.generate(paths[:4], [4] * 4, SamplingParams(temperature=0.0), [])
            for path in paths:
                gen.release(path)
            gen.update_weights(model)
            assert not any(packs(m) for m in model.modules())
    for a, b in zip(*outs, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
