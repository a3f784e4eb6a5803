"""Bad input and faults (issue 17): every case gives a one-line clear error (or a named warning),
never a raw traceback or a silently wrong result. Each test asserts that the message names the
problem (the file, line, option or value) and the fix.

Real-data cases corrupt *copies* of the shared transcripts in ``tmp_path``; model cases use the
tiny random Llama (``base_model: tiny``) and the invented dataset, so the module stays fast.
"""
import copy
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
import yaml

from qlearn.checkpoints import truncate_metrics
from qlearn.cli import main as cli
from qlearn.data import load_mqdialog, save_mqdialog, synthetic_dataset
from qlearn.data.readers import Chunk, Show
from qlearn.data.types import Turn
from qlearn.errors import (CheckpointError, ConfigError, DataError, InputError, IntegrityError,
                           ModelLoadError, QlearnError, QlearnWarning)
from qlearn.contrastive import ContrastiveConfig
from qlearn.model import QARConfig, QuerierAwareLM
from qlearn.train import TrainConfig, read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "quick-cpu.yaml")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A private sha256 cache (the model cache stays shared) and the manifest check on."""
    import qlearn.data.download as dl

    monkeypatch.setattr(dl, "_cache_path", lambda: tmp_path / "verified_files.json")
    monkeypatch.delenv("QLEARN_NO_VERIFY", raising=False)
    monkeypatch.delenv("QLEARN_DEBUG", raising=False)


def fails(argv, *patterns):
    """Run the CLI in-process; it must exit non-zero with one line naming every pattern."""
    with pytest.raises(SystemExit) as e:
        cli(argv)
    msg = str(e.value.code)
    assert e.value.code not in (0, None), msg
    assert "\n" not in msg and "Traceback" not in msg, msg
    for p in patterns:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def tiny_recipe(out, **kw):
    d = dict(source="synthetic", responder=None, n_clusters=1, base_model="tiny",
             model=dict(rank=8, lora_r=4), contrastive=dict(view_dim=16, memory_size=8),
             output_dir=str(out),
             max_steps=6, batch_size=4, grad_accum=1, logging_steps=1, save_steps=3, lr=1e-3,
             warmup=1, precision="fp32", gradient_checkpointing=False, probe_windows=0,
             save_total_limit=None, max_length=96)
    d.update(kw)
    return d


def write_yaml(path, d):
    path.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- the error family
def test_one_error_family_keeps_old_import_paths_and_builtin_bases():
    from qlearn.data import DataError as D1
    from qlearn.data.readers import DataError as D2

    assert D1 is D2 is DataError and issubclass(DataError, (QlearnError, ValueError))
    assert issubclass(IntegrityError, DataError) and issubclass(ConfigError, ValueError)
    assert issubclass(CheckpointError, FileNotFoundError) and issubclass(ModelLoadError, QlearnError)
    from qlearn.assets import AssetNotFoundError

    assert issubclass(AssetNotFoundError, (QlearnError, FileNotFoundError))


def test_cli_prints_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    fails(["train", "--config", QUICK, "--set", "max_steps=abc"], "max_steps='abc'", "integer")
    with pytest.raises(ConfigError, match="max_steps"):  # --debug: the exception itself
        cli(["--debug", "train", "--config", QUICK, "--set", "max_steps=abc"])
    assert "QLEARN_DEBUG" not in os.environ  # --debug does not outlive the command
    monkeypatch.setenv("QLEARN_DEBUG", "1")
    with pytest.raises(ConfigError, match="max_steps"):
        cli(["train", "--config", QUICK, "--set", "max_steps=abc"])
    monkeypatch.delenv("QLEARN_DEBUG")
    import qlearn.cli as qcli

    def boom(args):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(qcli, "_run_train", boom)  # not a user mistake: type named, --debug hint
    fails(["train", "--config", QUICK], "RuntimeError: something unexpected", "--debug")


def test_the_installed_command_exits_nonzero_with_one_stderr_line(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "qlearn.cli", "train", "--config", QUICK, "--set",
                        "lr=abc", "--set", f"output_dir={out}"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lr='abc'" in lines[0] and "a number" in lines[0], p.stderr
    assert not out.exists()  # refused before any work: no half-written run folder


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("override, names", [
    ("max_steps=abc", ["max_steps='abc'", "integer", "--set max_steps"]),
    ("lr=abc", ["lr='abc'", "a number"]),
    ("model.rank=abc", ["model.rank='abc'"]),
    ("adam_betas=[0.9]", ["adam_betas", "2 values"]),
    ("gradient_checkpointing=sometimes", ["gradient_checkpointing='sometimes'", "true or false"]),
    ("batch_size=0", ["batch_size=0", ">= 1"]),
    ("max_steps=0", ["max_steps=0", "-1"]),
    ("lr=-0.1", ["lr=-0.1", "> 0"]),
    ("precision=fp8", ["precision='fp8'", "fp32"]),
    ("lr_schedule=sometimes", ["lr_schedule='sometimes'", "cosine"]),
    ("data.test_fraction=1.5", ["data.test_fraction=1.5"]),
    ("contrastive.qc_weight=-1", ["contrastive.qc_weight=-1", "maximise"]),
    ("contrastive.temperature=0", ["contrastive.temperature=0", "> 0"]),
    ("contrastive.no_such=1", ["unknown contrastive.no_such"]),
    # the old layout: a contrastive key under model: is refused naming its new place, not moved
    ("model.qc_weight=0", ["move model.qc_weight to contrastive.qc_weight"]),
    ("model.view_dim=64", ["move model.view_dim to contrastive.view_dim"]),
    ("n_clusters=0", ["n_clusters=0", ">= 1"]),
    ("max_queriers=1", ["max_queriers=1", ">= 2 queriers"]),
    ("no_such_field=1", ["unknown TrainConfig field", "no_such_field"]),
    ("model.no_such=1", ["unknown model.no_such"]),
    ("max_steps", ["key=value"]),
])
def test_bad_train_values_fail_when_read_naming_the_option(override, names):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(QUICK, [override])
    for n in names:
        assert n in str(e.value), str(e.value)
    assert "quick-cpu.yaml" in str(e.value) or override == "max_steps"


def test_good_values_are_coerced_and_qc_weight_zero_is_the_ablation():
    cfg = TrainConfig.from_yaml(QUICK, ["lr=1e-3", "epochs=2", "contrastive.qc_weight=0"])
    assert cfg.lr == 0.001 and isinstance(cfg.epochs, float) and cfg.contrastive.qc_weight == 0.0
    assert cfg.adam_betas == (0.9, 0.95)
    with pytest.raises(ConfigError, match="contrastive.qc_weight"):
        ContrastiveConfig(qc_weight=-0.5)
    with pytest.raises(TypeError):  # the model no longer holds the loss's settings
        QARConfig(qc_weight=0.5)


def test_a_recipe_in_the_old_layout_fails_when_read_naming_the_move(tmp_path):
    """A contrastive key under model: (the layout before ContrastiveConfig) is one line naming
    the key, the file and the fix; qlearn train refuses it before any work starts."""
    old = yaml.safe_load(open(QUICK, encoding="utf-8"))
    old["model"] = {**old["model"], **old.pop("contrastive")}
    path = tmp_path / "old.yaml"
    write_yaml(path, old)
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "move model.n_views to contrastive.n_views" in msg
    fails(["train", "--config", str(path)], "move model.n_views to contrastive.n_views", str(path))
    # a run folder's train_config.yaml written by the old code still loads (same run)
    cfg = TrainConfig.from_yaml(path, saved=True)
    assert cfg.contrastive == TrainConfig.from_yaml(QUICK).contrastive and cfg.model.rank == 16


def test_ablate_checks_every_system_before_training(tmp_path):
    from qlearn.evaluate.ablate import AblateConfig

    cfg = os.path.join(REPO, "configs", "ablate-ross-cpu.yaml")
    with pytest.raises(ConfigError, match=r"max_steps='abc'.*train\.<field>"):
        AblateConfig.from_yaml(cfg, ["train.max_steps=abc"])
    with pytest.raises(ConfigError, match=r"eval\.n_test=0"):
        AblateConfig.from_yaml(cfg, ["eval.n_test=0"])
    with pytest.raises(ConfigError, match="qc_weight"):
        AblateConfig.from_yaml(cfg, ["train.contrastive.qc_weight=-1"])
    with pytest.raises(ConfigError, match=r"move model\.qc_weight to contrastive\.qc_weight"):
        AblateConfig.from_yaml(cfg, ["sweep={model.qc_weight: [0.1]}"])
    fails(["ablate", "--config", cfg, "--set", "eval.batch_size=abc"], "eval.batch_size='abc'")


# --------------------------------------------------------------------------- degenerate set-ups
def test_group_label_is_never_a_responder():
    from qlearn.data import build_from_show

    turns = [Turn("Ross", "hi"), Turn("All", "hey!"), Turn("Ross", "what?")]
    show = Show("friends", "en", [Chunk(f"c{i}", list(turns)) for i in range(30)])
    with pytest.raises(DataError, match="'All' is a group label"):
        build_from_show(show, "All")


def test_single_querier_responder_is_refused_by_train(data_root):
    from qlearn.data import build_dataset
    from qlearn.train import check_queriers

    ds = build_dataset("friends", "Richard", root=data_root)
    assert len(ds.queriers) == 1
    cfg = TrainConfig(source="friends", responder="Richard")
    with pytest.raises(ConfigError, match=r"friends/Richard has 1 querier.*0 on every step.*"
                                          r"contrastive\.qc_weight=0"):
        check_queriers(cfg, ds)
    cfg.contrastive.qc_weight = 0.0  # the "w/o contrastive" set-up trains (nothing is claimed)
    check_queriers(cfg, ds)


def test_cluster_k_zero_is_refused_not_silently_the_default(tmp_path):
    from qlearn.cluster import assign_clusters

    ds = synthetic_dataset()
    save_mqdialog(ds, tmp_path / "mq")
    fails(["cluster", "--data", str(tmp_path / "mq"), "--out", str(tmp_path / "c"), "--k", "0"],
          "--k 0", ">= 1")
    fails(["cluster", "--data", str(tmp_path / "mq"), "--out", str(tmp_path / "c"), "--k", "2",
           "--k-range", "1-4"], "--k-range", ">= 2")
    with pytest.raises(ValueError, match="positive integer, got 0"):
        assign_clusters(copy.deepcopy(ds), 0, clusterer=None)
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- readers
@pytest.fixture
def friends_copy(data_root, tmp_path):
    """A copy of the Friends table (TSV) in tmp_path, decompressed lines ready to corrupt."""
    folder = tmp_path / "root" / "friends_emorynlp"
    folder.mkdir(parents=True)
    raw = gzip.decompress((data_root / "friends_emorynlp" / "friends.tsv.gz").read_bytes())
    return folder, raw.split(b"\n")


def _write_gz(folder, lines):
    (folder / "friends.tsv.gz").write_bytes(gzip.compress(b"\n".join(lines), compresslevel=1))


def _read(folder, verify=False):
    from qlearn.data import read_show

    return read_show("friends", folder.parent, verify=verify)


def test_friends_truncated_gzip(friends_copy):
    folder, lines = friends_copy
    _write_gz(folder, lines)
    data = (folder / "friends.tsv.gz").read_bytes()
    (folder / "friends.tsv.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"friends\.tsv\.gz, (after )?line \d+: .*(truncated|cut)"):
        _read(folder)


def test_friends_invalid_utf8_names_the_line(friends_copy):
    folder, lines = friends_copy
    lines[1000] = lines[1000][:10] + b"\xff\xfe" + lines[1000][10:]
    _write_gz(folder, lines)
    with pytest.raises(DataError, match=r"friends\.tsv\.gz, line 1001: not valid utf-8"):
        _read(folder)


@pytest.mark.parametrize("bad", [b"a row without any tab", b"cut\tmid"])
def test_friends_row_without_tabs_or_cut(friends_copy, bad):
    folder, lines = friends_copy
    lines[500] = bad
    _write_gz(folder, lines)
    with pytest.raises(DataError, match=r"friends\.tsv\.gz, line 501: \d+ tab-separated fields, "
                                        r"expected 6"):
        _read(folder)


def test_friends_bad_rda(tmp_path):
    folder = tmp_path / "friends_emorynlp"
    folder.mkdir()
    (folder / "friends.rda").write_bytes(b"not an R file at all")
    with pytest.raises(DataError, match=r"friends\.rda: unreadable R data file.*qlearn data download"):
        _read(folder)


def test_bigbang_stray_file(data_root, tmp_path):
    raw = tmp_path / "bigbang_tbbtcorpus" / "raw_corpus"
    raw.mkdir(parents=True)
    for name in ("1_1.txt", "1_2.txt"):
        shutil.copy(data_root / "bigbang_tbbtcorpus" / "raw_corpus" / name, raw)
    (raw / "notes_draft.txt").write_text("my notes", encoding="utf-8")
    from qlearn.data import read_show

    with pytest.raises(DataError, match=r"notes_draft\.txt: not a <season>_<episode>\.txt"):
        read_show("bigbang", tmp_path)


def test_chitchat_bad_json(tmp_path):
    (tmp_path / "chitchat").mkdir()
    (tmp_path / "chitchat" / "dataset.json").write_text('{"a": {"messages": [}', encoding="utf-8")
    from qlearn.data import read_show

    with pytest.raises(DataError, match=r"dataset\.json, line 1: not valid JSON"):
        read_show("chitchat", tmp_path)


# --------------------------------------------------------------------------- integrity (sha256)
def test_truncated_transcript_is_caught_at_build_time_and_cached(data_root, tmp_path, monkeypatch):
    import qlearn.data.download as dl
    from qlearn.data import read_show

    shutil.copytree(data_root / "bigbang_tbbtcorpus", tmp_path / "bigbang_tbbtcorpus")
    calls = []
    real = dl.sha256
    monkeypatch.setattr(dl, "sha256", lambda p: calls.append(p) or real(p))
    read_show("bigbang", tmp_path)  # an intact copy: every file hashed once ...
    first = len(calls)
    assert first == 202
    read_show("bigbang", tmp_path)  # ... and never again (cache keyed by path, size, mtime)
    assert len(calls) == first
    ep = tmp_path / "bigbang_tbbtcorpus" / "raw_corpus" / "2_3.txt"
    text = ep.read_bytes()
    ep.write_bytes(text[: len(text) // 3])  # an episode cut to a third
    with pytest.raises(IntegrityError, match=r"2_3\.txt is \d[\d,]* bytes, the manifest says "
                                             r".*qlearn data download bigbang.*--no-verify"):
        read_show("bigbang", tmp_path)
    ep.write_bytes(text.replace(b"Sheldon", b"Sheldom", 1))  # same size, edited: the sha256 differs
    with pytest.raises(IntegrityError, match=r"2_3\.txt has sha256"):
        read_show("bigbang", tmp_path)
    assert read_show("bigbang", tmp_path, verify=False).chunks  # deliberate edits: --no-verify


def test_cli_build_verifies_and_refuses_to_mix_builds(data_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(data_root / "palace_dykgchat", root / "palace_dykgchat")
    corpus = root / "palace_dykgchat" / "corpus.txt"
    corpus.write_bytes(b"")  # an emptied file
    out = tmp_path / "out"
    args = ["data", "build", "--source", "palace", "--responder", "甄嬛", "--root", str(root),
            "--out", str(out)]
    fails(args, "corpus.txt is 0 bytes", "qlearn data download palace", "--no-verify")
    msg = fails(args + ["--no-verify"], "甄嬛")  # --no-verify: built from the empty file, which fails
    assert "manifest" not in msg and "QLEARN_NO_VERIFY" not in os.environ  # scoped to the command
    shutil.copy(data_root / "palace_dykgchat" / "corpus.txt", corpus)
    cli(args)
    folder = out / "palace_甄嬛"
    assert load_mqdialog(folder).responder == "甄嬛"
    fails(args, "already holds a dataset", "--overwrite")  # a second build is not mixed in
    cli(args + ["--overwrite"])


# --------------------------------------------------------------------------- MQDialog folders
def test_rebuild_replaces_the_folder_and_stale_queriers_are_refused(tmp_path):
    from qlearn.data.mqdialog import _safe
    from qlearn.train import keep_top_queriers

    big = synthetic_dataset(n_queriers=5)
    small = keep_top_queriers(synthetic_dataset(n_queriers=5), 2)
    out = tmp_path / "mq"
    save_mqdialog(big, out)
    with pytest.raises(DataError, match="already holds a dataset; pass --overwrite"):
        save_mqdialog(small, out, overwrite=False)
    save_mqdialog(small, out)  # the library default replaces the whole folder
    back = load_mqdialog(out)
    assert back.queriers == small.queriers and len(back.train) == len(small.train)
    assert sorted(p.name for p in out.iterdir()) == sorted(["configs", *map(_safe, small.queriers)])
    assert not list(tmp_path.glob(".mq.*"))  # no temporary folder left behind
    # files of another build copied in by hand are refused, by name
    shutil.copytree(out / small.queriers[0], out / "Stranger")
    with pytest.raises(DataError, match=r"\['Stranger'\] are not listed in "
                                        r"configs/role_pair_id\.json"):
        load_mqdialog(out)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(DataError, match="not an MQDialog folder"):
        save_mqdialog(small, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").exists()


def test_queriers_sharing_a_role_pair_id_are_refused(tmp_path):
    out = save_mqdialog(synthetic_dataset(), tmp_path / "mq")
    (out / "configs" / "role_pair_id.json").unlink()  # the published layout has no ids file
    q0, q1 = sorted(p for p in out.iterdir() if p.name != "configs")[:2]
    f = next(q1.glob("*_train.json"))
    rows = json.loads(f.read_text())
    pid = json.loads(next(q0.glob("*_train.json")).read_text())[0]["role_pair_id"]
    for r in rows:
        r["role_pair_id"] = pid
    f.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=f"share role_pair_id {pid}"):
        load_mqdialog(out)


# --------------------------------------------------------------------------- generation
def test_prompt_longer_than_the_context_is_left_truncated_with_a_warning(tiny):
    from qlearn.generation import generate_replies

    model, tok = tiny
    long = "Ross: " + "we were on a break! " * 2250 + "\nRachel:"  # 45,000 characters
    with pytest.warns(QlearnWarning, match=r"longer than the model's context \(1024 tokens, 4 "
                                           r"kept for the reply\): its oldest \d+ tokens were cut"):
        out = generate_replies(model, tok, [long], max_new_tokens=4, progress=False)
    assert len(out) == 1
    with pytest.raises(InputError, match="max_new_tokens=2000 leaves"):
        generate_replies(model, tok, ["hi"], max_new_tokens=2000, progress=False)
    with pytest.raises(InputError, match="empty prompt"):
        generate_replies(model, tok, [""], max_new_tokens=4, progress=False)


def test_generate_rejects_empty_text_and_half_a_template():
    fails(["generate", "--text", "   "], "--text is empty")
    fails(["generate", "--text", "hi", "--responder", "Ross"], "both --responder and --querier")


@pytest.fixture
def tiny_run(tiny, tmp_path):
    """A run folder as `qlearn train` leaves it: final/ adapter, data.json, train_config.yaml."""
    run = tmp_path / "run"
    model = QuerierAwareLM.from_base(copy.deepcopy(tiny[0]), QARConfig(rank=4, lora_r=2))
    model.save_pretrained(run / "final")
    (run / "data.json").write_text(json.dumps({"responder": "Sam", "queriers": ["Mom", "Boss"]}))
    TrainConfig(**{**tiny_recipe(run), "model": QARConfig(rank=4, lora_r=2),
                   "contrastive": ContrastiveConfig(view_dim=16, memory_size=8)}).to_yaml(
        run / "train_config.yaml")
    return run


def test_adapter_knows_its_queriers(tiny_run, capsys):
    with pytest.warns(QlearnWarning, match=r"--querier 'Stranger' is not one of the 2 queriers "
                                           r"this adapter was trained on \(Mom, Boss\)"):
        cli(["generate", "--adapter", str(tiny_run), "--text", "hello", "--responder", "Sam",
             "--querier", "Stranger", "--max-new-tokens", "2"])
    with warnings.catch_warnings(record=True) as seen:  # a known querier: no warning
        cli(["generate", "--adapter", str(tiny_run / "final"), "--text", "hello", "--responder",
             "Sam", "--querier", "Mom", "--max-new-tokens", "2"])
    assert not [w for w in seen if issubclass(w.category, QlearnWarning)]


def test_garbage_and_mismatched_adapters(tiny_run, tmp_path):
    from qlearn.assets import tiny_lm

    final = tiny_run / "final"
    with pytest.raises(ModelLoadError, match="hidden_size=64"):  # another base model
        QuerierAwareLM.from_pretrained(tiny_lm(hidden_size=32)[0], final)
    weights = final / "querier_specific.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # truncated
    fails(["generate", "--adapter", str(tiny_run), "--text", "hi"],
          "querier_specific.safetensors: not a readable safetensors file", "truncated or corrupt")
    weights.write_bytes(os.urandom(4096))  # random bytes
    fails(["generate", "--adapter", str(tiny_run), "--text", "hi"], "not a readable safetensors")
    weights.write_bytes(good)
    (final / "qlearn_config.json").write_text('{"base": {"model_type": ', encoding="utf-8")
    fails(["generate", "--adapter", str(final), "--text", "hi"],
          "qlearn_config.json, line 1: not valid JSON")
    fails(["generate", "--adapter", str(tmp_path / "nowhere"), "--text", "hi"],
          "no such model folder")


def test_model_folders_that_are_not_models(tmp_path):
    (tmp_path / "empty").mkdir()
    fails(["generate", "--model", str(tmp_path / "empty"), "--text", "hi"],
          "has no config.json")  # not "needs sentencepiece"
    mq = save_mqdialog(synthetic_dataset(), tmp_path / "mq")
    fails(["evaluate", "--model", str(tmp_path / "empty"), "--data", str(mq)], "has no config.json")
    fails(["evaluate", "--model", str(tmp_path / "missing"), "--data", str(mq)],
          "is not a local folder")
    fails(["evaluate", "--model", "tiny", "--data", str(mq), "--n", "0"], "--n 0")


def test_evaluate_a_run_with_a_garbage_adapter(tiny_run, tmp_path):
    mq = save_mqdialog(synthetic_dataset(), tmp_path / "mq")
    (tiny_run / "final" / "adapter_model.safetensors").write_bytes(b"\x00" * 100)
    fails(["evaluate", "--model", str(tiny_run), "--data", str(mq), "--n", "2"],
          "not a readable safetensors")


# --------------------------------------------------------------------------- resume
def test_resume_without_a_checkpoint(tmp_path):
    cfg = write_yaml(tmp_path / "r.yaml", tiny_recipe(tmp_path / "run"))
    fails(["train", "--config", cfg, "--resume"], "--resume", "no such folder")
    (tmp_path / "run" / "checkpoint-3").mkdir(parents=True)  # killed while saving
    fails(["train", "--config", cfg, "--resume"], "only incomplete checkpoint(s) ['checkpoint-3']")


def test_truncate_metrics_drops_rows_past_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
    truncate_metrics(path, 5)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]


def _state(run):
    """Every tensor the run saved in final/ (whatever the file layout)."""
    from safetensors.torch import load_file

    return {f"{f.stem}.{k}": v for f in sorted((run / "final").glob("*.safetensors"))
            for k, v in load_file(str(f)).items()}


def _complete_checkpoints(run):
    return sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")
                  if (p / "trainer_state.json").exists())


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """A real ``qlearn train`` process is killed (SIGKILL) after its first checkpoint, once rows
    past that checkpoint are in metrics.jsonl; ``--resume`` must give the uninterrupted run's
    metrics rows (no duplicates) and final weights."""
    from qlearn.train import train

    recipe = tiny_recipe(tmp_path / "killed", max_steps=16, save_steps=4, probe_windows=8)
    cfg = write_yaml(tmp_path / "killed.yaml", recipe)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "qlearn.cli", "train", "--config", cfg],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    run, metrics, killed_at = tmp_path / "killed", tmp_path / "killed" / "metrics.jsonl", None
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        done = _complete_checkpoints(run) if run.exists() else []
        if done and metrics.exists():
            steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()
                     if x.endswith("}")]
            if steps and max(steps) > done[-1]:
                proc.send_signal(signal.SIGKILL)
                killed_at = (done[-1], max(steps))
                break
        time.sleep(0.005)
    proc.wait(timeout=60)
    log.close()
    assert killed_at is not None, ("the run ended before it could be killed: "
                                   + (tmp_path / "killed.log").read_text()[-2000:])
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "final").exists()
    resume_step = _complete_checkpoints(run)[-1]
    logged = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if x.endswith("}")]
    assert max(logged) > resume_step  # rows past the checkpoint: they must not be kept twice
    cli(["train", "--config", cfg, "--resume"])

    full = train(TrainConfig.from_dict(tiny_recipe(tmp_path / "full", max_steps=16, save_steps=4,
                                                   probe_windows=8)))
    ma, mb = read_metrics(full / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in mb] == [r["step"] for r in ma] == list(range(1, 17)), killed_at
    for ra, rb in zip(ma, mb):
        for key in ("loss", "loss_lm", "loss_qc", "lr", "grad_norm"):
            if ra[key] is not None or rb[key] is not None:
                assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (ra["step"], key)
    a, b = _state(full), _state(run)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    pa, pb = (json.loads((r / "probe.json").read_text()) for r in (full, run))
    assert pb["resumed_from_step"] == resume_step and "resumed_from_step" not in pa
    killed_seconds = json.loads((run / f"checkpoint-{resume_step}" / "qlearn_progress.json")
                                .read_text())["train_seconds"]
    assert pb["train_seconds"] >= killed_seconds > 0  # the time of every step, across the kill
    for key in ("n_windows", "n_queriers", "chance"):
        assert pa["before"][key] == pb["before"][key] and pa["after"][key] == pb["after"][key]
    assert pa["after"]["accuracy"] == pytest.approx(pb["after"]["accuracy"], abs=0.13)
