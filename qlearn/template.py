"""The turn template of docs/method.md §6: ``<turn-start>{speaker}\\n{text}<turn-end>\\n``.

The turn tokens are the tokenizer's own (ChatML ``<|im_start|>``/``<|im_end|>`` for SmolLM2 and
Qwen; Llama-3's header tokens), and the speaker's *name* stands where a chat template puts the role,
so querier identity reaches the model only through the text.

The start-of-text token (``TurnFormat.bos``) is the one the tokenizer itself puts first when asked
for special tokens: Llama-3's ``<|begin_of_text|>``; none for ChatML tokenizers (SmolLM2, Qwen),
which add nothing. It opens every sequence once — the collator puts it before the first turn (it
survives left truncation, with label -100) and ``generate_replies`` before every prompt — while the
turns themselves are always tokenized with ``add_special_tokens=False``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence


@dataclass(frozen=True)
class TurnFormat:
    start: str  # opens a turn, before the speaker's name
    sep: str  # between the speaker's name and the text
    end: str  # closes a turn: the token the model must learn to emit, and generation stops at
    bos: str = ""  # start-of-text token, once at the start of a sequence ("" = the family has none)

    def turn(self, speaker: str, text: str) -> str:
        return f"{self.start}{speaker}{self.sep}{text}{self.end}\n"

    def header(self, speaker: str) -> str:
        """What the prompt ends with when ``speaker`` is to talk next."""
        return f"{self.start}{speaker}{self.sep}"


CHATML = TurnFormat("<|im_start|>", "\n", "<|im_end|>")
LLAMA3 = TurnFormat("<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>")


def start_of_text(tokenizer) -> str:
    """The start-of-text token the tokenizer prepends with ``add_special_tokens=True`` (its
    ``bos_token``), or "" when it prepends none (SmolLM2 and Qwen have a ``bos_token`` or none, but
    never add it)."""
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if not bos or bos_id is None:
        return ""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    special = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos if len(special) > len(plain) and special[0] == bos_id else ""


def turn_format(tokenizer) -> TurnFormat:
    """The turn tokens this tokenizer's chat template uses (and its start-of-text token, see
    :func:`start_of_text`); a clear error if it has none we know."""
    vocab = tokenizer.get_vocab()
    for fmt in (CHATML, LLAMA3):
        if fmt.start in vocab and fmt.end in vocab:
            return replace(fmt, bos=start_of_text(tokenizer))
    raise ValueError(
        f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has neither ChatML "
        "(<|im_start|>/<|im_end|>) nor Llama-3 (<|start_header_id|>/<|eot_id|>) turn tokens; "
        "qlearn supports SmolLM2, Qwen2/2.5 and Llama-3 style chat models."
    )


def render_dialogue(fmt: TurnFormat, turns: Iterable[Sequence[str]], next_speaker: str | None = None) -> str:
    """Render ``[(speaker, text), ...]``; with ``next_speaker``, end with that speaker's open header."""
    text = "".join(fmt.turn(s, t) for s, t in turns)
    return text + (fmt.header(next_speaker) if next_speaker else "")
