"""Win rate by an LLM judge: two systems' replies to the same window, judged in both orders.

The paper reports GPT-4 win rates but its prompt is not available, so qlearn publishes its own
(``JUDGE_PROMPT``). Each window is judged twice, once with system A's reply shown first and once
with it second, which cancels the judge's position bias; a verdict may be a tie. A window scores
1 (A wins), 0.5 (tie) or 0 (B wins) per order, and the win rate is the mean over both orders.
Judge output that names no verdict is counted as *invalid*, reported, and left out of the rate.

Judges: any chat model loaded with transformers (``HFJudge``; offline tests use SmolLM2-135M,
which is far too weak to trust and only exercises the plumbing) or an OpenAI-compatible endpoint
(``EndpointJudge``), configured by ``QLEARN_JUDGE_BASE_URL``, ``QLEARN_JUDGE_MODEL`` and
``QLEARN_JUDGE_API_KEY``.
"""
from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tqdm.auto import tqdm

JUDGE_PROMPT = """\
You are judging replies in a two-person conversation between {responder} (who replies) and \
{querier} (who is talking to {responder}).

Conversation so far:
{dialogue}

Two candidate replies by {responder}:
[Reply 1] {first}
[Reply 2] {second}

Which reply is more likely to be what {responder} would really say to {querier} at this point? \
Consider how {responder} speaks, how {responder} treats {querier} in particular, and whether the \
reply fits the conversation. Length alone is not a reason to prefer a reply.
Answer with one line: "Verdict: 1", "Verdict: 2" or "Verdict: tie"."""

VERDICTS = ("1", "2", "tie")


def judge_prompt(window, first: str, second: str) -> str:
    dialogue = "\n".join(f"{s}: {t}" for s, t in window.context)
    return JUDGE_PROMPT.format(responder=window.responder, querier=window.querier,
                               dialogue=dialogue, first=first or "(empty)", second=second or "(empty)")


_TIE = r"(tie|draw|equal(ly)?|both|neither|same)"
_PATTERNS = [  # most explicit first
    re.compile(r"verdict\s*[:=\-]?\s*\**\s*(?:\[+)?\s*(reply\s*)?(1|2|tie)\b", re.I),
    re.compile(r"\[\[\s*(1|2|tie)\s*\]\]", re.I),
    re.compile(r"^\s*\**\s*(?:reply\s*)?(1|2|tie)\s*\**\s*[.!]?\s*$", re.I | re.M),
]


def parse_verdict(text: str) -> str | None:
    """``"1"``, ``"2"``, ``"tie"`` or ``None`` (no verdict / contradictory) from a judge's output."""
    if not text:
        return None
    for pat in _PATTERNS:
        m = pat.search(text)
        if m:
            v = m.group(m.lastindex).lower()
            return v if v in VERDICTS else None
    one = re.search(r"\breply\s*1\b[^.\n]*\b(better|more likely|wins?|prefer)", text, re.I) or \
        re.search(r"\b(prefer|choose|pick)\w*\s+(reply\s*)?1\b", text, re.I)
    two = re.search(r"\breply\s*2\b[^.\n]*\b(better|more likely|wins?|prefer)", text, re.I) or \
        re.search(r"\b(prefer|choose|pick)\w*\s+(reply\s*)?2\b", text, re.I)
    if one and not two:
        return "1"
    if two and not one:
        return "2"
    if not one and not two and re.search(rf"\b{_TIE}\b", text, re.I):
        return "tie"
    return None


