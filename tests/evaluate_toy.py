"""A small synthetic dialogue dataset written for the evaluation tests (no transcript text).

Responder Bob talks with three queriers, each about their own topic, so retrieval, querier
profiles and differentiation have something real to find.
"""
from types import SimpleNamespace

from qlearn.data import Turn, Window

TOPICS = {
    "Ann": ["the quarterly report", "the budget meeting", "the client deadline", "the sales figures"],
    "Carl": ["the football match", "the last goal", "our team's coach", "the league table"],
    "Dee": ["the chocolate cake", "the bread recipe", "the new oven", "the dinner menu"],
}
OPENERS = ["Did you see {t}?", "What do you think about {t}?", "Can we talk about {t}?",
           "I keep thinking about {t}.", "Any news on {t}?", "Tell me about {t}."]
REPLIES = {"Ann": "Yes boss, I will look at {t} today.", "Carl": "Mate, {t} was unbelievable!",
           "Dee": "Oh I love {t}, let's try it tonight."}


def toy_windows(querier, n, offset=0, split="train"):
    pid = list(TOPICS).index(querier) + 1
    out = []
    for i in range(offset, offset + n):
        t = TOPICS[querier][i % 4]
        turns = [Turn(querier, OPENERS[i % 6].format(t=t)), Turn("Bob", REPLIES[querier].format(t=t))]
        if i % 2:
            turns = [Turn("Bob", "Hi there."), Turn(querier, "Hey Bob.")] + turns
        out.append(Window(id=f"{querier}-{split}-{i}", turns=turns, responder="Bob", querier=querier,
                          role_pair_id=pid, cluster_id=i % 2, segment_id=f"{querier}-{split}-{i}",
                          split=split))
    return out


def toy_dataset(n_train=8, n_val=2, n_test=2):
    splits = {}
    for split, n, off in (("train", n_train, 0), ("val", n_val, 50), ("test", n_test, 100)):
        splits[split] = [w for q in TOPICS for w in toy_windows(q, n, off, split)]
    return SimpleNamespace(source="synthetic", responder="Bob", queriers=list(TOPICS), stats={},
                           **splits)
