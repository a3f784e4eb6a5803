"""Run folders of ``qlearn train``: the base model of a recipe, a trained model from a run folder,
``final/``, a checkpoint or a hub repo, a run's candidate checkpoints (for selection on
validation), and pushing a run to the hub."""
from __future__ import annotations

import hashlib
from pathlib import Path


def base_lm(name: str, seed: int = 42):
    """``(model, tokenizer)`` of a base model; ``tiny`` is the tests' random Llama (seeded)."""
    from .assets import load_lm, tiny_lm

    return tiny_lm(seed=seed) if name == "tiny" else load_lm(name)


def load_trained(folder, train_cfg=None, revision: str | None = None):
    """``(model, tokenizer)`` from a run folder, ``final/`` or a checkpoint of ``qlearn.train``, or
    a hub repo id that :func:`push_run` wrote."""
    from .model import CONFIG_FILE, QuerierAwareLM, model_folder
    from .train import TrainConfig

    folder = model_folder(folder, revision)
    if (folder / "final" / CONFIG_FILE).exists():
        folder = folder / "final"
    if train_cfg is None:
        for cand in (folder / "train_config.yaml", folder.parent / "train_config.yaml"):
            if cand.exists():
                train_cfg = TrainConfig.from_yaml(cand, saved=True)  # also one of older qlearn
                break
        else:
            raise FileNotFoundError(f"no train_config.yaml in {folder} or its parent: pass the run "
                                    "folder written by `qlearn train`")
    base, tok = base_lm(train_cfg.base_model, train_cfg.seed)
    return QuerierAwareLM.from_pretrained(base, folder).eval(), tok


def checkpoints(run: Path) -> list[Path]:
    """Candidate weights of a run: every checkpoint plus ``final/``, identical files once."""
    from .model import WEIGHT_FILES, has_weights

    run = Path(run)
    cands = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cands = [c for c in cands if has_weights(c)] + [run / "final"]
    seen, out = set(), []
    for c in reversed(cands):  # prefer final/ over an identical last checkpoint
        h = hashlib.sha1()
        for name in WEIGHT_FILES:
            if (c / name).exists():
                h.update((c / name).read_bytes())
        digest = h.hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(c)
    return out[::-1]


def stage_run(run, dest, checkpoint: str = "final") -> Path:
    """The folder :func:`push_run` uploads, written to ``dest``: the model folder (``final/`` or
    ``checkpoint-N``) with the run's model card, ``train_config.yaml`` and ``data.json``."""
    import shutil

    from .card import write_model_card
    from .model import has_weights

    run, dest = Path(run), Path(dest)
    folder = run / checkpoint
    if not has_weights(folder):
        raise FileNotFoundError(f"{folder}: no saved model to push (a `qlearn train` run folder "
                                "has final/ and checkpoint-N/)")
    if not (run / "README.md").exists():
        write_model_card(run)
    shutil.copytree(folder, dest, dirs_exist_ok=True)
    for name in ("train_config.yaml", "data.json", "README.md"):
        if (run / name).exists():
            shutil.copy(run / name, dest / name)
    return dest


def push_run(run, repo_id: str, private: bool = True, token: str | None = None,
             checkpoint: str = "final") -> str:
    """Upload :func:`stage_run`'s folder to the hub repo ``repo_id`` (huggingface_hub); then
    ``load_trained(repo_id)`` loads it anywhere. Returns the commit URL."""
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        stage = stage_run(run, Path(tmp) / "upload", checkpoint)
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(stage),
                                 commit_message=f"qlearn: upload {Path(run).name}/{checkpoint}")
    return str(getattr(info, "commit_url", info))
