"""`FunnelModel`: the sklearn-style estimator around `FunnelNet` (fit, score, profiles, save).

Training: next-event prediction at every position with full softmax cross-entropy (sampled
softmax with log-Q correction above `full_softmax_max_items`), plus, for a conversion target,
"last event of a session -> first target item of a later session", the exact shape of the
evaluation cases. Early stopping on validation NDCG@10 when validation cases are given.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from funnelrec.models.base import Recommender
from funnelrec.models.funnel_net import FunnelNet, FunnelNetConfig
from funnelrec.models.windows import (
    Batch,
    gap_bucket,
    history_at,
    holdout_last_target,
    item_metadata_codes,
    item_tag_codes,
    pad_histories,
    training_windows,
)
from funnelrec.schema import PURCHASE, FunnelrecError
from funnelrec.sequences import (
    Sequences,
    atomic_write,
    concat_sequences,
    count_matrix,
    encode_histories,
    load_sequences,
    transition_counts,
)

# Covisit weights tried on validation (0 = off).
COVISIT_GRID: tuple[float, ...] = (0.0, *(2.0**k for k in range(-6, 5)))


def _around(weight: float) -> tuple[float, ...]:
    """0 and the grid's weights next to `weight` (itself included): what an epoch after the
    first tries, since the best weight moves little from one epoch to the next."""
    i = COVISIT_GRID.index(weight)
    return (0.0, *COVISIT_GRID[max(i - 1, 1) : i + 2])


def _best(found: list[float], weights: tuple[float, ...]) -> tuple[float, float]:
    """The best validation figure and its covisit weight; of equal figures, the smaller
    weight (the grids are in increasing order)."""
    i = max(range(len(weights)), key=lambda i: (found[i], -i))
    return found[i], weights[i]


class FunnelModel(Recommender):
    """Action-aware sequential recommender whose profile is `n_traits` traits in [0, 1].

    Parameters
    ----------
    n_traits : size of the trait bottleneck (the profile).
    d_model, n_layers, n_heads, dropout, max_len : encoder size; `max_len` recent events.
    max_windows : training windows of `max_len + 1` events per customer, from the end
        (1 = only the last `max_len + 1` events, as SASRec implementations do; 0 = as
        many as cover the whole history, so every event of a long journey is a label
        once). 1 by default: the whole history was no better on every benchmark data set
        (Taobao, where 45% of events lie before the last window, -4% NDCG@10; the generator
        +0.5%; docs/benchmarks.md, "Twelfth session").
    encoder : "transformer" or "gru".
    use_actions, use_gaps, use_metadata, bottleneck, history, neighbours : switches for
        ablations.
    neighbour_dropout : dropout on the neighbour term's history vector in training. The
        encoder's dropout never reaches that linear item-to-item path, which otherwise
        learns the training transitions by heart within a few epochs (Beauty: validation
        NDCG@10 peaks at epoch 6 without it, at epoch 10 and 8% higher with 0.5).
    covisit_window, covisit_top : the covisit term (with the neighbour term; window 0 =
        off): each history event also votes for the items that followed its item within
        `covisit_window` events in training journeys (log counts, each item's `covisit_top`
        most frequent followers kept), weighted by the neighbour term's learned per-action,
        per-age weights. Its overall weight is picked on validation after training, from a
        grid that includes 0, so where it does not help it stays off. Full-rank evidence
        for rare items that the d_model-dimensional neighbour product cannot hold. The
        weight is 0 while training, but each epoch is validated with the term at its best
        weight, so early stopping keeps the epoch that is best with it (Beauty: epoch 8
        with it, 10 without, where epoch 10 with it is lower).
    drop_actions : action names removed from the data before fitting and scoring
        (the "no removal events" ablation).
    epochs, batch_size, lr, weight_decay, patience : optimisation; early stopping on
        validation NDCG@10 (patience in epochs).
    lr_decay : after an epoch that does not improve validation, go back to the best
        weights and multiply every learning rate by this (1.0 = off): a finer step where
        the coarse one stopped helping.
    sparsity, decorrelation : penalties that keep traits sparse and non-redundant.
    behaviour_weight : weight of the auxiliary tasks that make the traits also predict the
        next event's action and time gap (0 = off), so profiles carry how customers shop.
    history_len : events of a history used by the repeat term at scoring time.
    scalar_lr : learning rate of the few scalar weights (action gates, the repeat and
        neighbour terms' per-action, per-age and count weights, the trait temperature).
        They start far from where the data put them, and a small data set gives few steps
        per epoch (JD: 24 at batch 128), so with 0.1 they were still moving after ten
        epochs; with 0.3 JD's best epoch comes after 1-7 epochs instead of 10-12
        (docs/benchmarks.md, "Twelfth session").
    item_init : "svd" (default): item vectors start from a truncated SVD of the training
        customer x item log-counts and trait k's loadings from component k, the same
        whatever the seed; or "random" (small normal vectors, as SASRec). The SVD start
        reaches a better validation optimum in fewer epochs on every benchmark data set
        (docs/benchmarks.md, "SVD start as the default").
    anchor : with `item_init="svd"`, weight of a penalty that keeps the trait loadings near
        those SVD components (0 = free), so that each trait keeps a data-given identity.
    profile_anchor : with `item_init="svd"`, weight of a penalty that keeps trait k of a
        customer correlated with the projection of their history so far on SVD component
        k (0 = free): the customer side of `anchor`, a target that is the same for every
        seed, so retraining yields the same traits. None (default): 5.0 where the SVD start
        and the trait bottleneck are on, else 0. Its targets take n_traits floats per
        training event while they are in use.
    profile_anchor_decay : the anchor's weight is multiplied by this after every epoch
        (1 = constant). The first epochs settle which trait is which; later ones are free
        to rank. With 5.0 and 0.5: matched correlation of traits over 3 seeds 0.80
        instead of 0.52 on the benchmark's generated data (0.75, 0.72 on two other draws;
        it moves by ~0.1 with dropout's random numbers alone; 0.7: 0.92, 0.75, 0.71), at
        the free model's accuracy on most data sets and one or two epochs more
        (docs/benchmarks.md, "Decaying customer-side anchor", "Fourteenth session").
    trait_readout : with `item_init="svd"`, how each trait starts reading the sequence
        state: "random" (default) or "svd", where trait k starts as the customer's position
        on SVD component k, as its loadings do. With `profile_anchor_decay=1.0` traits agree
        across retrains (mean matched correlation of 3 seeds on three generator draws
        0.90, 0.85, 0.88, against 0.80, 0.75, 0.72 by default) at 0.7% of NDCG@10 and
        1.8% of HR@10 on Beauty, medians of 6 seeds (docs/benchmarks.md, "Fifteenth
        session", "Sixteenth session").
    trait_l2 : weight of a penalty on the traits' pre-activations (0 = off) that keeps
        them off the flat ends of the sigmoid. Without it, on order-only data (one action
        type, no times) every trait can end up near 1 for every customer: flat profiles
        (`flat_traits` finds them); 0.01 keeps them spread at the same accuracy there.
    ema : validate and keep an exponential moving average of the weights over the steps
        (decay per step; 0 = off, the raw weights): a smoother optimum, and validation
        that moves less from epoch to epoch.
    seed : makes fitting repeatable (same seed, same data, same metrics).

    Examples
    --------
    >>> model = FunnelModel(n_traits=16, epochs=5).fit(split.train)   # doctest: +SKIP
    >>> ids, scores = model.recommend(histories, k=10)                 # doctest: +SKIP
    """

    name = "funnel"

    def __init__(
        self,
        n_traits: int = 16,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        max_windows: int = 1,
        encoder: str = "transformer",
        use_actions: bool = True,
        use_gaps: bool = True,
        use_metadata: bool = True,
        bottleneck: bool = True,
        history: bool = True,
        neighbours: bool = True,
        neighbour_dropout: float = 0.5,
        covisit_window: int = 3,
        covisit_top: int = 100,
        drop_actions: tuple[str, ...] = (),
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        patience: int = 3,
        lr_decay: float = 1.0,
        sparsity: float = 1e-3,
        decorrelation: float = 1e-2,
        behaviour_weight: float = 0.2,
        history_len: int = 51,
        full_softmax_max_items: int = 50_000,
        n_negatives: int = 8192,
        scalar_lr: float = 0.3,
        device: str = "cpu",
        internal_validation: bool = True,
        session_gap_minutes: float = 30.0,
        min_conversion_labels: int = 500,
        item_init: str = "svd",
        anchor: float = 0.0,
        profile_anchor: float | None = None,
        profile_anchor_decay: float = 0.5,
        trait_readout: str = "random",
        trait_l2: float = 0.0,
        ema: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.n_traits = n_traits
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.max_len = max_len
        self.max_windows = max_windows
        self.encoder = encoder
        self.use_actions = use_actions
        self.use_gaps = use_gaps
        self.use_metadata = use_metadata
        self.bottleneck = bottleneck
        self.history = history
        self.neighbours = neighbours
        self.neighbour_dropout = neighbour_dropout
        self.covisit_window = covisit_window
        self.covisit_top = covisit_top
        self.drop_actions = tuple(drop_actions)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.lr_decay = lr_decay
        self.sparsity = sparsity
        self.decorrelation = decorrelation
        self.behaviour_weight = behaviour_weight
        self.history_len = history_len
        self.full_softmax_max_items = full_softmax_max_items
        self.n_negatives = n_negatives
        self.scalar_lr = scalar_lr
        self.device = device
        self.internal_validation = internal_validation
        self.session_gap_minutes = session_gap_minutes
        self.min_conversion_labels = min_conversion_labels
        self.item_init = item_init
        self.anchor = anchor
        self.profile_anchor = profile_anchor
        self.profile_anchor_decay = profile_anchor_decay
        self.trait_readout = trait_readout
        self.trait_l2 = trait_l2
        self.ema = ema
        self.seed = seed

    @property
    def _anchorable(self) -> bool:
        """Traits can be anchored: they exist and the SVD start gives their components."""
        return self.item_init == "svd" and self.bottleneck

    @property
    def profile_anchor_(self) -> float:
        """The customer-side anchor's starting weight in effect (see `profile_anchor`)."""
        if self.profile_anchor is not None:
            return float(self.profile_anchor)
        return 5.0 if self._anchorable else 0.0

    def check_params(self) -> None:
        """Raise ValueError for settings no fit could use, before any data is read."""
        for name, value in self.get_params().items():
            if isinstance(value, float) and not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value}")
        if self.covisit_window < 0:
            raise ValueError(f"covisit_window must be at least 0, not {self.covisit_window}")
        for name in (
            "n_traits",
            "epochs",
            "batch_size",
            "d_model",
            "max_len",
            "n_heads",
            "n_layers",
            "covisit_top",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_windows < 0:
            raise ValueError(f"max_windows must be at least 0 (0 = all), not {self.max_windows}")
        if self.encoder == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], not {self.lr_decay}")
        for name in ("dropout", "neighbour_dropout", "ema"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if not 0.0 < self.profile_anchor_decay <= 1.0:
            raise ValueError(
                f"profile_anchor_decay must be in (0, 1], not {self.profile_anchor_decay}"
            )
        for name in ("anchor", "profile_anchor"):
            if getattr(self, name) is None:  # profile_anchor's default: on where it applies
                continue
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, not {getattr(self, name)}")
            if getattr(self, name) > 0 and not self._anchorable:
                raise ValueError(
                    f"{name} needs item_init='svd' and the trait bottleneck (it anchors traits "
                    "to the SVD components)"
                )
        if self.trait_readout == "svd" and not self._anchorable:
            raise ValueError("trait_readout='svd' needs item_init='svd' and the trait bottleneck")
        choices = {
            "item_init": ("svd", "random"),
            "encoder": ("transformer", "gru"),
            "trait_readout": ("random", "svd"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: Sequences | pd.DataFrame | str | Path,
        valid: tuple[Sequences, np.ndarray] | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        mask_history: bool = False,
    ) -> Self:
        """Learn from `train`; `valid` = (contexts, target items) enables early stopping.

        `train` may also be raw events (a DataFrame or a file in any supported layout); then
        every event is learned from, with the purchase target.

        `mask_history` scores validation the way the test will be scored when history items
        are excluded from rankings (model selection must match the protocol).
        """
        self.check_params()
        if not isinstance(train, Sequences):
            train = load_sequences(train)[0]
            has_buys = bool((train.actions == PURCHASE).any())
            train.target_actions = (PURCHASE,) if has_buys else tuple(range(train.vocab.n_actions))
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        conversion = tuple(train.target_actions) != tuple(range(train.vocab.n_actions))
        given = train  # profiles and recommendations use every given event
        proxy_valid = False  # validation cases that are not of the target's kind
        if (valid is None or len(valid[1]) == 0) and self.internal_validation:
            # No validation cases given: hold out each customer's last target event, so
            # that early stopping still has something honest to look at.
            part, contexts, targets = holdout_last_target(train, conversion)
            if not len(targets) and conversion:
                # Not one customer has a later-session conversion to spare (short logs):
                # stop on each customer's last event instead, so the epochs are still
                # chosen on held-out data rather than run to `epochs` (which overfits).
                every = tuple(range(train.vocab.n_actions))
                part, contexts, targets = holdout_last_target(train, False, every)
                proxy_valid = True
            train = part
            valid = (contexts, targets) if len(targets) else None
        train = self._drop(train)
        vocab = train.vocab
        self.conversion_ = conversion
        # Validation scores with the head its cases are for; revisited after training.
        self.score_task_ = 1 if conversion and not proxy_valid else 0
        self.target_actions_ = tuple(int(a) for a in train.target_actions)
        cat, brand, band = item_metadata_codes(vocab)
        tags = item_tag_codes(vocab)
        cfg = FunnelNetConfig(
            n_items=vocab.n_items,
            n_actions=vocab.n_actions,
            n_categories=int(cat.max()),
            n_brands=int(brand.max()),
            n_price_bands=int(band.max()),
            n_tags=len(vocab.tag_names) if tags.shape[1] and self.use_metadata else 0,
            max_tags=tags.shape[1],
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            dropout=self.dropout,
            max_len=self.max_len,
            n_traits=self.n_traits,
            encoder=self.encoder,
            use_actions=self.use_actions,
            use_gaps=self.use_gaps,
            use_metadata=self.use_metadata,
            bottleneck=self.bottleneck,
            history=self.history,
            neighbours=self.neighbours,
            neighbour_dropout=self.neighbour_dropout,
            behaviour_heads=self.bottleneck and self.behaviour_weight > 0,
        )
        net = FunnelNet(cfg)
        net.set_item_metadata(
            torch.from_numpy(cat),
            torch.from_numpy(brand),
            torch.from_numpy(band),
            torch.from_numpy(tags),
        )
        self._anchor, self._svd = None, None
        if self.item_init == "svd":
            self._anchor, self._svd = _svd_init(net, train, self.trait_readout == "svd")
        self.net_, self.vocab_, self.n_items_ = net, vocab, vocab.n_items
        self.histories_, self._row_index = given, None
        windows, nxt, conv, src = training_windows(
            train, self.max_len, self.conversion_, self.max_windows
        )
        if windows.n_events == 0:
            raise FunnelrecError("no customer has two or more training events to learn from")
        batch_all, _ = pad_histories(windows, self.max_len + 1)
        lab_next = _pad_labels(windows, nxt, batch_all.items.shape[1])
        self.n_train_labels_ = int((nxt > 0).sum())  # next events learned from per epoch
        lab_conv = _pad_labels(windows, conv, batch_all.items.shape[1])
        lab_behaviour = _behaviour_labels(windows, nxt, batch_all.items.shape[1])
        self._proj = None
        # (check_params allows a weight only with the SVD start and the traits; the SVD
        # itself is None where the data are too small for one)
        if self.profile_anchor_ > 0 and self._svd is not None:
            self._proj = _prefix_projections(train, src, self._svd, self.n_traits)
            self._proj = self._proj.to(self.device)
            self._proj_end = torch.from_numpy(windows.offsets[1:].astype(np.int64))
        # Items without a training event are kept out of the full softmax (never pushed down
        # as negatives that can never be positives); after training they are scored from
        # their metadata alone (see `_cold_item_prior`).
        n_train = np.bincount(train.items, minlength=vocab.n_items)
        seen = n_train > 0
        # Only with the full softmax: under sampled softmax an item that is rarely or never
        # a sampled negative keeps a bias that nothing pushed down, so items without events
        # stay in the sample (with add-one counts) and are pushed down like any rare item.
        sampled = vocab.n_items > self.full_softmax_max_items
        self._unseen = None if seen.all() or sampled else torch.from_numpy(~seen).to(self.device)
        self._train_counts = torch.from_numpy(n_train).to(self.device)
        counts = n_train + 1.0 if sampled else np.where(seen, n_train + 1.0, 0.0)
        q = np.maximum(counts / counts.sum(), 1e-30)
        self.log_q_ = torch.from_numpy(np.log(q)).float().to(self.device)
        net.to(self.device)
        if self._anchor is not None:
            self._anchor = self._anchor.to(self.device)
        # The few scalar weights (action gates, history weights, temperature) get a larger
        # step: with a few hundred steps per fit they would otherwise barely leave their init.
        scalars = {
            "action_gate",
            "history_action",
            "history_age",
            "history_count",
            "logit_scale",
            "neigh_action",
            "neigh_age",
        }
        named = list(net.named_parameters())
        opt = torch.optim.AdamW(
            [
                {"params": [p for n, p in named if n not in scalars]},
                {
                    "params": [p for n, p in named if n in scalars],
                    "lr": self.scalar_lr,
                    "weight_decay": 0.0,
                },
            ],
            lr=self.lr,
            weight_decay=self.weight_decay,
        )
        lengths = batch_all.lengths.numpy()
        best, best_state, bad, self.history_ = -1.0, None, 0, []
        params = [p for p in net.parameters() if p.requires_grad]
        averaged = [p.detach().clone() for p in params] if self.ema > 0 else None
        live = [p.detach() for p in params]  # views: they follow the parameters
        steps = 0
        started = time.perf_counter()
        # The covisit counts do not depend on the network: built once, so that every epoch
        # can be validated with the term (timed as part of the first epoch).
        covisit = self._covisit_on(valid)
        if covisit:
            self._build_covisit(train)
        co_weight: float | None = None
        for epoch in range(1, self.epochs + 1):
            net.train()
            self._anchor_weight = self.profile_anchor_ * self.profile_anchor_decay ** (epoch - 1)
            if self._anchor_weight < 1e-3:
                self._proj = None  # done: its memory back for the rest of the fit
            order = _length_batches(lengths, self.batch_size, rng)
            total, n = 0.0, 0
            for rows in order:
                loss = self._step(
                    net, batch_all, lab_next, lab_conv, lab_behaviour, torch.from_numpy(rows)
                )
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                steps += 1
                if averaged is not None:
                    # Early steps weigh more (as in TensorFlow's moving averages): the start
                    # is not an average worth keeping.
                    decay = min(self.ema, (1.0 + steps) / (10.0 + steps))
                    torch._foreach_lerp_(averaged, live, 1.0 - decay)
                total += float(loss.detach())
                n += 1
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": total / max(n, 1),
                "seconds": time.perf_counter() - started,
                "lr": opt.param_groups[0]["lr"],
            }
            raw = _swap_in(params, averaged)  # validate (and keep) the averaged weights
            if valid is not None and len(valid[1]):
                self._cold_item_prior(net)
                # A conversion target can be scored by either head and the better one is
                # kept (`_choose_scoring_task`), so an epoch counts by its better head: the
                # conversion head, with few labels of its own, may overfit while the
                # next-event head still improves (Taobao: 0.03 against 0.11 at epoch 3).
                heads = (0, 1) if self.conversion_ and not proxy_valid else (self.score_task_,)
                # With the covisit term, an epoch is judged as it would be kept: at its
                # best weight (a few weights around the last epoch's; the whole grid first).
                weights = None
                if covisit:
                    weights = COVISIT_GRID if co_weight is None else _around(co_weight)
                found = {}
                for head in heads:
                    self.score_task_ = head
                    found[head] = self._valid_at_best_weight(valid, mask_history, weights)
                self.score_task_ = max(found, key=lambda t: (found[t][0], t))
                record["valid_NDCG@10"], weight = found[self.score_task_]
                if covisit:
                    record["covisit_weight"] = weight
                    co_weight = weight if weight > 0 else co_weight or 1.0
                if len(heads) > 1:
                    record["valid_head"] = "conversion" if self.score_task_ else "next event"
                if record["valid_NDCG@10"] > best:
                    best, bad = record["valid_NDCG@10"], 0
                    best_state = copy.deepcopy(net.state_dict())
                    self.best_epoch_ = epoch
                else:
                    bad += 1
                    if self.lr_decay < 1.0 and best_state is not None:
                        net.load_state_dict(best_state)
                        raw = None  # go on from the best weights, and average from them
                        if averaged is not None:
                            averaged = [p.detach().clone() for p in params]
                        for group in opt.param_groups:
                            group["lr"] *= self.lr_decay
            if raw is not None and (valid is None or bad < self.patience):
                _swap_in(params, raw)  # training goes on from the raw weights
            self.history_.append(record)
            if progress:
                progress(record)
            if valid is not None and bad >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        elif averaged is not None:
            _swap_in(params, averaged)  # no validation: the last average is the model
        self._cold_item_prior(net)
        if not hasattr(self, "best_epoch_"):
            self.best_epoch_ = len(self.history_)
        net.eval()
        picking = time.perf_counter()
        grid = self._choose_scoring_task(
            None if proxy_valid else valid, mask_history, int((lab_conv > 0).sum())
        )
        self._fit_covisit(valid, mask_history, grid)
        # What a benchmark should time: the epochs up to the kept one plus choosing the head
        # and the covisit weight (for a conversion target the weight's grid is run while
        # choosing the head, so the two are timed together).
        picked = time.perf_counter() - picking
        self.covisit_seconds_ = picked if self.covisit_valid_ else 0.0
        self.seconds_to_best_ = self.history_[self.best_epoch_ - 1]["seconds"] + picked
        self.fit_seconds_ = time.perf_counter() - started
        self._proj = self._proj_end = None  # training targets: not needed after fitting
        return self

    @torch.no_grad()
    def _cold_item_prior(self, net: FunnelNet) -> None:
        """Items never seen in training: own embedding 0 (their vector is then category +
        brand + price band) and the bias of the rarest seen items of their category.

        Zero events is less evidence than one, so a new item starts where the least
        popular known items of its kind are, not in the middle of the catalogue; its
        metadata (through traits and neighbours) has to lift it.
        """
        if self._unseen is None:
            return
        unseen = self._unseen
        net.item_emb.weight[1:][unseen] = 0.0
        bias = net.item_bias
        counts = self._train_counts
        seen = ~unseen
        rarest = seen & (counts == counts[seen].min())
        prior = torch.full_like(bias, float(bias[rarest].mean()))
        cat = torch.from_numpy(self.vocab_.item_category.astype(np.int64)).to(bias.device)
        for c in torch.unique(cat[unseen & (cat >= 0)]).tolist():
            mine = seen & (cat == c)
            if mine.any():
                low = mine & (counts == counts[mine].min())
                prior[cat == c] = bias[low].mean()
        bias[unseen] = prior[unseen]
        net.train(net.training)  # drop cached item vectors

    def _choose_scoring_task(
        self, valid, mask_history: bool, n_conversion_labels: int
    ) -> list[float] | None:
        """Which head scores a conversion target: the conversion head or the next-event head.

        Decided on validation cases when there are any, each head at its best covisit
        weight; without them, the conversion head needs enough examples of its own (short
        logs may hold only a handful of later-session conversions, which leaves that head
        barely trained). Returns the chosen head's validation figure per `COVISIT_GRID`
        weight where it was computed (`_fit_covisit` picks from it), else None.
        """
        self.score_task_ = 1 if self.conversion_ else 0
        if not self.conversion_:
            return None
        if valid is not None and len(valid[1]):
            weights = COVISIT_GRID if self._covisit_on(valid) else None
            by_task = {}
            for task in (0, 1):
                self.score_task_ = task
                by_task[task] = self._valid_grid(valid, mask_history, weights)
            self.score_task_ = max(by_task, key=lambda t: (max(by_task[t]), t))
            return by_task[self.score_task_] if weights else None
        if n_conversion_labels < self.min_conversion_labels:
            self.score_task_ = 0
        return None

    def _covisit_on(self, valid) -> bool:
        """Whether the covisit term is in play: it needs validation cases to pick its weight."""
        has_cases = valid is not None and len(valid[1]) > 0
        return self.covisit_window > 0 and self.neighbours and has_cases

    def _build_covisit(self, train: Sequences) -> None:
        """Count which items follow which in `train` (the term's weight stays 0 for now)."""
        c = transition_counts(train, self.covisit_window, self.covisit_top)
        self.net_.set_covisit(
            torch.from_numpy(c.indptr.astype(np.int64)),
            torch.from_numpy(c.indices.astype(np.int64)),
            torch.from_numpy(c.data.astype(np.float32)),
        )

    def _valid_grid(
        self, valid, mask_history: bool, weights: tuple[float, ...] | None
    ) -> list[float]:
        """Validation NDCG@10 at each covisit weight of `weights`; None: as scored now."""
        if weights is None:
            return [self._valid_ndcg(*valid, mask_history=mask_history)]
        return self._valid_ndcgs(*valid, mask_history=mask_history, alphas=weights)

    def _valid_at_best_weight(
        self, valid, mask_history: bool, weights: tuple[float, ...] | None
    ) -> tuple[float, float]:
        """(validation NDCG@10, covisit weight) at the best of `weights`; None: as scored now."""
        return _best(self._valid_grid(valid, mask_history, weights), weights or (0.0,))

    def _fit_covisit(self, valid, mask_history: bool, found: list[float] | None = None) -> None:
        """Pick the covisit weight on validation for the kept network, from a grid that holds
        0 (off where it does not help); off without validation cases. The counts were built
        before training (`_build_covisit`); `found`: the grid's figures, already computed."""
        net = self.net_
        net.co_scale.zero_()
        self.covisit_valid_: dict[str, float] = {}
        if not self._covisit_on(valid):
            return
        if found is None:
            found = self._valid_ndcgs(*valid, mask_history=mask_history, alphas=COVISIT_GRID)
        self.covisit_valid_ = {
            f"{a:g}": round(v, 5) for a, v in zip(COVISIT_GRID, found, strict=True)
        }
        net.co_scale.fill_(_best(found, COVISIT_GRID)[1])
        net.train(net.training)  # drop cached item vectors

    def _step(
        self,
        net: FunnelNet,
        b: Batch,
        lab_next: torch.Tensor,
        lab_conv: torch.Tensor,
        lab_behaviour: tuple[torch.Tensor, torch.Tensor],
        rows: torch.Tensor,
    ) -> torch.Tensor:
        sub = Batch(b.items[rows], b.actions[rows], b.gaps[rows], b.starts[rows])
        T = int(sub.lengths.max())
        sub = _tail(sub, T)
        dev = self._device
        h = net.encode(sub.items.to(dev), sub.actions.to(dev), sub.gaps.to(dev), sub.starts.to(dev))
        loss = torch.zeros((), device=dev)
        next_labels = lab_next[rows][:, -T:]
        if self.history or self.neighbours:
            nxt, occ = net.repeats(sub.items.to(dev), sub.actions.to(dev))
        tasks = [(next_labels, 0)]
        if self.conversion_:
            tasks.append((lab_conv[rows][:, -T:], 1))
        for labels, task in tasks:
            r, c = torch.nonzero(labels > 0, as_tuple=True)
            if len(r) == 0:
                continue
            target = (labels[r, c] - 1).to(dev)
            hist = None
            if self.history or self.neighbours:
                hi, ha, hg = history_at(sub, r, c)
                rd, cd = r.to(dev), c.to(dev)
                hist = net.history_weights(
                    hi.to(dev), ha.to(dev), hg.to(dev), task, repeats=(nxt[rd], occ[rd], cd)
                )
            ht = net.for_task(h[r.to(dev), c.to(dev)], task)
            loss = loss + self._train_loss(net, ht, hist, target)
            if self.bottleneck:
                z = net.to_traits(ht)
                tr = torch.sigmoid(z)
                loss = loss + self.sparsity * tr.mean() + self.decorrelation * _offdiag_corr(tr)
                if self.trait_l2 > 0:  # keep traits off the flat ends of the sigmoid
                    loss = loss + self.trait_l2 * z.pow(2).mean()
                if task == 0 and self._proj is not None:
                    # Column c of these right-aligned rows is event end - T + c of its window.
                    ref = self._proj[(self._proj_end[rows][r] - T + c).to(dev)]
                    loss = loss + self._anchor_weight * (1.0 - _column_corr(z, ref).mean())
                if task == 0 and net.cfg.behaviour_heads:
                    act, gap = net.behaviour_logits(tr)
                    next_act = lab_behaviour[0][rows][:, -T:][r, c].to(dev)
                    next_gap = lab_behaviour[1][rows][:, -T:][r, c].to(dev)
                    loss = loss + self.behaviour_weight * (
                        F.cross_entropy(act, next_act) + F.cross_entropy(gap, next_gap)
                    )
        if self.anchor > 0 and self._anchor is not None and self.bottleneck:
            # Loadings of the items in this batch's labels, relative to their SVD start.
            j = torch.unique(next_labels[next_labels > 0]).to(dev)
            ref = self._anchor[j - 1]
            drift = ((net.to_loadings(net.item_vectors(j)) - ref) ** 2).sum(1).mean()
            loss = loss + self.anchor * drift / ref.pow(2).sum(1).mean().clamp(min=1e-12)
        return loss

    def _train_loss(
        self, net: FunnelNet, h: torch.Tensor, hist: tuple | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the next item: full softmax, or sampled softmax with log-Q
        correction above `full_softmax_max_items`.

        The sampled version scores the batch's targets plus popularity-sampled negatives and
        subtracts log q(item), so the expected gradient matches the full softmax.
        """
        if self.n_items_ <= self.full_softmax_max_items:
            return net.cross_entropy(h, hist, target, exclude=self._unseen)
        q = self.log_q_.exp()
        neg = torch.multinomial(q, self.n_negatives, replacement=True).to(target.device)
        extra = [target, neg]
        if hist is not None:  # history items compete too, or their weights learn unopposed
            extra.append(hist[0][(hist[1] != 0) | (hist[2] != 0)])
        cols, inverse = torch.unique(torch.cat(extra), return_inverse=True)
        # Each distinct column was in the sample with probability 1 - (1 - q)^n, not q.
        log_in = torch.log(-torch.expm1(self.n_negatives * torch.log1p(-q[cols].clamp(max=0.999))))
        logits = net.score(h, hist, cols=cols) - log_in
        return F.cross_entropy(logits, inverse[: len(target)])

    def _valid_ndcg(
        self, contexts: Sequences, targets: np.ndarray, mask_history: bool = False
    ) -> float:
        return self._valid_ndcgs(contexts, targets, mask_history)[0]

    def _valid_ndcgs(
        self,
        contexts: Sequences,
        targets: np.ndarray,
        mask_history: bool = False,
        alphas: tuple[float, ...] | None = None,
    ) -> list[float]:
        """Validation NDCG@10 as scored now, or one per covisit weight in `alphas` (one
        encoder pass for all of them)."""
        # Same definition as funnelrec.evaluate (random tie-breaking, full ranking); kept
        # local so that models never import the evaluation layer.
        n = len(contexts)
        m = 1 if alphas is None else len(alphas)
        greater, ties = np.zeros((m, n), np.int64), np.ones((m, n), np.int64)
        # Contexts of similar length together: less padding to encode (scores do not
        # depend on the padding of a batch).
        order = np.argsort(contexts.lengths, kind="stable")
        for lo in range(0, n, 256):
            sl = order[lo : lo + 256]
            ctx = contexts.select(sl)
            base, co = (self._score(ctx), None) if alphas is None else self._score_parts(ctx)
            if mask_history:  # once: -inf stays -inf whatever is added to it
                base[ctx.row_of_events(), ctx.items] = -np.inf
            # One variant at a time: on a big catalogue each is a large matrix.
            variants = [base] if co is None else (base + a * co for a in alphas)
            for i, s in enumerate(variants):
                t = s[np.arange(len(sl)), targets[sl]][:, None]
                greater[i, sl], ties[i, sl] = (s > t).sum(1), (s == t).sum(1)
        out = []
        for i in range(m):
            r = greater[i] + np.random.default_rng(0).integers(0, ties[i])
            out.append(float(np.where(r < 10, 1.0 / np.log2(r + 2.0), 0.0).mean()) if n else 0.0)
        return out

    @torch.no_grad()
    def _score_parts(self, histories: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the covisit term at weight 1, from one encoder pass; called by
        `_fit_covisit` while the weight is still 0, so the scores are without the term."""
        net = self.net_
        h, hist = self._encode_last(histories)
        base = net.score(h, hist).cpu().numpy()
        if hist is None:
            return base, np.zeros_like(base)
        return base, net.covisit(hist[0], hist[2]).cpu().numpy()

    # ------------------------------------------------------------------ scoring
    @property
    def _device(self) -> torch.device:
        return next(self.net_.parameters()).device

    def _drop(self, seqs: Sequences) -> Sequences:
        if not self.drop_actions:
            return seqs
        drop = [seqs.vocab.action_index(a) for a in self.drop_actions]
        return seqs.keep_events(~np.isin(seqs.actions, drop))

    @torch.no_grad()
    def _encode_last(
        self, histories: Sequences, journey: list | None = None, with_history: bool = True
    ):
        """Final state (n, d) and history term (n, n_items) of each history.

        Pass a list as `journey` to also receive the journey traits (n, k) from the same
        encoder pass (appended to it). `with_history=False` skips the history term (None)
        where only states or traits are wanted.
        """
        h_seqs = self._drop(histories)
        net = self.net_
        if net.training:
            net.eval()
        # One padding for both windows: each is the right-aligned tail of the widest, the
        # same arrays as padding to its own length (no field depends on the window).
        wide, _ = pad_histories(h_seqs, max(self.max_len, self.history_len))
        batch = _tail(wide, self.max_len)
        task = getattr(self, "score_task_", 1 if self.conversion_ else 0)
        dev = self._device
        fields = (batch.items, batch.actions, batch.gaps, batch.starts)
        # Without journey traits only the last state is read: the top layer computes it alone.
        states = net.encode(*(f.to(dev) for f in fields), last_only=journey is None)
        h = net.for_task(states[:, -1], task)
        if journey is not None and self.bottleneck:
            t = net.traits(net.for_task(states, task))
            real = (batch.items > 0).to(dev).unsqueeze(-1).float()
            journey.append(((t * real).sum(1) / real.sum(1).clamp(min=1.0)).cpu().numpy())
        hist = None
        if with_history and (self.history or self.neighbours):
            long_batch = _tail(wide, self.history_len)
            T = long_batch.items.shape[1]
            r = torch.arange(len(h_seqs))
            hi, ha, hg = history_at(long_batch, r, torch.full((len(r),), T - 1))
            hist = net.history_weights(hi.to(dev), ha.to(dev), hg.to(dev), task)
        return h, hist

    def _score(self, histories: Sequences, batch: int = 256) -> np.ndarray:
        if len(histories) > batch:
            # Histories of similar length together: padding is most of the work otherwise
            # (a batch is as long as its longest history).
            out = np.empty((len(histories), self.n_items_), np.float32)
            order = np.argsort(histories.lengths, kind="stable")
            for lo in range(0, len(order), batch):
                rows = order[lo : lo + batch]
                out[rows] = self._score(histories.select(rows), batch)
            return out
        h, hist = self._encode_last(histories)
        with torch.no_grad():
            return self.net_.score(h, hist).cpu().numpy()

    def decompose(self, history: Sequences, item: int) -> dict[str, Any]:
        """Exact split of one history's score for `item` (dense id) into its parts.

        score = bias + sum_k trait_k contribution + sum_events (repeat + neighbour + covisit)
        parts.
        Returns {"score", "bias", "traits": (k,) contributions, "trait_values": (k,),
        "events": DataFrame with one row per history event and its three contributions}.
        """
        return self.decompose_items(history, [item])[0]

    @torch.no_grad()
    def decompose_items(self, history: Sequences, items: list[int]) -> list[dict[str, Any]]:
        """`decompose` for several items of one history, encoding the history once."""
        self._check_fitted()
        if len(history) != 1:
            raise ValueError("decompose takes a single history")
        net = self.net_
        h, hist = self._encode_last(history)
        row = net.score(h, hist)[0]
        j = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self._device)
        vecs = net.item_vectors(j + 1)  # (m, d)
        if self.bottleneck:
            t = net.traits(h)[0]
            traits = (net.logit_scale.exp() * t * net.to_loadings(vecs)).cpu().numpy()
            values = t.cpu().numpy()
        else:
            traits = (vecs @ h[0]).cpu().numpy()[:, None]  # one opaque part
            values = np.zeros(0, np.float32)
        seqs = self._drop(history)
        n_kept = min(seqs.n_events, self.history_len)
        where = np.arange(seqs.n_events - n_kept, seqs.n_events)
        kept_items = seqs.items[-n_kept:] if n_kept else np.zeros(0, np.int64)
        kept_actions = seqs.actions[-n_kept:] if n_kept else np.zeros(0, np.int64)
        repeat = np.zeros((len(items), n_kept), np.float32)
        neigh = np.zeros((len(items), n_kept), np.float32)
        covisit = np.zeros((len(items), n_kept), np.float32)
        if hist is not None and n_kept:
            idx, w, nw = (x[0, -n_kept:] for x in hist)
            if self.history:
                same = idx[None, :] == j[:, None]
                repeat = torch.where(same, w[None, :], torch.zeros_like(w)[None, :]).cpu().numpy()
            if self.neighbours:
                sims = vecs @ net.neigh_proj(net.item_vectors(idx + 1)).T  # (m, n_kept)
                neigh = (nw[None, :] * sims).cpu().numpy()
                if float(net.co_scale) != 0.0:  # each event's sparse row, on its own
                    one = net.covisit(idx[:, None], nw[:, None])  # (n_kept, n_items)
                    covisit = (net.co_scale * one[:, j]).T.cpu().numpy()
        out = []
        for m, item in enumerate(items):
            events = pd.DataFrame(
                {
                    "position": where,
                    "item": kept_items,
                    "action": kept_actions,
                    "repeat": repeat[m],
                    "neighbour": neigh[m],
                    "covisit": covisit[m],
                }
            )
            out.append(
                {
                    "score": float(row[item]),
                    "bias": float(net.item_bias[item]),
                    "traits": traits[m],
                    "trait_values": values,
                    "events": events,
                }
            )
        return out

    @torch.no_grad()
    def score_items(self, histories: Sequences, items: np.ndarray) -> np.ndarray:
        """(n, len(items)) scores of a few items (dense ids) for each history.

        Cheaper than full scores when only some items matter (explanations re-score one
        item for many edited histories).
        """
        self._check_fitted()
        h, hist = self._encode_last(histories)
        cols = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self._device)
        return self.net_.score(h, hist, cols=cols).cpu().numpy()

    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """(n_items, d) item vectors (own embedding plus category, brand and price band)."""
        self._check_fitted()
        self.net_.eval()
        return self.net_.item_vectors().cpu().numpy()

    @torch.no_grad()
    def trait_loadings(self) -> np.ndarray:
        """(n_items, k): how much one unit of each trait adds to each item's score."""
        self._check_fitted()
        if not self.bottleneck:
            raise FunnelrecError("this model was fitted without the trait bottleneck")
        self.net_.eval()
        return (self.net_.logit_scale.exp() * self.net_.loadings()).cpu().numpy()

    def trait_names(self) -> list[str]:
        return [f"trait_{k + 1:02d}" for k in range(self.n_traits)]

    def profiles(self, histories: Sequences | None = None, journey: bool = False) -> pd.DataFrame:
        """Customer x trait DataFrame of values in [0, 1].

        Default: the traits at the end of each history - the state that drives the
        customer's recommendations now. `journey=True`: the mean of the traits after each of
        the last `max_len` events - who the customer has been across the journey, steadier
        than the last click (what segments and trait cards are built on).
        Without `histories`: every customer the model was fitted on (with live updates).
        """
        self._check_fitted()
        if not self.bottleneck:
            raise FunnelrecError("this model was fitted without the trait bottleneck")
        histories = histories if histories is not None else self._merged_histories()
        out = []
        for lo in range(0, len(histories), 2048):
            part = histories.select(np.arange(lo, min(lo + 2048, len(histories))))
            with torch.no_grad():
                if journey:
                    out.append(self._journey_traits(part))
                else:
                    h, _ = self._encode_last(part, with_history=False)
                    out.append(self.net_.traits(h).cpu().numpy())
        values = np.concatenate(out) if out else np.zeros((0, self.n_traits), np.float32)
        names = histories.vocab.customer_ids
        ids = [names[c] if c >= 0 else f"new_{j}" for j, c in enumerate(histories.customers)]
        return pd.DataFrame(
            values, index=pd.Index(ids, name="customer_id"), columns=self.trait_names()
        )

    def flat_traits(self, tol: float = 0.01) -> list[str]:
        """Traits that hardly vary between customers (standard deviation below `tol`):
        they say nothing about anyone, whatever their value."""
        if not self.bottleneck:
            return []
        spread = self.profiles().std(axis=0)
        return [str(t) for t, sd in spread.items() if not sd >= tol]

    def _journey_traits(self, histories: Sequences) -> np.ndarray:
        out: list = []
        self._encode_last(histories, journey=out, with_history=False)
        return out[0]

    def set_histories(self, histories: Sequences) -> None:
        """Use these histories for profiles and recommendations (weights unchanged).

        Why: a model is fitted on the training part of a split but should profile every
        customer from all their events; live updates made so far are dropped.
        """
        self._check_fitted()
        self.histories_, self._row_index = histories, None

    def history_of(self, customer_id: str) -> Sequences:
        """The stored history of a known customer (one row), including live updates."""
        self._check_fitted()
        row = self._rows.get(str(customer_id))
        live = self._live.get(str(customer_id))
        if live is not None:
            return live
        if row is None:
            raise FunnelrecError(
                f"unknown customer '{customer_id}'; pass their events instead "
                "(a DataFrame in Python, `--events FILE` on the command line)"
            )
        return self.histories_.select(np.array([row]))

    def current_histories(self) -> Sequences:
        """Every customer's history as the model holds it now (with live updates)."""
        return self._merged_histories()

    def _merged_histories(self) -> Sequences:
        """Stored histories with every live update applied (new customers appended)."""
        self._rows  # noqa: B018 - makes sure the live state exists
        if not self._live:
            return self.histories_
        base = self.histories_
        replaced = [self._rows[c] for c in self._live if c in self._rows]
        keep = np.setdiff1d(np.arange(len(base)), np.asarray(replaced, dtype=np.int64))
        new_ids = [c for c in self._live if c not in self._rows]
        vocab = base.vocab
        if new_ids:
            vocab = dataclasses.replace(
                vocab,
                customer_ids=np.concatenate(
                    [vocab.customer_ids, np.asarray(new_ids, dtype=object)]
                ),
                _customer_index=None,
            )
        parts = [base.select(keep)]
        for key, hist in self._live.items():
            cid = self._rows_customer(key, vocab)
            parts.append(dataclasses.replace(hist, customers=np.array([cid], np.int32)))
        merged = concat_sequences(parts)
        merged.vocab = vocab
        return merged

    def _rows_customer(self, key: str, vocab) -> int:
        row = self._rows.get(key)
        if row is not None:
            return int(self.histories_.customers[row])
        return int(vocab.customer_index(key))

    def recommend_for(
        self, customer: str | pd.DataFrame, k: int = 10, exclude_seen: bool = False
    ) -> pd.DataFrame:
        """Top-k for a known customer id or a raw-id history (canonical columns)."""
        if isinstance(customer, pd.DataFrame):
            hist, _ = encode_histories(self.vocab_, customer, self.session_gap_minutes)
        else:
            hist = self.history_of(customer)
        ids, scores = self.recommend(hist, k=k, exclude_seen=exclude_seen)
        return pd.DataFrame({"item_id": self.vocab_.item_ids[ids[0]], "score": scores[0]})

    def append_events(
        self,
        customer_id: str,
        new_events: pd.DataFrame,
        dropped: dict[str, int] | None = None,
    ) -> Sequences:
        """Append events to a customer's stored history (new customers start empty).

        Only the last `max(history_len, max_len)` events are kept. Returns the history.
        Events that cannot be used (an item or action the model does not know, no usable
        time) are added up by reason in `dropped` when it is given.
        """
        self._check_fitted()
        key, rows = str(customer_id), self._rows  # `_rows` also sets up the live state
        old = self._live.get(key)
        if old is None and key in rows:
            old = self.histories_.select(np.array([rows[key]]))
        last = float(old.timestamps[-1]) if old is not None and old.n_events else None
        # A list, not the frame's index: on a fresh frame `in df.columns` costs tens of us.
        if "customer_id" in new_events.columns.tolist():  # (a `drop` finding nothing: 0.5 ms)
            new_events = new_events.drop(columns="customer_id")
        new, why = encode_histories(self.vocab_, new_events, self.session_gap_minutes, after=last)
        if dropped is not None:
            for reason, n in why.items():
                dropped[reason] = dropped.get(reason, 0) + n
        gap_s = self.session_gap_minutes * 60.0 if self.vocab_.has_time else 0.0
        merged = new if old is None else _concat_one(old, new, gap_s)
        limit = max(self.history_len, self.max_len)
        if merged.n_events > limit:
            merged = merged.suffix(limit, restart=True)
        self._live[key] = merged
        return merged

    def update(
        self, customer_id: str, new_events: pd.DataFrame, k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """Append events to a customer's history; return (profile, top-k item ids)."""
        self.append_events(customer_id, new_events)
        return self.refresh(customer_id, k)

    def refresh(
        self, customer_id: str, k: int = 10, with_scores: bool = False, with_journey: bool = False
    ) -> tuple[np.ndarray, ...]:
        """(profile, top-k item ids[, their scores][, journey traits]) of a customer's current
        history, from one encoder pass."""
        hist = self.history_of(customer_id)
        # One short sequence: a single thread is several times faster than a thread pool.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            journey: list = []
            # inference_mode skips autograd's version counting (~5% of a short update).
            with torch.inference_mode():
                h, h_terms = self._encode_last(hist, journey=journey if with_journey else None)
                best, top = self.net_.top_k(h, h_terms, k)
                profile = self.net_.traits(h).cpu().numpy()[0] if self.bottleneck else np.zeros(0)
        finally:
            torch.set_num_threads(threads)
        top = top.cpu().numpy()
        out = (profile, top) + ((best.cpu().numpy(),) if with_scores else ())
        return out + ((journey[0][0],) if with_journey else ())

    def action_weights(self) -> dict[str, dict[str, float]]:
        """Learned importance of each action type: input gate and history-term weight."""
        self._check_fitted()
        gate = self.net_.action_gate.detach().cpu().numpy()
        hist = self.net_.history_action.detach().cpu().numpy()[self.score_task_]
        return {
            name: {"input_gate": float(gate[i]), "history_weight": float(hist[i])}
            for i, name in enumerate(self.vocab_.action_names)
        }

    @property
    def _rows(self) -> dict[str, int]:
        if getattr(self, "_row_index", None) is None:
            cids = self.histories_.customers
            self._row_index = {
                str(self.vocab_.customer_ids[c]): r for r, c in enumerate(cids) if c >= 0
            }
            self._live: dict[str, Sequences] = {}
        return self._row_index

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Weights (safetensors), config (JSON) and the histories with id maps; no pickle."""
        from safetensors.torch import save_file

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
        state["log_q"] = self.log_q_.cpu()
        atomic_write(directory / "model.safetensors", lambda p: save_file(state, p))
        meta = {
            "params": {n: getattr(self, n) for n in _FUNNEL_PARAMS},
            "class": type(self).__name__,
            "net": self.net_.cfg.to_dict(),
            "target_actions": list(self.target_actions_),
            "conversion": self.conversion_,
            "score_task": self.score_task_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
        }
        atomic_write(
            directory / "model.json",
            lambda p: Path(p).write_text(json.dumps(meta, indent=2, default=list)),
        )
        self._merged_histories().save(directory / "histories")

    @classmethod
    def load(cls, directory: str | Path) -> FunnelModel:
        """Rebuild a model saved with `save`. Reads safetensors and JSON only."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        try:
            meta = json.loads((directory / "model.json").read_text())
            state = load_file(str(directory / "model.safetensors"))
        except (OSError, ValueError, SafetensorError) as exc:
            raise FunnelrecError(f"cannot load a model from {directory}: {exc}") from exc
        params = meta["params"]
        params["drop_actions"] = tuple(params.get("drop_actions", ()))
        # Rebuild the class that was saved (SASRec / GRU4Rec are FunnelModel with switches),
        # with every FunnelModel parameter as saved.
        klass = {"SASRec": SASRec, "GRU4Rec": GRU4Rec}.get(meta.get("class", ""), FunnelModel)
        model = FunnelModel.__new__(klass)
        FunnelModel.__init__(model, **params)
        model.log_q_ = state.pop("log_q")
        model.net_ = FunnelNet(FunnelNetConfig(**meta["net"]))
        # Models saved before the covisit term: it is off (empty counts, weight 0).
        fresh = model.net_.state_dict()
        state = {**{k: v for k, v in fresh.items() if k.startswith("co_")}, **state}
        try:
            model.net_.load_state_dict(state)
        except RuntimeError as exc:  # weights that do not fit the saved configuration
            raise FunnelrecError(f"cannot load a model from {directory}: {exc}") from exc
        model.net_.eval()
        model.histories_ = Sequences.load(directory / "histories")
        model.vocab_ = model.histories_.vocab
        model.n_items_ = model.vocab_.n_items
        model.target_actions_ = tuple(meta["target_actions"])
        model.conversion_ = meta["conversion"]
        model.score_task_ = meta.get("score_task", 1 if model.conversion_ else 0)
        model.best_epoch_, model.history_ = meta["best_epoch"], meta["history"]
        return model


def _tail(b: Batch, n: int) -> Batch:
    """The last `n` columns of a left-padded batch (all of it if narrower)."""
    if b.items.shape[1] <= n:
        return b
    return Batch(b.items[:, -n:], b.actions[:, -n:], b.gaps[:, -n:], b.starts[:, -n:])


def _concat_one(a: Sequences, b: Sequences, session_gap_s: float) -> Sequences:
    """One history followed by another (both single rows); sessions continue across."""
    gaps = b.gaps.copy()
    if a.n_events and b.n_events:
        gaps[0] = max(float(b.timestamps[0] - a.timestamps[-1]), 0.0)
    new_session = len(gaps) > 0 and gaps[0] > session_gap_s
    sessions = b.sessions + (a.sessions[-1] + int(new_session) if a.n_events else 0)
    return Sequences(
        offsets=np.array([0, a.n_events + b.n_events]),
        customers=a.customers[:1],
        items=np.concatenate([a.items, b.items]),
        actions=np.concatenate([a.actions, b.actions]),
        timestamps=np.concatenate([a.timestamps, b.timestamps]),
        gaps=np.concatenate([a.gaps, gaps]),
        sessions=np.concatenate([a.sessions, sessions]),
        vocab=a.vocab,
        target_actions=a.target_actions,
    )


_FUNNEL_PARAMS = [n for n in inspect.signature(FunnelModel.__init__).parameters if n != "self"]


class SASRec(FunnelModel):
    """Item-only SASRec (Kang & McAuley 2018) trained with full cross-entropy.

    The funnel network with actions, time gaps, metadata, traits and the history term all
    switched off: a causal transformer over item ids with a dot-product head.
    """

    name = "sasrec"

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 2e-3,
        patience: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
            max_len=max_len,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            seed=seed,
            item_init="random",  # as published
            use_actions=False,
            use_gaps=False,
            use_metadata=False,
            bottleneck=False,
            history=False,
            neighbours=False,
        )


class GRU4Rec(FunnelModel):
    """Item-only GRU4Rec-style recurrent model, trained with full cross-entropy."""

    name = "gru4rec"

    def __init__(
        self,
        d_model: int = 64,
        dropout: float = 0.2,
        max_len: int = 50,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 2e-3,
        patience: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(
            d_model=d_model,
            dropout=dropout,
            max_len=max_len,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            seed=seed,
            item_init="random",  # as published
            encoder="gru",
            use_actions=False,
            use_gaps=False,
            use_metadata=False,
            bottleneck=False,
            history=False,
            neighbours=False,
        )


def _behaviour_labels(w: Sequences, nxt: np.ndarray, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next event's action and gap bucket per input position (laid out like the batch).

    Defined wherever a next-item label is (nxt > 0); 0 elsewhere and unused there.
    """
    has_next = nxt > 0
    act = np.zeros(w.n_events, dtype=np.int64)
    gap = np.zeros(w.n_events, dtype=np.int64)
    following = np.flatnonzero(has_next) + 1
    act[has_next] = w.actions[following]
    gap[has_next] = gap_bucket(w.gaps[following], np.zeros(len(following), dtype=bool))
    return _pad_labels(w, act, T), _pad_labels(w, gap, T)


def _pad_labels(w: Sequences, labels: np.ndarray, T: int) -> torch.Tensor:
    """Per-event labels laid out like `pad_histories(w, T)` (left padding)."""
    out = np.zeros((len(w), T), dtype=np.int64)
    rows = w.row_of_events()
    from_end = w.offsets[rows + 1] - 1 - np.arange(w.n_events)
    keep = from_end < T
    out[rows[keep], T - 1 - from_end[keep]] = labels[keep]
    return torch.from_numpy(out)


def _length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of similar length (little padding), in random order."""
    order = np.argsort(lengths + rng.random(len(lengths)), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _offdiag_corr(t: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal correlation between traits across a batch."""
    if t.shape[0] < 3:
        return torch.zeros(())
    z = (t - t.mean(0)) / (t.std(0) + 1e-4)
    c = (z.T @ z) / (t.shape[0] - 1)
    k = c.shape[0]
    return ((c - torch.diag(torch.diag(c))) ** 2).sum() / (k * (k - 1))


@torch.no_grad()
def _svd_init(
    net: FunnelNet, train: Sequences, readout: bool = False
) -> tuple[torch.Tensor, np.ndarray] | tuple[None, None]:
    """Start item vectors (and trait k's loadings) from a truncated SVD of log-counts.

    Why: with random starts every seed mixes the same trait subspace into different axes;
    data-given starting axes are the same for every seed. Returns the (n_items, k)
    reference loadings and the (n_items, <= k) components the traits start on (None, None
    when the data are too small for a decomposition).
    """
    from sklearn.decomposition import TruncatedSVD

    n_items, d, k = net.cfg.n_items, net.cfg.d_model, net.cfg.n_traits
    m = count_matrix(train).astype(np.float64)
    m.data = np.log1p(m.data)
    c = min(d, min(m.shape) - 1)
    if c < 1:
        return None, None
    svd = TruncatedSVD(c, algorithm="randomized", n_iter=7, random_state=0).fit(m)
    # Unit-norm components, not scaled by their singular values: every trait starts with
    # loadings of the same size, so none is too weak to be pinned down by the data.
    vecs = svd.components_.T.copy()  # (n_items, c)
    vecs = vecs / max(float(vecs.std()), 1e-12) * 0.02  # the scale of the random start
    vecs = torch.from_numpy(vecs).float()
    net.item_emb.weight[1:, :c] = vecs
    ref = torch.zeros(n_items, k)
    if net.cfg.bottleneck:
        w = torch.zeros(k, d)
        kk = min(k, c)
        w[torch.arange(kk), torch.arange(kk)] = 1.0
        net.to_loadings.weight.copy_(w)
        if readout:
            # The other side of the bottleneck too (`trait_readout="svd"`): trait k starts
            # as the customer's position on component k. With a random read-out each seed
            # starts every trait on another mix of components and stops (after a few
            # epochs on small data) before the mixes agree. Traits beyond the components
            # (tiny data) keep their random read-out: zero rows on both sides would stay
            # equal to each other for good.
            net.to_traits.weight[:kk].copy_(w[:kk])
        ref[:, :kk] = vecs[:, :kk]
    return ref, svd.components_[: min(k, c)].T.astype(np.float32)  # (n_items, <= k)


def _prefix_projections(
    train: Sequences, src: np.ndarray, comps: np.ndarray, k: int
) -> torch.Tensor:
    """(window events, k): each window event's history so far projected on the components.

    `src` is each window event's index in `train`. The projection of log(1 + counts) grows
    by (log(n + 1) - log(n)) x component row each time an item is seen for the n-th time,
    so it is a running sum over a customer's events, restarted per customer.
    """
    rows = train.row_of_events()
    key = rows.astype(np.int64) * (train.n_items + 1) + train.items
    order = np.lexsort((np.arange(train.n_events), key))
    sk = key[order]
    new = np.ones(len(sk), bool)
    new[1:] = sk[1:] != sk[:-1]
    run_start = np.maximum.accumulate(np.where(new, np.arange(len(sk)), 0))
    nth = np.empty(train.n_events, np.int64)  # 1 for an item's first event, 2 for its second...
    nth[order] = np.arange(len(sk)) - run_start + 1
    step = np.log1p(nth) - np.log1p(nth - 1)
    c = comps.shape[1]
    run = np.cumsum(step[:, None] * comps[train.items], axis=0)
    firsts = train.offsets[:-1]
    base = np.where((firsts > 0)[:, None], run[np.maximum(firsts - 1, 0)], 0.0)
    run -= np.repeat(base, train.lengths, axis=0)  # running sums restart per customer
    proj = np.zeros((len(src), k), dtype=np.float32)
    proj[:, :c] = run[src]
    return torch.from_numpy(proj)


@torch.no_grad()
def _swap_in(params: list[torch.Tensor], values: list[torch.Tensor] | None):
    """Copy `values` into `params`; returns the values they held (None if nothing to do)."""
    if values is None:
        return None
    held = [p.detach().clone() for p in params]
    for p, v in zip(params, values, strict=True):
        p.copy_(v)
    return held


def _column_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each column of `a` with the same column of `b`."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    # Clamped before the root: a constant column (zero variance) would give sqrt(0), whose
    # infinite gradient turns the whole step into NaN.
    den = (a.pow(2).sum(0) * b.pow(2).sum(0)).clamp(min=1e-16).sqrt()
    return (a * b).sum(0) / den
