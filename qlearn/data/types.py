"""The typed objects every stage shares. A window serializes to one MQDialog JSON sample."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Turn(NamedTuple):
    speaker: str
    text: str


@dataclass
class Window:
    """One training or test sample: a two-person dialogue window that ends with the responder.

    MQDialog fields: ``id``, ``conversations`` (= ``turns``), ``target_role`` (= ``responder``),
    ``input_role`` (= ``querier``), ``role_pair_id`` (1-based querier index) and, in the
    ``*_clustered`` copies, ``cluster_id``. ``segment_id`` and ``split`` are qlearn's bookkeeping.
    """

    id: str
    turns: list[Turn]
    responder: str
    querier: str
    role_pair_id: int
    cluster_id: int | None = None
    segment_id: str | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)  # other MQDialog keys, kept for round-trips

    def __post_init__(self):
        self.turns = [Turn(*t) for t in self.turns]

    @property
    def reply(self) -> str:
        """The final responder turn: what the model must generate."""
        return self.turns[-1].text

    @property
    def context(self) -> list[Turn]:
        """Every turn before the final one (the prompt)."""
        return self.turns[:-1]

    @property
    def query(self) -> str:
        """The querier's turns just before the final responder turn (what clustering embeds)."""
        i = len(self.turns) - 2
        while i >= 0 and self.turns[i].speaker == self.responder:
            i -= 1
        parts = []
        while i >= 0 and self.turns[i].speaker == self.querier:
            parts.append(self.turns[i].text)
            i -= 1
        return "\n".join(reversed(parts)) if parts else "\n".join(t.text for t in self.context)

    def supervised_indices(self) -> list[int]:
        """Indices of the turns training supervises: every responder turn after the window's
        first querier turn. A responder turn with no query before it in the window is not a reply
        to learn (the official code drops such a leading turn when training), and it may be a
        held-out target of the neighbouring segment (see :mod:`qlearn.data.audit`)."""
        first = next((i for i, t in enumerate(self.turns) if t.speaker != self.responder), None)
        if first is None:
            return []
        return [i for i in range(first + 1, len(self.turns))
                if self.turns[i].speaker == self.responder]

    @property
    def querier_index(self) -> int:
        """0-based querier label for losses and probes (``role_pair_id - 1``)."""
        return self.role_pair_id - 1

    def to_mqdialog(self) -> dict:
        extra = dict(self.extra)
        turn_extra = extra.pop("_turn_extra", None) or [{}] * len(self.turns)
        conv = [{"from": s, "value": t, **x} for (s, t), x in zip(self.turns, turn_extra)]
        d = {"id": self.id, "conversations": conv, "target_role": self.responder,
             "input_role": self.querier, "role_pair_id": self.role_pair_id, **extra}
        if self.cluster_id is not None:
            d["cluster_id"] = self.cluster_id
        if self.segment_id is not None:
            d["segment_id"] = self.segment_id
        return d

    @classmethod
    def from_mqdialog(cls, d: dict, split: str | None = None) -> "Window":
        known = {"id", "conversations", "target_role", "input_role", "role_pair_id", "cluster_id",
                 "segment_id"}
        conv = d["conversations"]
        turns = [Turn(c["from"], c["value"]) for c in conv]
        extra = {k: v for k, v in d.items() if k not in known}
        if any(len(c) > 2 for c in conv):  # e.g. WeChat timestamps: keep them for the writer
            extra["_turn_extra"] = [{k: v for k, v in c.items() if k not in ("from", "value")}
                                    for c in conv]
        return cls(id=str(d["id"]), turns=turns, responder=d["target_role"],
                   querier=d["input_role"], role_pair_id=int(d["role_pair_id"]),
                   cluster_id=d.get("cluster_id"), segment_id=d.get("segment_id"), split=split,
                   extra=extra)
