"""The ``qlearn`` command. Thin: it parses arguments and calls library functions.

Each subcommand has one ``_add_<name>`` function (its options) and one ``_run_<name>`` function
(which imports the library lazily, so ``qlearn --help`` stays fast).
"""
from __future__ import annotations

import argparse
import os
import sys

from .assets import SMOLLM2


def _add_generate(sub):
    p = sub.add_parser("generate", help="reply to one message with a pretrained or trained model",
                       description="Greedy reply to --text. With --responder and --querier the "
                       "prompt uses qlearn's turn template (speaker names on every turn); "
                       "otherwise the tokenizer's chat template.")
    p.add_argument("--model", default=SMOLLM2, help="short name, hub id or local folder (default: %(default)s)")
    p.add_argument("--adapter", help="folder of a trained qlearn model (save_pretrained output)")
    p.add_argument("--text", required=True, help="the query")
    p.add_argument("--responder", help="who answers (renders the turn template)")
    p.add_argument("--querier", help="who asks (renders the turn template)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default=None)


def _run_generate(args):
    from .assets import load_lm
    from .generation import generate_replies
    from .template import render_dialogue, turn_format

    if bool(args.responder) != bool(args.querier):
        sys.exit("qlearn generate: give both --responder and --querier, or neither")
    model, tokenizer = load_lm(args.model, dtype=args.dtype, device=args.device)
    if args.adapter:
        from .model import QuerierAwareLM

        model = QuerierAwareLM.from_pretrained(model, args.adapter).eval()
    if args.responder:
        prompt = render_dialogue(turn_format(tokenizer), [(args.querier, args.text)], args.responder)
    else:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": args.text}],
                                               add_generation_prompt=True, tokenize=False)
    print(generate_replies(model, tokenizer, [prompt], max_new_tokens=args.max_new_tokens,
                           do_sample=args.sample, progress=False)[0])


def _add_demo(sub):
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded defaults and write a report",
                       description="data -> clusters -> training -> evaluation -> figures -> report, "
                       "offline, on chitchat data, SmolLM2-135M and MiniLM.")
    p.add_argument("--out", default="runs/demo", help="report folder (default: %(default)s)")
    p.add_argument("--model", default=SMOLLM2)


def _run_demo(args):
    from .demo import run_demo

    run_demo(out=args.out, model=args.model)


def _add_data(sub):
    sub.add_parser("data", help="build, inspect and download dialogue datasets (MQDialog layout)")


def _add_cluster(sub):
    sub.add_parser("cluster", help="cluster each window's query (embeddings + k-means) and plot UMAP")


def _add_train(sub):
    sub.add_parser("train", help="train a querier-aware model from a YAML recipe")


def _add_evaluate(sub):
    sub.add_parser("evaluate", help="generate replies for test windows and score them")


COMMANDS = ["demo", "data", "cluster", "train", "generate", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qlearn", description="Querier-aware LLM personalization: course library and tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        globals()[f"_add_{name}"](sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run = globals().get(f"_run_{args.command}")
    if run is None:
        sys.exit(f"qlearn {args.command}: not built yet in this version")
    run(args)


if __name__ == "__main__":
    main()
