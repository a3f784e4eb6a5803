"""The dual-tower model on the real SmolLM2-135M (and tiny random decoders where speed matters)."""
import copy
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from qlearn.model import DualMLP, QARConfig, QuerierAwareLM, parameter_report

TEXTS = ["Penny: Are you coming to the party tonight?\nSheldon: I have a prior engagement with my",
         "Leonard: Hi!"]


@pytest.fixture(scope="module")
def batch(smollm2):
    _, tok = smollm2
    side, tok.padding_side = tok.padding_side, "left"
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    tok.padding_side = side
    return enc


@pytest.fixture(scope="module")
def reference(smollm2, batch):
    with torch.no_grad():
        return smollm2[0](**batch).logits


def build(smollm2, **cfg):
    """A dual tower on a copy of the shared SmolLM2 (from_base edits its base in place)."""
    return QuerierAwareLM.from_base(copy.deepcopy(smollm2[0]), QARConfig(**cfg)).eval()


def logits(model, batch, **kw):
    with torch.no_grad():
        return model(**batch, **kw).logits


def perturb_lora(model, std=0.02):
    """Give LoRA B random values so that the adapters change the model (B starts at zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)


# ---- Done when 1, 2, 6: parity with the unmodified model ------------------------------------------
def test_specific_off_equals_the_hf_model(smollm2, batch, reference):
    plain = build(smollm2, specific=False)
    assert (logits(plain, batch) - reference).abs().max() <= 1e-5
    assert not any(isinstance(m, DualMLP) for m in plain.modules())
    dual = build(smollm2)  # specific stream built, then switched off
    with dual.general_only():
        assert (logits(dual, batch) - reference).abs().max() <= 1e-5
    assert (logits(dual, batch) - reference).abs().max() > 1.0  # on again: mean fusion moves it


def test_full_rank_copy_with_mean_fusion_equals_the_hf_model(smollm2, batch, reference):
    model = build(smollm2, rank=None, lora_r=0, fusion="mean")
    rows = []
    hook = model.hf.model.layers[3].mlp.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    out = logits(model, batch)
    hook.remove()
    assert rows == [2 * len(TEXTS)], "both streams run through the MLPs"
    assert out.shape == reference.shape and (out - reference).abs().max() <= 1e-5
    with torch.no_grad():  # the specific stream really is merged into the logits
        model.hf.model.layers[3].mlp.specific.w_down.weight.mul_(1.05)
    assert (logits(model, batch) - reference).abs().max() > 1e-2


def test_residual_fusion_starts_as_the_hf_model(smollm2, batch, reference):
    model = build(smollm2, fusion="residual")
    assert (logits(model, batch) - reference).abs().max() <= 1e-5
    with torch.no_grad():
        model.hf.model.norm.alpha.fill_(0.5)
    assert (logits(model, batch) - reference).abs().max() > 1e-2


# ---- Done when 3: exactly the intended parameters train -----------------------------------------
def test_exactly_the_intended_parameters_are_trainable_and_get_gradients(smollm2, batch):
    model = build(smollm2, rank=64).train()
    hf = smollm2[0].config
    d, L, ffn, r = hf.hidden_size, hf.num_hidden_layers, hf.intermediate_size, 16
    kv = hf.num_key_value_heads * (d // hf.num_attention_heads)
    lora = L * r * ((d + d) * 2 + (d + kv) * 2 + (d + ffn) * 3)  # q,o; k,v; gate,up,down
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert sum(p.numel() for n, p in trainable.items() if "lora_" in n) == lora
    assert sum(p.numel() for n, p in trainable.items() if ".mlp.specific." in n) == 3 * d * 64 * L
    others = sorted(n for n in trainable if "lora_" not in n and ".mlp.specific." not in n)
    assert others == ["base.base_model.model.model.norm.specific.weight", "norm_role_proj.weight"]
    lora_modules = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if "lora_" in n}
    assert lora_modules == set(QARConfig().lora_targets)
    assert not any("specific" in n for n in trainable if "lora_" in n), "no LoRA on the new MLPs"
    assert all("lora_" not in n for n in frozen)

    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(trainable.values(), lr=1e-3)

    def backward():
        opt.zero_grad(set_to_none=True)
        out = model(**batch, labels=labels, responder_mask=batch["attention_mask"])
        (out.loss + out.querier_repr.pow(2).mean()).backward()

    backward()
    opt.step()  # LoRA B moves away from zero, so LoRA A gets a gradient next time
    backward()
    no_grad = [n for n, p in trainable.items() if p.grad is None or p.grad.abs().max() == 0]
    assert no_grad == []
    assert all(p.grad is None for p in frozen.values())


# ---- Done when 4: generation with the KV cache ---------------------------------------------------
def test_greedy_generate_with_cache_equals_without(smollm2, batch):
    model = build(smollm2, specific_init="normal")
    perturb_lora(model)
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=smollm2[1].pad_token_id)
    cached = model.generate(**batch, **kw)
    uncached = model.generate(**batch, use_cache=False, **kw)
    assert cached.shape == (len(TEXTS), batch["input_ids"].shape[1] + 8)
    assert torch.equal(cached, uncached)
    with pytest.raises(NotImplementedError, match="beam search"):
        model.generate(**batch, num_beams=2, max_new_tokens=2)


# ---- Done when 5: save -> load on a fresh base ---------------------------------------------------
def test_save_and_load_on_a_fresh_base_reproduces_logits(smollm2, batch, tmp_path):
    model = build(smollm2, fusion="residual", rank=8)
    with torch.no_grad():  # as if trained: every trainable weight moves
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(tmp_path)
    assert sorted(f.name for f in tmp_path.iterdir()) == [  # peft's layout + the specific weights
        "adapter_config.json", "adapter_model.safetensors", "qlearn_config.json",
        "querier_specific.safetensors"]
    loaded = QuerierAwareLM.from_pretrained(copy.deepcopy(smollm2[0]), tmp_path).eval()
    assert loaded.config == model.config
    assert torch.equal(logits(loaded, batch), logits(model, batch))


def test_loading_onto_a_different_base_fails_clearly(smollm2, tiny, tmp_path):
    build(smollm2, rank=4).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="hidden_size=576"):
        QuerierAwareLM.from_pretrained(copy.deepcopy(tiny[0]), tmp_path)
    with pytest.raises(FileNotFoundError, match="qlearn_config.json"):
        QuerierAwareLM.from_pretrained(copy.deepcopy(tiny[0]), tmp_path / "nothing")


# ---- the querier representation, the loss, the report --------------------------------------------
def test_querier_repr_is_the_normed_specific_stream_averaged_over_responder_tokens(tiny):
    model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig()).eval()
    ids = torch.randint(0, 1000, (3, 9))
    mask = torch.zeros(3, 9, dtype=torch.long)
    mask[0, 2:5] = 1
    mask[1, :] = 1
    seen = []
    model.hf.model.layers[-1].register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        out = model(ids, torch.ones_like(ids), responder_mask=mask)
        specific = model.norm_role_proj(seen[-1][3:])  # rows B: are the specific stream
    assert out.querier_repr.shape == (3, 64)
    assert torch.allclose(out.querier_repr[0], specific[0, 2:5].mean(0), atol=1e-6)
    assert torch.allclose(out.querier_repr[1], specific[1].mean(0), atol=1e-6)
    assert torch.equal(out.querier_repr[2], torch.zeros(64)), "no responder token -> zero vector"
    assert model(ids, torch.ones_like(ids)).querier_repr is None


def test_loss_is_shifted_cross_entropy_ignoring_minus_100(tiny):
    model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(fusion="sum")).eval()
    ids = torch.randint(0, 1000, (2, 7))
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(ids, torch.ones_like(ids), labels=labels, querier=[0, 1], cluster=[2, 3])
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1),
                                                 labels[:, 1:].flatten(), ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_parameter_report_counts_every_parameter(smollm2):
    model = build(smollm2, rank=64)
    report = parameter_report(model, heads=torch.nn.Linear(576, 512))
    total = report.loc["total"]
    assert total["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad) + 576 * 512 + 512
    assert total["frozen"] == sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert report.loc["specific MLPs", "trainable"] == 3 * 576 * 64 * 30
    assert report.loc["embeddings", "frozen"] == 49152 * 576
    assert report.loc["MLP (pretrained)", "trainable"] == 0
    assert report.loc["total", "training MiB"] > report.loc["total", "weights MiB"]


# ---- other decoders, precision, checkpointing, options -------------------------------------------
def tiny_decoder(kind):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(kind, vocab_size=300, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               head_dim=8, max_position_embeddings=128)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("kind", ["qwen2", "mistral", "qwen3"])
def test_other_supported_decoders(kind):
    base = tiny_decoder(kind)
    ids = torch.randint(3, 300, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with torch.no_grad():
        ref = base(input_ids=ids, attention_mask=mask).logits
    for cfg in (QARConfig(fusion="residual"), QARConfig(rank=None, lora_r=0)):
        model = QuerierAwareLM.from_base(copy.deepcopy(base), cfg).eval()
        assert (logits(model, {"input_ids": ids, "attention_mask": mask}) - ref).abs().max() <= 1e-5
    model = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(rank=4)).eval()
    perturb_lora(model, 0.1)
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(model.generate(**kw), model.generate(use_cache=False, **kw))


def test_unsupported_decoder_fails_clearly():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    with pytest.raises(ValueError, match="supports the decoders.*model_type='gpt2'"):
        QuerierAwareLM.from_base(gpt2, QARConfig())


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    ids = torch.randint(0, 1000, (2, 12))

    def grads(checkpointing):
        torch.manual_seed(1)
        model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(lora_dropout=0.0)).train()
        perturb_lora(model)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        out = model(ids, torch.ones_like(ids), labels=ids, responder_mask=torch.ones_like(ids))
        (out.loss + out.querier_repr.sum()).backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[n], ckpt[n], atol=1e-6) for n in plain)
    assert tiny[0].model.layers[0].gradient_checkpointing is False  # the fixture was copied


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_base_trains_fp32_weights_under_autocast(tiny, dtype):
    base = copy.deepcopy(tiny[0]).to(dtype)
    model = QuerierAwareLM.from_base(base, QARConfig(fusion="residual")).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {p.dtype for p in trainable} == {torch.float32}
    ids = torch.randint(0, 1000, (2, 8))
    with torch.autocast("cpu", dtype=dtype):
        out = model(ids, torch.ones_like(ids), labels=ids, responder_mask=torch.ones_like(ids))
        (out.loss + out.querier_repr.float().pow(2).mean()).backward()
    assert torch.isfinite(out.loss) and model.hf.model.norm.alpha.grad is not None
    gen = model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                                do_sample=False)  # no autocast: mixed dtypes must still work
    assert gen.shape == (2, 11)


def test_options_layers_init_and_validation(tiny):
    model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(layers=[1], specific_init="zero"))
    layers = model.hf.model.layers
    assert not isinstance(layers[0].mlp, DualMLP) and isinstance(layers[1].mlp, DualMLP)
    assert layers[1].mlp.specific.w_down.weight.abs().max() == 0
    assert layers[1].mlp.specific.w_gate.weight.std() > 0.01
    with pytest.raises(ValueError, match="layers 0..1"):
        QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(layers=[5]))
    with pytest.raises(ValueError, match="fusion='max'"):
        QARConfig(fusion="max")
    with pytest.raises(ValueError, match="rank=0"):
        QARConfig(rank=0)
    with pytest.raises(ValueError, match="unknown model.rnak"):
        QARConfig.from_dict({"rnak": 3})
    with pytest.raises(ValueError, match="move model.view_dim to contrastive.view_dim"):
        QARConfig.from_dict({"rank": 3, "view_dim": 8})


def test_cli_generate_loads_a_saved_adapter(tiny, tmp_path):
    base, tok = tiny
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(rank=4)).save_pretrained(tmp_path / "run")
    res = subprocess.run([sys.executable, "-m", "qlearn.cli", "generate", "--model", str(tmp_path / "base"),
                          "--adapter", str(tmp_path / "run"), "--text", "Hi", "--responder", "B",
                          "--querier", "A", "--max-new-tokens", "3", "--device", "cpu"],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]


# ---- the "w/o low-rank" variants (QARConfig.specific_mlp) -------------------------------------
def _tiny_batch(tok):
    enc = tok(["Ann: where were you?\nBob: out", "Bob: hi"], return_tensors="pt", padding=True)
    return {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}


def test_specific_mlp_defaults_and_backward_compatibility():
    assert QARConfig().specific_mlp == "low_rank"
    assert QARConfig(rank=None).specific_mlp == "copy_full"  # what rank=None always meant
    assert QARConfig.from_dict({"rank": None}).specific_mlp == "copy_full"  # an old saved config
    assert QARConfig(specific_mlp="copy_lora", rank=None).specific_mlp == "copy_lora"
    with pytest.raises(ValueError, match="specific_mlp='full'"):
        QARConfig(specific_mlp="full")
    with pytest.raises(ValueError, match="needs a rank"):
        QARConfig(specific_mlp="low_rank", rank=None)


@pytest.mark.parametrize("kind", ["low_rank", "copy_lora", "full_random", "copy_full"])
def test_specific_mlp_variants_build_train_the_right_parameters_and_start_where_they_should(tiny, kind):
    base, tok = tiny
    batch = _tiny_batch(tok)
    with torch.no_grad():
        ref = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    pre = base.model.layers[0].mlp
    model = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(
        specific_mlp=kind, rank=8, lora_r=4, lora_dropout=0.0, fusion="mean"))
    spec = model.hf.model.layers[0].mlp.specific
    d, inter = base.config.hidden_size, base.config.intermediate_size
    width = {"low_rank": 8}.get(kind, inter)
    assert spec.w_gate.weight.shape == (width, d) and spec.w_down.weight.shape == (d, width)
    copied = torch.equal(spec.w_gate.weight.to(pre.gate_proj.weight.dtype), pre.gate_proj.weight)
    assert copied == (kind in ("copy_lora", "copy_full"))

    trainable = {n for n, p in model.named_parameters() if p.requires_grad and ".mlp.specific." in n}
    copy_weights = {n for n, _ in model.named_parameters() if ".mlp.specific.w_" in n}
    if kind == "copy_lora":
        assert trainable and not trainable & copy_weights  # only the LoRA on the frozen copy
        assert all(".adapt_" in n for n in trainable)
        n_lora = sum(p.numel() for n, p in model.named_parameters() if n in trainable)
        # r·(in + out) for each of gate, up (d -> inter) and down (inter -> d), r = lora_r = 4
        assert n_lora == len(model.hf.model.layers) * 4 * 3 * (d + inter)
    else:
        assert trainable == copy_weights  # the whole specific SwiGLU trains

    with torch.no_grad():
        out = model(**batch).logits
    # the copies start as the pretrained MLP: mean fusion of two equal streams = the base model
    assert torch.allclose(out, ref, atol=1e-5) == (kind in ("copy_lora", "copy_full"))

    model.train()
    loss = model(**batch).loss
    loss.backward()
    for n, p in model.named_parameters():
        if ".mlp.specific." in n:
            assert (p.grad is not None) == (n in trainable), n
            if n in trainable and ".adapt_a." not in n:  # LoRA's A has zero gradient while B = 0
                assert p.grad.abs().sum() > 0, n
    before = spec.w_gate.weight.detach().clone()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    assert torch.equal(spec.w_gate.weight, before) == (kind == "copy_lora")


def test_random_full_width_control_has_the_low_rank_init(tiny):
    """full_random differs from low_rank only in width: the same N(0, initializer_range) init."""
    std = tiny[0].config.initializer_range
    for kind in ("low_rank", "full_random"):
        model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(specific_mlp=kind, rank=8))
        w = model.hf.model.layers[1].mlp.specific.w_up.weight
        assert abs(w.std().item() - std) < 0.3 * std and abs(w.mean().item()) < 0.3 * std


def test_copy_lora_saves_only_its_lora_and_reloads(tiny, tmp_path):
    from safetensors.torch import load_file

    from qlearn.model import SPECIFIC_FILE

    base, tok = tiny
    batch = _tiny_batch(tok)
    model = QuerierAwareLM.from_base(copy.deepcopy(base), QARConfig(specific_mlp="copy_lora", lora_r=4))
    with torch.no_grad():
        for p in model.hf.model.layers[0].mlp.specific.adapt_b.values():
            p.normal_(std=0.1)  # a trained-looking adapter
    model.save_pretrained(tmp_path / "run")
    saved = load_file(str(tmp_path / "run" / SPECIFIC_FILE))
    assert any(".adapt_b." in k for k in saved) and not any(".specific.w_" in k for k in saved)
    back = QuerierAwareLM.from_pretrained(copy.deepcopy(base), tmp_path / "run").eval()
    assert torch.allclose(logits(back, batch), logits(model.eval(), batch), atol=1e-5)
