"""``model.cpu_matmul``: oneDNN linear layers equal PyTorch's, and the rule that picks them."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from arpo.engines.base import SamplingParams
from arpo.engines.hf import HFGenerator
from arpo.models import cpu_matmul, mkl_packed
from arpo.models.cpu_matmul import OneDNNLinear, apply_cpu_matmul, resolve_cpu_matmul
from arpo.models.loading import PolicyConfig, load_policy
from arpo.models.mkl_packed import release_packs
from arpo.models.tiny import build_tiny_llama
from arpo.train.logprobs import token_logprobs
from tests.models.weight_updates import assert_forwards_follow_weight_updates

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this build")


@pytest.fixture
def every_product(monkeypatch):
    """Send products of any size to oneDNN (the tests' layers are below the size threshold)."""
    monkeypatch.setattr(cpu_matmul, "ONEDNN_MIN_MACS", 0)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 24), (2, 7, 24)])
def test_onednn_linear_equals_linear_forward_and_backward(every_product, bias, shape):
    torch.manual_seed(0)
    ref = nn.Linear(24, 40, bias=bias)
    ours = copy.deepcopy(ref)
    ours.__class__ = OneDNNLinear
    x = torch.randn(*shape, requires_grad=True)
    x_ours = x.detach().clone().requires_grad_()
    grad = torch.randn(*shape[:-1], 40)
    y, y_ours = ref(x), ours(x_ours)
    assert rel(y_ours, y) < 1e-6
    y.backward(grad)
    y_ours.backward(grad)
    assert rel(x_ours.grad, x.grad) < 1e-6
    assert rel(ours.weight.grad, ref.weight.grad) < 1e-6
    if bias:
        assert rel(ours.bias.grad, ref.bias.grad) < 1e-6


def test_onednn_linear_takes_non_contiguous_input_and_frozen_weights(every_product):
    torch.manual_seed(1)
    ref = nn.Linear(16, 8)
    ours = copy.deepcopy(ref)
    ours.__class__ = OneDNNLinear
    for layer in (ref, ours):
        layer.weight.requires_grad_(False)
    x = torch.randn(16, 6).t()  # [6, 16], not contiguous
    x.requires_grad_()
    ours(x).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    ref(x).sum().backward()
    assert ours.weight.grad is None
    assert rel(grad, x.grad) < 1e-6


def test_onednn_linear_leaves_small_products_other_dtypes_and_autocast_to_torch(monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_matmul, "ONEDNN_MIN_MACS", 3 * 8 * 4)
    monkeypatch.setattr(cpu_matmul, "_onednn_mm", lambda *a: calls.append(a) or F.linear(a[0], a[1], a[2]))
    layer = OneDNNLinear(8, 4)
    x = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and torch.equal(
        y, F.linear(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16())
    )
    layer64 = OneDNNLinear(8, 4).double()
    assert torch.equal(layer64(x.double()), F.linear(x.double(), layer64.weight, layer64.bias))
    assert calls == []
    layer(x)
    assert len(calls) == 1
    layer(x[:2])  # 2 × 8 × 4 multiply-adds: below the threshold
    assert len(calls) == 1


def test_apply_swaps_every_linear_and_keeps_log_probs_and_gradients(every_product, tokenizer):
    ref = build_tiny_llama(tokenizer, seed=3)
    ours = build_tiny_llama(tokenizer, seed=3)
    linears = sum(type(m) is nn.Linear for m in ours.modules())
    assert apply_cpu_matmul(ours, "onednn") == "onednn"
    assert sum(type(m) is OneDNNLinear for m in ours.modules()) == linears > 0
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert type(copy.deepcopy(ours).lm_head) is OneDNNLinear
    ids = torch.tensor([tokenizer.encode("<think>what is 12*9?</think><answer>108</answer>")] * 2)
    mask = torch.ones_like(ids)
    logprobs, entropies = token_logprobs(ours, ids, mask, with_entropy=True)
    ref_logprobs, ref_entropies = token_logprobs(ref, ids, mask, with_entropy=True)
    assert rel(logprobs, ref_logprobs) < 1e-5 and rel(entropies, ref_entropies) < 1e-5
    logprobs.sum().backward()
    ref_logprobs.sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert rel(p.grad, q.grad) < 1e-5, name
    assert apply_cpu_matmul(ours, "torch") == "torch"
    assert not any(type(m) is OneDNNLinear for m in ours.modules())


@pytest.fixture
def every_weight(monkeypatch):
    """Reorder weights of any size for the no-grad forwards (the tests' layers are below the threshold)."""
    monkeypatch.setattr(cpu_matmul, "PACK_MIN_WEIGHTS", 0)


