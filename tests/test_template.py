"""The start-of-text token per model family, in training (collator) and generation alike.

Llama-3-style and Qwen/ChatML-style tokenizers are built here, offline, from a tokenizer file the
test writes (the tokenizers library: a word-level vocabulary with each family's special tokens and,
for Llama-3, the post-processor that prepends <|begin_of_text|>). SmolLM2 is the real one.
"""
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from qlearn.collate import IGNORE, Collator
from qlearn.data.types import Turn, Window
from qlearn.generation import generate_replies
from qlearn.template import CHATML, LLAMA3, render_dialogue, start_of_text, turn_format

WORDS = "Ross Rachel Monica hi how are you fine thanks we were on a break".split()
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"]
CHATML_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _tokenizer(tmp_path, special, bos=None, prepend_bos=False, **kw):
    vocab = {t: i for i, t in enumerate(["<unk>", *special, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    if prepend_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))  # the tokenizer file, then loaded as transformers does
    return PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token=bos, unk_token="<unk>", **kw)


def llama3(tmp_path):
    return _tokenizer(tmp_path, LLAMA3_SPECIAL, bos="<|begin_of_text|>", prepend_bos=True,
                      eos_token="<|eot_id|>", pad_token="<|finetune_right_pad_id|>")


def qwen(tmp_path):  # Qwen2: no bos_token, nothing prepended
    return _tokenizer(tmp_path, CHATML_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def window(n_turns=4):
    turns = [Turn("Rachel" if i % 2 == 0 else "Ross", "how are you" if i % 2 == 0 else "fine thanks")
             for i in range(n_turns)]
    return Window(id="w", turns=turns, responder="Ross", querier="Rachel", role_pair_id=1,
                  split="train")


def test_start_of_text_per_family(tmp_path):
    from qlearn.assets import load_tokenizer

    l3, qw = llama3(tmp_path), qwen(tmp_path)
    assert l3("hi", add_special_tokens=True)["input_ids"][0] == l3.bos_token_id  # as Llama-3 does
    assert start_of_text(l3) == "<|begin_of_text|>"
    assert turn_format(l3) == LLAMA3.__class__(LLAMA3.start, LLAMA3.sep, LLAMA3.end, "<|begin_of_text|>")
    assert start_of_text(qw) == "" and turn_format(qw) == CHATML
    smol = load_tokenizer("smollm2-135m")  # has bos_token <|im_start|> but never prepends it
    assert smol.bos_token == "<|im_start|>" and start_of_text(smol) == ""
    assert turn_format(smol).bos == ""


def test_collator_puts_the_llama3_bos_first_once_unlabelled(tmp_path):
    tok = llama3(tmp_path)
    bos = tok.bos_token_id
    f = Collator(tok, max_length=512).encode(window())
    assert f["input_ids"][0] == bos and f["input_ids"].count(bos) == 1
    assert f["labels"][0] == IGNORE and f["responder_mask"][0] == 0
    assert f["input_ids"][1] == tok.convert_tokens_to_ids("<|start_header_id|>")
    assert any(label != IGNORE for label in f["labels"])  # the responder is still supervised

    full = len(f["input_ids"])
    short = Collator(tok, max_length=full - 3)  # forces left truncation of whole turns
    g = short.encode(window())
    assert len(g["input_ids"]) <= full - 3 and short.stats["truncated_turns"] >= 1
    assert g["input_ids"][0] == bos and g["input_ids"].count(bos) == 1 and g["labels"][0] == IGNORE
    tiny = Collator(tok, max_length=4).encode(window(2))  # the last turn alone is too long
    assert len(tiny["input_ids"]) == 4 and tiny["input_ids"][0] == bos


def test_collator_adds_nothing_for_chatml(tmp_path):
    tok = qwen(tmp_path)
    f = Collator(tok, max_length=512).encode(window())
    assert f["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")
    rendered = render_dialogue(CHATML, [(t.speaker, t.text) for t in window().turns])
    assert f["input_ids"] == tok(rendered, add_special_tokens=False)["input_ids"]


class _Recorder(torch.nn.Module):
    """Stands in for a causal LM: records the prompt ids and answers with the turn end."""

    def __init__(self, end_id):
        super().__init__()
        self.w, self.end_id, self.seen = torch.nn.Parameter(torch.zeros(1)), end_id, []

    def generate(self, input_ids, attention_mask, **kw):
        self.seen.append((input_ids.clone(), attention_mask.clone()))
        return torch.cat([input_ids, torch.full((len(input_ids), 1), self.end_id)], dim=1)


def test_generation_prompts_start_with_the_bos_once(tmp_path):
    for tok, bos in ((llama3(tmp_path), "<|begin_of_text|>"), (qwen(tmp_path), None)):
        fmt = turn_format(tok)
        model = _Recorder(tok.convert_tokens_to_ids(fmt.end))
        prompts = [render_dialogue(fmt, [("Rachel", "how are you")], "Ross"),
                   render_dialogue(fmt, [("Rachel", "we were on a break"), ("Ross", "fine")], "Ross")]
        generate_replies(model, tok, prompts, max_new_tokens=4, batch_size=2, progress=False)
        ids, mask = model.seen[0]
        for row, m in zip(ids, mask):
            real = row[m.bool()].tolist()  # left padding removed
            if bos:
                assert real[0] == tok.bos_token_id and real.count(tok.bos_token_id) == 1
            else:
                assert real[0] == tok.convert_tokens_to_ids("<|im_start|>")
        if bos:  # a prompt that already starts with it is not given a second one
            model.seen.clear()
            generate_replies(model, tok, [bos + prompts[0]], max_new_tokens=4, progress=False)
            assert model.seen[0][0][0].tolist().count(tok.bos_token_id) == 1


def test_left_truncated_prompt_keeps_room_for_the_bos(tmp_path):
    """A prompt longer than the context loses its oldest tokens; the start-of-text token still goes
    first and the prompt plus the reply budget still fit the context."""
    import warnings
    from types import SimpleNamespace

    tok = llama3(tmp_path)
    fmt = turn_format(tok)
    model = _Recorder(tok.convert_tokens_to_ids(fmt.end))
    model.config = SimpleNamespace(max_position_embeddings=24)
    long = render_dialogue(fmt, [("Rachel", "how are you " * 8)], "Ross")
    assert len(tok(long, add_special_tokens=False)["input_ids"]) > 24
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation warning
        generate_replies(model, tok, [long], max_new_tokens=4, progress=False)
    ids = model.seen[0][0][0].tolist()
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert len(ids) + 4 <= 24
    assert ids[-1] == tok.convert_tokens_to_ids("<|end_header_id|>")  # the open header is kept
