"""Train a RecBole sequential model on a hand-off folder and write its test scores.

Runs inside RecBole's own virtual environment (numpy<2 etc.), so it imports only the standard
library, numpy, torch, RecBole and the sibling `handoff` module:

    .bench/venvs/recbole/bin/python benchmarks/peers/recbole_peer.py HANDOFF SASRec OUT_DIR

SIGUSR1 ends training after the current epoch (as `--max-seconds` does); `--salvage RUN_DIR`
scores the best checkpoint of a run that was killed, with its epoch log; `--resume RUN_DIR`
goes on training a run that was killed or stopped by its budget, from the state saved after its
last epoch (weights, optimizer, early-stopping counter and the epoch record), so a run of many
hours can be spread over several sittings. The resumed epochs draw other random numbers (batch
order, dropout) than one unbroken run would.

Protocol: RecBole's defaults for the model and trainer (batch size, learning rate, early
stopping on its default validation metric, MRR@10, patience 10), with the data fixed by us:
each customer's training sequence plus, where the customer has one, our validation target as
the last item, split by RecBole's leave-one-out 'valid_only' mode. So its early stopping sees
our validation cases (and, for customers without one, the last training item). The best
checkpoint scores every test context; the parent ranks those scores with funnelrec's metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's own checkpoints

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handoff


class OutOfTime(Exception):
    """Raised from a validation hook once the time budget is spent (best checkpoint is kept)."""


def write_atomic_files(h: handoff.Handoff, folder: Path) -> None:
    """RecBole atomic file: training sequence + validation target, order kept by a counter."""
    data = folder / "bench"
    data.mkdir(parents=True, exist_ok=True)
    valid_target = dict(zip(h.valid_rows.tolist(), h.valid_targets.tolist(), strict=True))
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    t = 0
    for r in range(len(h.train)):
        items = h.train.row(r).tolist()
        if r in valid_target:
            items.append(valid_target[r])
        for i in items:
            lines.append(f"u{r}\ti{i}\t{t}")
            t += 1
    (data / "bench.inter").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("handoff")
    ap.add_argument("model", help="RecBole model name: SASRec, BERT4Rec, GRU4Rec, ...")
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-epochs", type=int, default=None, help="default: RecBole's (300)")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop training after this")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument(
        "--salvage",
        type=Path,
        default=None,
        help="run folder of a killed run: score its best checkpoint instead of training",
    )
    ap.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="run folder of a killed or budget-stopped run: go on training it from its last epoch",
    )
    args = ap.parse_args()

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_logger, init_seed

    h = handoff.load(args.handoff)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.salvage or args.resume:
        work = next((args.salvage or args.resume).glob("recbole_*"))
    else:
        work = Path(tempfile.mkdtemp(prefix="recbole_", dir=args.out))
        write_atomic_files(h, work)
    config_dict = {
        "data_path": str(work),
        "dataset": "bench",
        "checkpoint_dir": str(work / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_only"}, "order": "TO", "mode": "full"},
        "train_neg_sample_args": None,  # cross-entropy, the models' default loss
        "device": "cpu",
        "use_gpu": False,
        "seed": args.seed,
        "show_progress": False,
        "log_wandb": False,
    }
    if args.max_epochs:
        config_dict["epochs"] = args.max_epochs
    config = Config(model=args.model, dataset="bench", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    clock = handoff.EpochClock()
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to("cpu")
    if args.salvage:
        clock.epochs = recorded_epochs(work) or parse_epochs(args.salvage / "log.txt")
        saved = best_checkpoint(work)
        stopped, fit_seconds = "killed by hand", clock.epochs[-1]["seconds"]
    else:
        saved, stopped, fit_seconds = train(
            model, config, train_data, valid_data, clock, args, work
        )
    checkpoint = torch.load(saved, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    score(h, model, dataset, config, clock, stopped, fit_seconds, args)


def best_checkpoint(work: Path) -> Path:
    """RecBole's best checkpoint of a run (the newest file it saved)."""
    return max((work / "saved").glob("*.pth"), key=os.path.getmtime)


def recorded_epochs(work: Path) -> list[dict]:
    """The epoch record a resumable run keeps (`train`); empty for runs made before it."""
    record = work / "epochs.json"
    return json.loads(record.read_text()) if record.exists() else []


def parse_epochs(log: Path) -> list[dict]:
    """Epoch records of a killed run, from the lines `timed_valid` printed."""
    found = re.findall(r"^epoch (\d+) valid ([\d.]+) at (\d+)s$", log.read_text(), re.M)
    return [{"epoch": int(e), "valid": float(v), "seconds": float(t)} for e, v, t in found]


