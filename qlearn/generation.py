"""Batched reply generation: left padding, greedy by default, stop at the turn end."""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from .template import start_of_text, turn_format


def context_length(model) -> int | None:
    """The model's context in tokens (``max_position_embeddings``), or None if it has none."""
    for m in (model, getattr(model, "hf", None), getattr(model, "base", None)):
        n = getattr(getattr(m, "config", None), "max_position_embeddings", None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def fit_context(model, tokenizer, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Prompts that fit the context with ``max_new_tokens`` to spare: a longer one loses its
    oldest tokens (left truncation: the responder's open header at the end is kept), with a
    :class:`~qlearn.errors.QlearnWarning` saying how many; an impossible budget raises."""
    from .errors import InputError, warn

    prompts = list(prompts)
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InputError("an empty prompt: give each prompt some text to continue")
    n_ctx = context_length(model)
    if n_ctx is None:
        return prompts
    # generate_replies puts the start-of-text token (Llama-3) before every prompt: room for it
    budget = n_ctx - max_new_tokens - (1 if start_of_text(tokenizer) else 0)
    if budget < 8:
        raise InputError(f"max_new_tokens={max_new_tokens} leaves {budget} of the model's "
                         f"{n_ctx} context tokens for the prompt; use a smaller max_new_tokens")
    out, cut = [], []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        if len(ids) > budget:
            cut.append(len(ids) - budget)
            p = tokenizer.decode(ids[-budget:], skip_special_tokens=False)
        out.append(p)
    if cut:
        how = (f"its oldest {cut[0]} tokens were cut" if len(cut) == 1 else
               f"up to {max(cut)} of their oldest tokens were cut")
        warn(f"{len(cut)} of {len(prompts)} prompt(s) longer than the model's context ({n_ctx} "
             f"tokens, {max_new_tokens} kept for the reply): {how} (left truncation)")
    return out


@torch.no_grad()
def generate_replies(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 64,
                     batch_size: int = 8, do_sample: bool = False, temperature: float = 0.7,
                     top_p: float = 0.9, progress: bool = True) -> list[str]:
    """Continue each prompt (already rendered, ending with the responder's open header).

    Each prompt gets the family's start-of-text token once (``TurnFormat.bos``; none for ChatML).
    Prompts are left-padded in batches; decoding stops at the turn-end token or EOS, and the
    reply is returned without special tokens, stripped.
    """
    prompts = fit_context(model, tokenizer, prompts, max_new_tokens)
    fmt = turn_format(tokenizer)
    stop_ids = sorted({tokenizer.convert_tokens_to_ids(fmt.end), tokenizer.eos_token_id})
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    replies: list[str] = []
    try:
        starts = range(0, len(prompts), batch_size)
        for i in tqdm(starts, desc="generate", disable=not progress or len(starts) < 2):
            part = [p if fmt.bos and p.startswith(fmt.bos) else fmt.bos + p  # start-of-text, once
                    for p in prompts[i:i + batch_size]]
            batch = tokenizer(part, return_tensors="pt", padding=True,
                              add_special_tokens=False).to(device)
            kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                          eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p)
            out = model.generate(**batch, **kwargs)
            new = out[:, batch["input_ids"].shape[1]:]
            replies += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return replies
