"""The ``qlearn`` command. Thin: it parses arguments and calls library functions.

Each subcommand has one ``_add_<name>`` function (its options) and one ``_run_<name>`` function
(which imports the library lazily, so ``qlearn --help`` stays fast).

Errors: a user mistake (:class:`qlearn.errors.QlearnError`) is printed as one line
``qlearn <command>: <problem and fix>`` with exit status 1; any other exception as one line
naming its type. ``qlearn --debug ...`` or ``QLEARN_DEBUG=1`` shows the traceback.
Warnings (:class:`qlearn.errors.QlearnWarning`) are one ``qlearn: warning: ...`` line each.
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
    p.add_argument("--model", default=None, help="short name, hub id or local folder (default: the "
                   f"adapter's base model, else {SMOLLM2}; 'tiny' = the tests' random Llama)")
    p.add_argument("--adapter", help="folder of a trained qlearn model (save_pretrained output, or "
                   "the `qlearn train` run folder)")
    p.add_argument("--text", required=True, help="the query")
    p.add_argument("--responder", help="who answers (renders the turn template)")
    p.add_argument("--querier", help="who asks (renders the turn template)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default=None)


def _adapter_info(folder) -> dict:
    """An adapter folder's config (checked) plus, from its run's data.json, the responder and the
    queriers it was trained on (empty when the folder is not inside a run)."""
    import json
    from pathlib import Path

    from .model import CONFIG_FILE, read_adapter_config

    folder = Path(folder)
    if (folder / "final" / CONFIG_FILE).exists():  # the run folder itself
        folder = folder / "final"
    meta = read_adapter_config(folder)
    meta["folder"] = str(folder)
    for run in (folder, folder.parent):
        try:
            data = json.loads((run / "data.json").read_text(encoding="utf-8"))
            meta.update(queriers=list(data.get("queriers") or []), responder=data.get("responder"))
        except (ValueError, OSError, AttributeError, TypeError):
            continue
        if (run / "train_config.yaml").exists():  # the base model it was trained on
            import yaml

            try:
                tc = yaml.safe_load((run / "train_config.yaml").read_text(encoding="utf-8")) or {}
                meta.update(base_model=tc.get("base_model"), seed=tc.get("seed", 42))
            except (yaml.YAMLError, OSError, AttributeError):
                pass
        break
    return meta


def _run_generate(args):
    from .assets import load_lm, tiny_lm
    from .errors import InputError, warn
    from .generation import generate_replies
    from .template import render_dialogue, turn_format

    if not args.text.strip():
        raise InputError("--text is empty: give the message to reply to, e.g. --text 'How are you?'")
    if bool(args.responder) != bool(args.querier):
        raise InputError("give both --responder and --querier, or neither")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens {args.max_new_tokens}: use a positive number")
    if args.adapter:
        info = _adapter_info(args.adapter)  # checks the folder before the base model is loaded
        known = info.get("queriers") or []
        if args.querier and known and args.querier not in known:
            warn(f"--querier {args.querier!r} is not one of the {len(known)} queriers this adapter "
                 f"was trained on ({', '.join(known[:8])}{', ...' if len(known) > 8 else ''}); "
                 "its reply is not querier-aware for an unknown querier")
        if args.responder and info.get("responder") and args.responder != info["responder"]:
            warn(f"--responder {args.responder!r}: this adapter was trained to speak as "
                 f"{info['responder']!r}")
    name = args.model or (info.get("base_model") if args.adapter else None) or SMOLLM2
    if name == "tiny":
        model, tokenizer = tiny_lm(seed=info.get("seed", 42) if args.adapter else 0)
    else:
        model, tokenizer = load_lm(name, dtype=args.dtype, device=args.device)
    if args.adapter:
        from .model import QuerierAwareLM

        model = QuerierAwareLM.from_pretrained(model, info["folder"]).eval()
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
    from .data.sources import SOURCES, downloadable

    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="build one responder (or --all) and save the MQDialog layout")
    b.add_argument("--source", help=", ".join(SOURCES))
    b.add_argument("--responder", help="e.g. Ross (chitchat: default = the most active sender)")
    b.add_argument("--all", action="store_true", help="every MQDialog responder + one chitchat")
    b.add_argument("--out", default="runs/data", help="output folder (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="segment split seed (default: 0)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT/<source>_<responder> folder (atomically)")
    s = dsub.add_parser("stats", help="print (and with --out save) the statistics table of every "
                        "responder")
    s.add_argument("--out", help="also write stats.md and stats.csv here")
    s.add_argument("--seed", type=int, default=0)
    for q in (b, s):
        q.add_argument("--root", help="transcripts folder (default: $QLEARN_DATA_ROOT)")
        q.add_argument("--no-verify", action="store_true",
                       help="skip the sha256 check of the transcripts against the download "
                       "manifests (for deliberately edited local files)")
    a = dsub.add_parser("audit", help="check that no val/test target is seen in training",
                        description="Leak audit of a built dataset (qlearn.data.audit): val/test "
                        "targets supervised in, or part of, a training window (by source "
                        "position), exact-text repeats (reported apart), training windows that "
                        "open with the responder. Exits 1 when a target leaks.")
    a.add_argument("dir", help="a folder written by `qlearn data build` (or its --out parent)")
    a.add_argument("--verbose", action="store_true", help="the per-split table of each dataset")
    d = dsub.add_parser("download", help="fetch a source's public files at pinned commits")
    d.add_argument("source", help=", ".join(downloadable()) + " or all")
    d.add_argument("--root", required=True, help="where to put them (then use it as --root)")


def _run_data(args):
    from .data import BuildConfig, DataError, all_responders, build_dataset, save_mqdialog
    from .data.audit import audit_dataset
    from .data.stats import dropped_markdown, stats_rows, to_markdown, write_stats

    try:
        if args.data_command == "download":
            from .data.download import download
            from .data.sources import downloadable

            for source in (downloadable() if args.source == "all" else [args.source]):
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
        out = getattr(args, "out", None)
        if args.data_command == "build" and not args.overwrite:  # refuse before building
            for src, r in pairs:
                target = os.path.join(out, f"{src}_{r}")
                if r is not None and os.path.isdir(target) and os.listdir(target):
                    raise DataError(f"{target} already holds a dataset; pass --overwrite to "
                                    "replace it as a whole, or choose another --out")
        built = [build_dataset(src, r, root=args.root, config=cfg) for src, r in pairs]
        from .errors import warn

        for ds in built:
            if len(ds.queriers) < 2:
                warn(f"{ds.source}/{ds.responder} has a single querier ({', '.join(ds.queriers)}): "
                     "querier-aware training learns nothing querier-specific from it (the "
                     "contrastive loss is 0 on every step; `qlearn train` refuses it)")
        audits = [audit_dataset(ds) for ds in built]
        if args.data_command == "build":
            for ds, audit in zip(built, audits):
                folder = save_mqdialog(ds, os.path.join(out, f"{ds.source}_{ds.responder}"),
                                       overwrite=args.overwrite)
                print(f"{ds!r} -> {folder}")
                print(audit.summary_line())
            if len(built) == 1:
                print(dropped_markdown(built[0]))
        rows = stats_rows(built, audits)
        print(to_markdown(rows))
        if out:
            md, csv = write_stats(built, out, rows)
            print(f"saved {md} and {csv}")
    except DataError as e:
        _exit("data", e)


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
            ks = list(range(lo, hi + 1))
            if not ks:
                sys.exit(f"qlearn cluster: --k-range {text!r} is empty; write low-high, e.g. 2-15")
            if lo < 2:
                sys.exit(f"qlearn cluster: --k-range {text!r}: every k must be >= 2, e.g. 2-15")
            return ks
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        sys.exit(f"qlearn cluster: --k-range {text!r} is not like 2-15 or 5,10,15")
    if not ks or min(ks) < 2:
        sys.exit(f"qlearn cluster: --k-range {text!r}: every k must be >= 2 (a selection score "
                 "needs two clusters), e.g. 2-15")
    return ks


def _run_cluster(args):
    from .cluster import QueryClusterer, cluster_and_report, coverage_line, default_k
    from .data import DataError, load_mqdialog

    try:
        ds = load_mqdialog(args.data)
    except DataError as e:
        _exit("cluster", e)
    if args.k is not None and args.k < 1:
        from .errors import ConfigError

        raise ConfigError(f"--k {args.k}: the number of clusters must be >= 1 (1 = one cluster, "
                          "i.e. no clustering); omit --k for the paper's value")
    k = args.k or default_k(ds.responder, ds.source)
    print(f"qlearn cluster: {ds}, k = {k}" + ("" if args.k else " (the paper's value)"))
    qc = QueryClusterer(n_clusters=k, embedder=args.embedder, query_text=args.query_text,
                        random_state=args.seed)
    try:
        res = cluster_and_report(ds, args.out, ks=_k_range(args.k_range), clusterer=qc)
    except ValueError as e:
        _exit("cluster", e)
    cols = ["cluster", "size", "n_queriers", "mix", "warning"]
    print(res["report"][cols].to_string(index=False))
    print("coverage: " + coverage_line(res["coverage"], "training-query"))
    if res.get("heldout_coverage"):
        print("held-out: " + coverage_line(res["heldout_coverage"], "val/test-query"))
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
    p.add_argument("--no-verify", action="store_true",
                   help="skip the sha256 check of the transcripts against the download manifests")


def _run_train(args):
    from .train import TrainConfig, train

    cfg = TrainConfig.from_yaml(args.config, args.overrides)
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

    from .errors import InputError

    if args.n is not None and args.n < 1:
        raise InputError(f"--n {args.n}: evaluate at least one window (omit --n for all of them)")
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise InputError("--max-new-tokens and --batch-size must be positive")
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    try:
        evaluate_run(args.model, args.data, out=args.out, split=args.split, n=args.n,
                     baselines=baselines, seed=args.seed, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size, do_sample=args.sample,
                     command="qlearn " + shlex.join(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as e:
        _exit("evaluate", e)


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
        _exit("ablate", e)


COMMANDS = ["demo", "data", "cluster", "train", "generate", "evaluate", "ablate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qlearn", description="Querier-aware LLM personalization: course library and tools.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (or set QLEARN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        globals()[f"_add_{name}"](sub)
    return parser


def _exit(command: str, e: Exception):
    """One line ``qlearn <command>: <message>`` and exit 1; the traceback under --debug."""
    from .errors import debug_enabled

    if debug_enabled():
        raise e
    sys.exit(f"qlearn {command}: {' '.join(str(e).split())}")


def _one_line_warnings():
    """Print qlearn's warnings as ``qlearn: warning: ...`` (one line, no source line). Only the
    formatting changes, so recording warnings (pytest.warns, catch_warnings) still works."""
    import warnings

    from .errors import QlearnWarning

    fmt = warnings.formatwarning
    if not getattr(fmt, "_qlearn", False):
        def formatwarning(message, category, filename, lineno, line=None):
            if issubclass(category, QlearnWarning):
                return f"qlearn: warning: {' '.join(str(message).split())}\n"
            return fmt(message, category, filename, lineno, line)

        formatwarning._qlearn = True
        warnings.formatwarning = formatwarning
    warnings.simplefilter("always", QlearnWarning)


class _scoped_env:
    """Set environment variables for one command and restore them afterwards (main() may be
    called several times in one process, e.g. by tests)."""

    def __init__(self, values: dict):
        self.values, self.saved = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv=None):
    from .errors import QlearnError, debug_enabled, one_line

    args = build_parser().parse_args(argv)
    run = globals().get(f"_run_{args.command}")
    if run is None:
        sys.exit(f"qlearn {args.command}: not built yet in this version")
    env = {}
    if args.debug:
        env["QLEARN_DEBUG"] = "1"
    if getattr(args, "no_verify", False):  # read by qlearn.data.read_show
        env["QLEARN_NO_VERIFY"] = "1"
    _one_line_warnings()
    try:
        with _scoped_env(env):
            debug = debug_enabled()
            run(args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except QlearnError as e:
        if debug:
            raise
        raise SystemExit(f"qlearn {args.command}: {one_line(e)}") from None
    except Exception as e:
        if debug:
            raise
        raise SystemExit(f"qlearn {args.command}: {one_line(e)} (run `qlearn --debug "
                         f"{args.command} ...` for the traceback)") from None


if __name__ == "__main__":
    main()
