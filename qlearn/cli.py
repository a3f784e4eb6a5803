"""The ``qlearn`` command. Thin: it parses arguments and calls library functions.

Each subcommand has one ``_add_<name>`` function (its options) and one ``_run_<name>`` function
(which imports the library lazily, so ``qlearn --help`` stays fast).
"""
from __future__ import annotations

import argparse
import os
import shlex
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
    p = sub.add_parser("data", help="build, inspect and download dialogue datasets (MQDialog layout)",
                       description="Rebuild MQDialog from public transcripts (docs/method.md §2).")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="build one responder (or --all) and save the MQDialog layout")
    b.add_argument("--source", help="friends, bigbang, modernfamily, swordsman, palace or chitchat")
    b.add_argument("--responder", help="e.g. Ross (chitchat: default = the most active sender)")
    b.add_argument("--all", action="store_true", help="every MQDialog responder + one chitchat")
    b.add_argument("--out", default="runs/data", help="output folder (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="segment split seed (default: 0)")
    s = dsub.add_parser("stats", help="print (and with --out save) the statistics table of every "
                        "responder")
    s.add_argument("--out", help="also write stats.md and stats.csv here")
    s.add_argument("--seed", type=int, default=0)
    for q in (b, s):
        q.add_argument("--root", help="transcripts folder (default: $QLEARN_DATA_ROOT)")
    a = dsub.add_parser("audit", help="check that no val/test target is seen in training",
                        description="Leak audit of a built dataset (qlearn.data.audit): val/test "
                        "targets supervised in, or part of, a training window (by source "
                        "position), exact-text repeats (reported apart), training windows that "
                        "open with the responder. Exits 1 when a target leaks.")
    a.add_argument("dir", help="a folder written by `qlearn data build` (or its --out parent)")
    a.add_argument("--verbose", action="store_true", help="the per-split table of each dataset")
    d = dsub.add_parser("download", help="fetch a source's public files at pinned commits")
    d.add_argument("source", help="friends, bigbang, modernfamily, swordsman, palace or all")
    d.add_argument("--root", required=True, help="where to put them (then use it as --root)")


def _run_data(args):
    from .data import BuildConfig, DataError, all_responders, build_dataset, save_mqdialog
    from .data.audit import audit_dataset
    from .data.stats import dropped_markdown, stats_rows, to_markdown, write_stats

    try:
        if args.data_command == "download":
            from .data.download import PINS, download

            for source in (PINS if args.source == "all" else [args.source]):
                download(source, args.root)
            return
        if args.data_command == "audit":
            from .data.audit import audit_path

            reports = audit_path(args.dir)
            for rep in reports:
                print(rep.summary_line())
                if args.verbose or not rep.ok:
                    print(rep.table())
            if not all(rep.ok for rep in reports):
                sys.exit(1)
            return
        cfg = BuildConfig(seed=args.seed)
        if args.data_command == "stats" or args.all:
            pairs = all_responders()
        elif args.source:
            pairs = [(args.source, args.responder)]
        else:
            sys.exit("qlearn data build: give --source (and --responder), or --all")
        built = [build_dataset(src, r, root=args.root, config=cfg) for src, r in pairs]
        out = getattr(args, "out", None)
        if args.data_command == "build":
            for ds in built:
                folder = save_mqdialog(ds, os.path.join(out, f"{ds.source}_{ds.responder}"))
                print(f"{ds!r} -> {folder}")
                print(audit_dataset(ds).summary_line())
            if len(built) == 1:
                print(dropped_markdown(built[0]))
        print(to_markdown(stats_rows(built)))
        if out:
            md, csv = write_stats(built, out)
            print(f"saved {md} and {csv}")
    except DataError as e:
        sys.exit(f"qlearn data: {e}")


def _add_cluster(sub):
    p = sub.add_parser("cluster", help="cluster each window's query (embeddings + k-means) and plot UMAP",
                       description="Embed every window's query, k-means (cosine) on the training "
                       "windows, nearest centroid for val/test. Writes OUT/<source>_<responder>_clustered "
                       "(MQDialog layout, every sample with cluster_id), report.md, k_selection.csv, "
                       "clusters.csv and PNG figures.")
    p.add_argument("--data", required=True, help="a dataset folder in the MQDialog layout (qlearn data)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--k", type=int, default=None,
                   help="number of clusters (default: the paper's, 10 or 5 per responder)")
    p.add_argument("--k-range", default="2-15", help="k values for the selection table, "
                   "e.g. 2-15 or 5,10,15; 'none' skips it (default: %(default)s)")
    p.add_argument("--embedder", default="auto",
                   help="query encoder: auto (MiniLM for English, character n-grams for Chinese), "
                   "minilm, char-ngram, multilingual (a hub model: needs internet) or a hub id/folder "
                   "(default: %(default)s)")
    p.add_argument("--query-text", default="query", choices=["query", "last", "context"],
                   help="which turns form the query (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)


def _k_range(text: str) -> list[int]:
    if text.lower() == "none":
        return []
    try:
        if "-" in text:
            lo, hi = map(int, text.split("-"))
            return list(range(lo, hi + 1))
        return [int(k) for k in text.split(",")]
    except ValueError:
        sys.exit(f"qlearn cluster: --k-range {text!r} is not like 2-15 or 5,10,15")


def _run_cluster(args):
    from .cluster import QueryClusterer, cluster_and_report, coverage_line, default_k
    from .data import DataError, load_mqdialog

    try:
        ds = load_mqdialog(args.data)
    except DataError as e:
        sys.exit(f"qlearn cluster: {e}")
    k = args.k or default_k(ds.responder, ds.source)
    print(f"qlearn cluster: {ds}, k = {k}" + ("" if args.k else " (the paper's value)"))
    qc = QueryClusterer(n_clusters=k, embedder=args.embedder, query_text=args.query_text,
                        random_state=args.seed)
    try:
        res = cluster_and_report(ds, args.out, ks=_k_range(args.k_range), clusterer=qc)
    except ValueError as e:
        sys.exit(f"qlearn cluster: {e}")
    cols = ["cluster", "size", "n_queriers", "mix", "warning"]
    print(res["report"][cols].to_string(index=False))
    for key, path in res["paths"].items():
        print(f"  {key:17s} {path}")


def _add_train(sub):
    p = sub.add_parser("train", help="train a querier-aware model from a YAML recipe",
                       description="L = L_LM + λ·L_QC on transformers' Trainer. Writes "
                       "<output_dir>/metrics.jsonl, loss_curves.png, probe.json, checkpoints and "
                       "final/. Many GPUs: accelerate launch -m qlearn.cli train --config ...")
    p.add_argument("--config", required=True,
                   help="YAML recipe: configs/quick-cpu.yaml, configs/colab-t4.yaml, configs/paper/<responder>.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field, e.g. output_dir=runs/x or model.rank=16 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in output_dir (weights, optimizer, memories)")


def _run_train(args):
    from .train import TrainConfig, train

    try:
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"qlearn train: {e}")
    run = train(cfg, resume=args.resume)
    print(f"qlearn train: done; metrics, probe and figures in {run}, the model in {run / 'final'}")


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="generate replies for test windows and score them",
                       description="Greedy replies (<= 64 new tokens) for the windows of a dataset "
                       "in the MQDialog layout, scored with ROUGE-L (rouge-score with Chinese per "
                       "character, and the paper's rouge 1.0.x variant), BLEU and distinct-n with 95% "
                       "bootstrap CIs. Writes table.md, table.csv and rougeL.png to --out.")
    p.add_argument("--model", required=True, help="a `qlearn train` run folder (or its final/ or a "
                   "checkpoint), or a base model name / hub id / folder (= Zero-shot)")
    p.add_argument("--data", required=True, help="dataset folder in the MQDialog layout (qlearn data build)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--n", type=int, default=None, help="a seeded subset of N windows (default: all)")
    p.add_argument("--baselines", default="", help="also run prompting baselines on the same windows, "
                   "comma-separated: Zero-shot,RPG,Few-shot,QCG")
    p.add_argument("--out", default=None, help="output folder (default: runs/evaluate/<model>)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sample", action="store_true", help="sample (temperature 0.7, top-p 0.9) "
                   "instead of greedy decoding")
    p.add_argument("--seed", type=int, default=0)