def reordered(layer: nn.Module) -> dict:
    return layer.__dict__.get(mkl_packed.PACKS, {})


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 24), (8, 24), (33, 24), (2, 5, 24), (64, 24)])
def test_no_grad_decode_rows_multiply_by_the_weight_reordered_once(every_product, every_weight, bias, shape):
    torch.manual_seed(0)
    layer = OneDNNLinear(24, 40, bias=bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        y = layer(x)
        plain = cpu_matmul._onednn_mm(x.reshape(-1, 24), layer.weight, layer.bias).reshape(y.shape)
    assert list(reordered(layer)) == ["onednn"]
    assert reordered(layer)["onednn"][1].is_mkldnn
    assert rel(y, F.linear(x, layer.weight, layer.bias)) < 1e-6
    assert rel(y, plain) < 1e-6


def test_training_and_other_row_counts_keep_the_plain_weight(every_product, every_weight, monkeypatch):
    layer = OneDNNLinear(24, 40)
    layer(torch.randn(8, 24)).sum().backward()  # autograd: the learner's products
    with torch.no_grad():
        for rows in (1, 2, 65):
            x = torch.randn(rows, 24)
            assert rel(layer(x), F.linear(x, layer.weight, layer.bias)) < 1e-6
    assert not reordered(layer)
    monkeypatch.setattr(cpu_matmul, "PACK_MIN_WEIGHTS", layer.weight.numel() + 1)
    with torch.no_grad():
        layer(torch.randn(8, 24))
    assert not reordered(layer)


def test_the_reordered_weight_follows_updates_and_is_released(every_product, every_weight, tokenizer):
    layer = OneDNNLinear(32, 48)
    assert_forwards_follow_weight_updates(layer)
    assert len(reordered(layer)) == 1
    release_packs(layer)
    assert not reordered(layer)
    model = build_tiny_llama(tokenizer, seed=3)
    apply_cpu_matmul(model, "onednn")
    with torch.no_grad():
        model(torch.tensor([[5, 6, 7]] * 4))
    assert any(reordered(m) for m in model.modules())
    apply_cpu_matmul(model, "torch")
    assert not any(reordered(m) for m in model.modules())


def test_hf_engine_decodes_on_the_reordered_weights_like_on_plain_ones(
    every_product, monkeypatch, tokenizer, prompts
):
    """Greedy paths of the same tiny model with every linear layer in oneDNN, its weights reordered
    or not: the same tokens, log-probs to float32 rounding."""
    outs = []
    for min_weights in (1 << 62, 0):
        monkeypatch.setattr(cpu_matmul, "PACK_MIN_WEIGHTS", min_weights)
        model = build_tiny_llama(tokenizer, seed=4)
        apply_cpu_matmul(model, "onednn")
        gen = HFGenerator(model, tokenizer)
        paths = [gen.add_path(p) for p in prompts for _ in range(2)]
        outs.append(gen.generate(paths, [24] * len(paths), SamplingParams(temperature=0.0), []))
        assert any(reordered(m) for m in model.modules()) == (min_weights == 0)
    for a, b in zip(*outs, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_load_policy_applies_the_setting_to_lora_layers_too():
    pytest.importorskip("peft")
    model, _ = load_policy(PolicyConfig(cpu_matmul="onednn", lora={"r": 2}))
    adapted = [m for name, m in model.named_modules() if name.endswith("q_proj")]
    assert adapted and all(type(m.base_layer) is OneDNNLinear for m in adapted)
    assert all(type(m.lora_A["default"]) is OneDNNLinear for m in adapted)
    model, _ = load_policy(PolicyConfig(cpu_matmul="torch"))
    assert not any(type(m) is OneDNNLinear for m in model.modules())


@pytest.mark.parametrize(
    ("machine", "vendor", "limit", "expected"),
    [
        ("x86_64", "GenuineIntel", "", "mkl_packed"),
        ("x86_64", "AuthenticAMD", "", "onednn"),
        ("x86_64", "HygonGenuine", "", "onednn"),
        ("x86_64", "GenuineIntel", "SSE4_2", "onednn"),
        ("x86_64", "GenuineIntel", "avx", "onednn"),
        ("x86_64", "GenuineIntel", "AVX2", "mkl_packed"),
        ("x86_64", None, "", "mkl_packed"),
        ("aarch64", None, "SSE4_2", "torch"),
    ],
)
def test_auto_takes_onednn_where_mkl_runs_generic_code(monkeypatch, machine, vendor, limit, expected):
    monkeypatch.setattr(cpu_matmul, "mkl_packing_available", lambda: True)
    monkeypatch.setattr(cpu_matmul.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu_matmul, "cpu_vendor", lambda: vendor)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", limit)
    assert resolve_cpu_matmul("auto") == expected
    assert resolve_cpu_matmul("torch") == "torch" and resolve_cpu_matmul("onednn") == "onednn"
    monkeypatch.setattr(cpu_matmul, "mkl_packing_available", lambda: False)
    assert resolve_cpu_matmul("auto") == ("torch" if expected == "mkl_packed" else expected)
    with pytest.raises(ValueError, match="mkl_packed: this PyTorch build has no MKL"):
        resolve_cpu_matmul("mkl_packed")


def test_auto_in_a_process_with_mkl_limited_to_sse42():
    code = "from arpo.models.cpu_matmul import resolve_cpu_matmul; print(resolve_cpu_matmul('auto'))"
    env = {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "onednn" if cpu_matmul.platform.machine().lower() in cpu_matmul.X86 else "torch"
    )


def test_cpu_vendor_reads_proc_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    real_path = cpu_matmul.Path
    monkeypatch.setattr(cpu_matmul, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert cpu_matmul.cpu_vendor() == "AuthenticAMD"
    cpuinfo.write_text("processor\t: 0\n")
    monkeypatch.setattr(cpu_matmul.platform, "processor", lambda: "Intel64 Family 6 Model 85, GenuineIntel")
    assert cpu_matmul.cpu_vendor() == "GenuineIntel"
    monkeypatch.setattr(cpu_matmul.platform, "processor", lambda: "")
    assert cpu_matmul.cpu_vendor() is None


def test_config_rejects_unknown_values():
    with pytest.raises(ValueError, match="cpu_matmul"):
        PolicyConfig(cpu_matmul="mkl")
