"""Batched reply generation: left padding, greedy by default, stop at the turn end."""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from .template import turn_format


@torch.no_grad()
def generate_replies(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 64,
                     batch_size: int = 8, do_sample: bool = False, temperature: float = 0.7,
                     top_p: float = 0.9, progress: bool = True) -> list[str]:
    """Continue each prompt (already rendered, ending with the responder's open header).

    Prompts are left-padded in batches; decoding stops at the turn-end token or EOS, and the
    reply is returned without special tokens, stripped.
    """
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
    Each prompt gets the family's start-of-text token once (``TurnFormat.bos``; none for ChatML).