def _run_evaluate(args):
    from .evaluate.ablate import evaluate_run

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    try:
        evaluate_run(args.model, args.data, out=args.out, split=args.split, n=args.n,
                     baselines=baselines, seed=args.seed, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size, do_sample=args.sample,
                     command="qlearn " + shlex.join(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"qlearn evaluate: {e}")


def _add_ablate(sub):
    p = sub.add_parser("ablate", help="run baselines, the full method and ablations as one grid",
                       description="Train every system of the grid on equal budgets (the config's "
                       "train: block), choose checkpoints on the validation split, generate for the "
                       "same test windows and write results/<name>/table.md, table.csv and "
                       "rougeL.png. Finished systems are reused when the command is run again.")
    p.add_argument("--config", required=True, help="YAML file (see configs/ablate-*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set eval.n_test=50 --set train.max_steps=20")


def _run_ablate(args):
    from .evaluate.ablate import ablate

    try:
        ablate(args.config, args.set, command="qlearn " + shlex.join(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"qlearn ablate: {e}")


COMMANDS = ["demo", "data", "cluster", "train", "generate", "evaluate", "ablate"]


def build_parser() -> argparse.ArgumentParser:
    print("coverage: " + coverage_line(res["coverage"], "training-query"))
    if res.get("heldout_coverage"):
        print("held-out: " + coverage_line(res["heldout_coverage"], "val/test-query"))
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
