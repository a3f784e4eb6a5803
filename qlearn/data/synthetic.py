"""A small invented dataset (no transcripts needed) for fast tests, demos and exercises.

The responder "Sam" talks to several queriers; each querier has their own topics and Sam answers
each one in a recognisably different register, so a querier-aware model has something to learn.
The dialogues go through the real pipeline (segments, split, windows), so the result is a normal
:class:`~qlearn.data.Dataset`.
"""
from __future__ import annotations

import random

from .pipeline import BuildConfig, Dataset, build_from_show
from .readers import Chunk, Show
from .types import Turn

PERSONAS = {  # querier -> (questions, Sam's reply openers, Sam's reply closers)
    "Mom": (["Did you eat something warm today?", "Are you sleeping enough, sweetheart?",
             "When are you coming home for dinner?", "Did you call your grandmother?",
             "Do you need me to send you anything?"],
            ["Yes Mom, don't worry,", "I promise I'm fine,", "Aw Mom,"],
            ["love you!", "I'll call you on Sunday.", "tell Dad I said hi."]),
    "Boss": (["Is the quarterly report ready?", "Can you present the results on Monday?",
              "Why was the deadline missed?", "Could you review the budget draft?",
              "Are the client slides finished?"],
             ["Certainly,", "Understood,", "Thank you for checking in,"],
             ["I will send it by end of day.", "I'll keep you posted.",
              "please let me know if you need anything else."]),
    "Jo": (["dude are you coming to the game tonight?", "wanna grab pizza later?",
            "did you see that crazy video lol", "you still owe me five bucks",
            "party at mine on saturday, you in?"],
           ["haha yeah", "lol no way,", "omg"],
           ["see ya there!", "text me", "that's wild"]),
    "Dr. Lee": (["How has the pain been since our last visit?", "Are you taking the medication?",
                 "Any side effects this week?", "Have you been exercising?",
                 "Did you get the blood test done?"],
                ["Good morning doctor,", "To be honest,", "Thanks for asking,"],
                ["it has been a bit better.", "I will book the test tomorrow.",
                 "I have been walking every day."]),
    "Kim": (["Can you help me move the couch this weekend?", "What book should I read next?",
             "Do you still have my umbrella?", "Should I adopt a cat?", "Want to go hiking?"],
            ["Sure thing,", "Hmm, good question,", "Oh totally,"],
            ["let's plan it.", "I'll bring snacks.", "you'd love it."]),
}


def synthetic_dataset(n_queriers: int = 4, segments_per_querier: int = 24, seed: int = 0,
                      responder: str = "Sam", config: BuildConfig | None = None) -> Dataset:
    """Build a deterministic invented dataset with ``n_queriers`` (<= 5) queriers."""
    if not 1 <= n_queriers <= len(PERSONAS):
        raise ValueError(f"n_queriers must be 1..{len(PERSONAS)}, got {n_queriers}")
    rng = random.Random(seed)
    names = list(PERSONAS)[:n_queriers]
    chunks = []
    for q in names:
        questions, openers, closers = PERSONAS[q]
        for k in range(segments_per_querier):
            turns = []
            if rng.random() < 0.3:  # a third person opens the scene: not part of the segment
                turns.append(Turn("Waiter", "Can I get you anything?"))
            for _ in range(rng.randint(1, 3)):
                turns.append(Turn(q, rng.choice(questions)))
                turns.append(Turn(responder, f"{rng.choice(openers)} {rng.choice(closers)}"))
            chunks.append(Chunk(f"episode_{q}_chunk_{k}", turns))
    rng.shuffle(chunks)
    show = Show("synthetic", "en", chunks)
    cfg = config or BuildConfig(seed=seed, min_utterances=1, min_segments=1, dedup_train=False)
    return build_from_show(show, responder, cfg)