@dataclass
class WinRate:
    """A's win rate against B over windows judged in both orders (ties count half)."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    invalid: int = 0
    records: list = field(default_factory=list)  # per window: verdict for (A first, B first)

    @property
    def judged(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float:
        """Win rate ×100 over valid judgements (ties half); NaN when none was valid."""
        return 100 * (self.wins + 0.5 * self.ties) / self.judged if self.judged else float("nan")

    def __str__(self):
        return (f"win rate {self.rate:.1f}% ({self.wins} W / {self.ties} T / {self.losses} L over "
                f"both orders, {self.invalid} invalid judge outputs)")


def win_rate(judge: Callable[[list[str]], list[str]], windows: Sequence, replies_a: Sequence[str],
             replies_b: Sequence[str]) -> WinRate:
    """Judge A against B on every window, both orders; ``judge`` maps prompts to outputs."""
    if not (len(windows) == len(replies_a) == len(replies_b)):
        raise ValueError(f"{len(windows)} windows, {len(replies_a)} replies of A and "
                         f"{len(replies_b)} of B: give one reply per window from each system")
    prompts = []
    for w, a, b in zip(windows, replies_a, replies_b):
        prompts += [judge_prompt(w, a, b), judge_prompt(w, b, a)]
    outputs = judge(prompts)
    result = WinRate()
    for i, w in enumerate(windows):
        a_first, b_first = parse_verdict(outputs[2 * i]), parse_verdict(outputs[2 * i + 1])
        # translate "which position won" into "did A win" for each order
        for verdict, a_pos in ((a_first, "1"), (b_first, "2")):
            if verdict is None:
                result.invalid += 1
            elif verdict == "tie":
                result.ties += 1
            elif verdict == a_pos:
                result.wins += 1
            else:
                result.losses += 1
        result.records.append({"id": w.id, "a_first": a_first, "b_first": b_first,
                               "raw": [outputs[2 * i], outputs[2 * i + 1]]})
    return result


class HFJudge:
    """A local or hub chat model as judge (greedy, short answers)."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 24, batch_size: int = 4):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    @classmethod
    def load(cls, name: str, **kwargs) -> "HFJudge":
        from ..assets import load_lm

        return cls(*load_lm(name), **kwargs)

    def __call__(self, prompts: list[str]) -> list[str]:
        from ..generation import generate_replies

        chats = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True) for p in prompts]
        return generate_replies(self.model, self.tokenizer, chats, max_new_tokens=self.max_new_tokens,
                                batch_size=self.batch_size)


class EndpointJudge:
    """An OpenAI-compatible ``/chat/completions`` endpoint (urllib, temperature 0)."""
    # urllib, not the openai client: the judge needs one POST, not a dependency of every install

    def __init__(self, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None, timeout: float = 60.0):
        self.base_url = (base_url or os.environ.get("QLEARN_JUDGE_BASE_URL") or "").rstrip("/")
        self.model = model or os.environ.get("QLEARN_JUDGE_MODEL")
        self.api_key = api_key or os.environ.get("QLEARN_JUDGE_API_KEY", "")
        self.timeout = timeout
        if not self.base_url or not self.model:
            raise ValueError("endpoint judge needs QLEARN_JUDGE_BASE_URL (e.g. "
                             "https://api.openai.com/v1) and QLEARN_JUDGE_MODEL (e.g. gpt-4o) set, "
                             "and QLEARN_JUDGE_API_KEY if the endpoint wants a key")

    def _one(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": 32,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.api_key}"}
                                                 if self.api_key else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read().decode())
        except OSError as e:
            raise RuntimeError(f"judge endpoint {self.base_url} failed: {e}; check "
                               "QLEARN_JUDGE_BASE_URL / QLEARN_JUDGE_API_KEY") from e
        return data["choices"][0]["message"]["content"] or ""

    def __call__(self, prompts: list[str]) -> list[str]:
        return [self._one(p) for p in tqdm(prompts, desc="judge", disable=len(prompts) < 4)]


def make_judge(name: str | None = None):
    """``"endpoint"`` (or None with QLEARN_JUDGE_BASE_URL set) -> EndpointJudge; else HFJudge.load(name)."""
    if name == "endpoint" or (name is None and os.environ.get("QLEARN_JUDGE_BASE_URL")):
        return EndpointJudge()
    if name is None:
        raise ValueError("no judge: pass a chat model name (e.g. Qwen/Qwen2.5-7B-Instruct) or set "
                         "QLEARN_JUDGE_BASE_URL and QLEARN_JUDGE_MODEL for an endpoint")
    return HFJudge.load(name)