def train(model, config, train_data, valid_data, clock, args, work: Path):
    """RecBole's own trainer, timed per validation; stops early on a budget or SIGUSR1.

    After every validation the whole training state goes to `work/last.pth` (beside RecBole's
    best checkpoint in `work/saved/`) and the epoch record to `work/epochs.json`, for `--resume`.
    """
    from recbole.utils import get_trainer

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    last, record = work / "last.pth", work / "epochs.json"
    if args.resume:
        best_file = best_checkpoint(work)
        trainer.resume_checkpoint(last)  # epoch, cur_step, best score, weights, optimizer
        trainer.saved_model_file = str(best_file)  # resume_checkpoint points it at `last`
        clock.epochs = recorded_epochs(work)
        # Time goes on from the last recorded epoch: this sitting's set-up is not counted.
        clock.start = time.perf_counter() - clock.epochs[-1]["seconds"]
        print(f"resumed after epoch {len(clock.epochs)} at {clock.elapsed():.0f}s", flush=True)

    def keep_state(epoch_idx: int, _score: float) -> None:
        """RecBole's callback, after its early-stopping step and best-checkpoint save."""
        tmp = work / ".last.pth.tmp"
        trainer._save_checkpoint(epoch_idx, verbose=False, saved_model_file=str(tmp))
        os.replace(tmp, last)
        tmp = work / ".epochs.json.tmp"
        tmp.write_text(json.dumps(clock.epochs))
        os.replace(tmp, record)

    valid_epoch = trainer._valid_epoch

    def timed_valid(*a, **k):
        score, result = valid_epoch(*a, **k)
        clock.record(float(score))
        print(f"epoch {len(clock.epochs)} valid {score:.4f} at {clock.elapsed():.0f}s", flush=True)
        if args.max_seconds and clock.elapsed() > args.max_seconds:
            # Stop before the next epoch, after RecBole has saved this one if it is the best.
            trainer._out_of_time = True
        return score, result

    trainer._valid_epoch = timed_valid
    train_epoch = trainer._train_epoch

    def budgeted_train(*a, **k):
        if getattr(trainer, "_out_of_time", False):
            raise OutOfTime
        return train_epoch(*a, **k)

    trainer._train_epoch = budgeted_train
    # SIGUSR1: finish this epoch, then score with the best checkpoint so far.
    signal.signal(signal.SIGUSR1, lambda *_: setattr(trainer, "_out_of_time", True))
    stopped = "early stop"
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=keep_state)
        if len(clock.epochs) >= config["epochs"]:
            stopped = "epoch cap"
    except OutOfTime:
        stopped = "time budget or SIGUSR1"
    return trainer.saved_model_file, stopped, clock.elapsed()


def score(h, model, dataset, config, clock, stopped, fit_seconds, args) -> None:
    """Full-catalogue scores of every test context, in our item ids, plus the result file."""
    import torch
    from recbole.data.interaction import Interaction

    # Our item id -> RecBole's internal id (0 is padding; items absent from training: none).
    tokens = dataset.field2id_token["item_id"]
    ours_of_internal = np.full(len(tokens), -1, dtype=np.int64)
    for internal, tok in enumerate(tokens):
        if isinstance(tok, str) and tok.startswith("i"):
            ours_of_internal[internal] = int(tok[1:])
    internal_of_ours = np.zeros(h.n_items, dtype=np.int64)
    known = ours_of_internal >= 0
    internal_of_ours[ours_of_internal[known]] = np.flatnonzero(known)
    cols = ours_of_internal[1:]

    max_len = config["MAX_ITEM_LIST_LENGTH"]
    n = len(h.test)
    scores, commit = handoff.score_writer(args.out / "scores.npy", n, h.n_items)
    started = time.perf_counter()
    batch = 256
    with torch.no_grad():
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            seq = np.zeros((hi - lo, max_len), dtype=np.int64)
            lens = np.ones(hi - lo, dtype=np.int64)
            for j in range(lo, hi):
                ids = internal_of_ours[h.test.row(j)]
                ids = ids[ids > 0][-max_len:]
                seq[j - lo, : len(ids)] = ids
                lens[j - lo] = max(len(ids), 1)
            inter = Interaction(
                {"item_id_list": torch.from_numpy(seq), "item_length": torch.from_numpy(lens)}
            )
            s = model.full_sort_predict(inter).numpy()
            block = np.full((hi - lo, h.n_items), -np.inf, dtype=np.float32)
            block[:, cols[cols >= 0]] = s[:, 1:][:, cols >= 0]
            scores[lo:hi] = block
    score_seconds = time.perf_counter() - started
    commit()
    best = clock.best()
    handoff.write_result(
        args.out / "result.json",
        {
            "library": "recbole",
            "model": args.model,
            "fit_seconds": fit_seconds,
            "score_seconds": score_seconds,
            "best_epoch": best["epoch"] if best else None,
            "seconds_to_best_epoch": best["seconds"] if best else fit_seconds,
            "epochs_run": len(clock.epochs),
            "stopped_by": stopped,
            "valid_metric": config["valid_metric"],
            "epochs": clock.epochs,
            "params": {
                k: config[k]
                for k in (
                    "train_batch_size",
                    "learning_rate",
                    "epochs",
                    "stopping_step",
                    "MAX_ITEM_LIST_LENGTH",
                    "hidden_size",
                    "n_layers",
                    "loss_type",
                )
                if k in config
            },
        },
    )


if __name__ == "__main__":
    main()
