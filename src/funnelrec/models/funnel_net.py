"""The funnel network, in one file: event tokens -> causal encoder -> k traits -> item scores.

    token_t = gate[action_t] * item_vec(item_t) + action_emb + gap_emb + session_emb + pos_emb
    h_t     = causal encoder(token_1..t)                         # transformer (or GRU)
    traits  = sigmoid(W_trait h_t)                               # (k,) in [0, 1]: the profile
    score_j = bias_j + sum_k scale * traits_k * load_jk          # per-trait contributions
    next action, next gap ~ softmax(W traits)                    # behaviour heads (training)
            + sum_{(item j, action a) in history} w[a] * r[age] + c[a] * log1p(count)   # repeat
            + sum_{events e} v[a_e] * s[age_e] * (P item_vec(e)) . item_vec(j)          # neighbour
                                       (its summed history vector gets dropout in training)
            + alpha * sum_{events e} v[a_e] * s[age_e] * C[item(e), j]                # covisit
                   (C: how often j followed item(e) in training journeys, log-scaled, sparse;
                    alpha is chosen on validation after training, 0 while training)

Every part is a sum of readable pieces: one per trait, one per history event. The covisit
term is the full-rank, count-based twin of the neighbour term: it holds rare items' followers,
which a d_model-dimensional product cannot. `item_vec` adds category, brand and price-band
embeddings (and the mean of its tags' embeddings, where items have tags) to the item's own
vector, so items with few events still land near similar items.
`gate`, `w`, `r`, `c`, `v` and `s` are learned (per task: next event or next conversion);
nothing about how much an action matters is typed in. With `bottleneck=False` the trait part
is replaced by a plain dot product h_t . item_vec_j (the SASRec head): the ablation that
measures what the traits cost.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from funnelrec.models.chunked_ce import score_cross_entropy

N_GAP_BUCKETS = 26  # 0 = first event / padding; then log2 buckets of seconds (~1 year max)
N_AGE_BUCKETS = 8  # history age in events: 0, 1, 2, 3, 4-7, 8-15, 16-31, 32+


@dataclass
class FunnelNetConfig:
    """Architecture. Saved beside the weights so a checkpoint rebuilds itself."""

    n_items: int
    n_actions: int
    n_categories: int = 0
    n_brands: int = 0
    n_price_bands: int = 0
    n_tags: int = 0  # item tags (several per item), 0 = none
    max_tags: int = 0  # most tags of one item
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    n_traits: int = 16
    encoder: str = "transformer"  # or "gru"
    use_actions: bool = True
    use_gaps: bool = True
    use_metadata: bool = True
    bottleneck: bool = True
    history: bool = True
    neighbours: bool = True
    neighbour_dropout: float = 0.0
    behaviour_heads: bool = False  # traits also predict the next action and time gap

    def to_dict(self) -> dict:
        return asdict(self)


class FunnelNet(nn.Module):
    def __init__(self, cfg: FunnelNetConfig) -> None:
        super().__init__()
        self._item_cache: tuple[torch.Tensor, ...] | None = None
        self._basis_cache: tuple | None = None  # (rank, basis, low, rest, rest norms)
        self.cfg = cfg
        d = cfg.d_model
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)  # 0 = padding
        self.cat_emb = nn.Embedding(cfg.n_categories + 1, d, padding_idx=0)
        self.brand_emb = nn.Embedding(cfg.n_brands + 1, d, padding_idx=0)
        self.price_emb = nn.Embedding(cfg.n_price_bands + 1, d, padding_idx=0)
        if cfg.n_tags:
            self.tag_emb = nn.Embedding(cfg.n_tags + 1, d, padding_idx=0)
        self.action_emb = nn.Embedding(cfg.n_actions, d)
        self.action_gate = nn.Parameter(torch.ones(cfg.n_actions))  # learned, signed
        self.gap_emb = nn.Embedding(N_GAP_BUCKETS, d)
        self.session_emb = nn.Embedding(2, d)  # 1 = first event of a session
        self.pos_emb = nn.Embedding(cfg.max_len + 1, d)  # training windows hold max_len + 1
        self.drop = Dropout(cfg.dropout)
        self.norm_in = nn.LayerNorm(d)
        if cfg.encoder == "gru":
            self.encoder: nn.Module = nn.GRU(d, d, num_layers=1, batch_first=True)
        else:
            layer = nn.TransformerEncoderLayer(
                d,
                cfg.n_heads,
                dim_feedforward=4 * d,
                dropout=cfg.dropout,
                batch_first=True,
                norm_first=True,
                activation="gelu",
            )
            for name in ("dropout", "dropout1", "dropout2"):  # same masks, drawn cheaper
                # (a renamed attribute in a later torch would otherwise be replaced by nothing)
                assert isinstance(getattr(layer, name), nn.Dropout), name
                setattr(layer, name, Dropout(cfg.dropout))
            self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(d)
        if cfg.bottleneck:
            self.to_traits = nn.Linear(d, cfg.n_traits)
            self.to_loadings = nn.Linear(d, cfg.n_traits, bias=False)
            if cfg.behaviour_heads:
                # Read from the traits alone, so that how a customer shops (hesitates,
                # acts fast, abandons carts) must be carried by the profile too.
                self.to_next_action = nn.Linear(cfg.n_traits, cfg.n_actions)
                self.to_next_gap = nn.Linear(cfg.n_traits, N_GAP_BUCKETS)
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        # Task 0 = next event, task 1 = next conversion (first target item of a later session).
        self.task_emb = nn.Embedding(2, d)
        # History term per task: signed weight per action type, positive weight per age bucket.
        # Every action starts equal (weight 1): the data, not us, decides which count more.
        self.history_action = nn.Parameter(torch.ones(2, cfg.n_actions))
        self.history_count = nn.Parameter(torch.zeros(2, cfg.n_actions))
        # Neighbour term: each history event votes for items similar to its own item.
        self.neigh_proj = nn.Linear(d, d, bias=False)
        self.neigh_action = nn.Parameter(torch.ones(2, cfg.n_actions))
        self.neigh_age = nn.Parameter(torch.linspace(1.0, -2.0, N_AGE_BUCKETS).repeat(2, 1))
        self.history_age = nn.Parameter(torch.linspace(1.0, -2.0, N_AGE_BUCKETS).repeat(2, 1))
        # Covisit counts as CSR rows (item -> following items) and their weight, set after
        # training by `set_covisit` (empty and 0 until then).
        self.register_buffer("co_ptr", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.register_buffer("co_idx", torch.zeros(0, dtype=torch.long))
        self.register_buffer("co_val", torch.zeros(0))
        self.register_buffer("co_scale", torch.zeros(()))
        self.register_buffer("item_cat", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.register_buffer("item_brand", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.register_buffer("item_price", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        if cfg.n_tags:  # (items + 1, max_tags) 1-based tag ids, 0 = none
            self.register_buffer(
                "item_tags", torch.zeros(cfg.n_items + 1, cfg.max_tags, dtype=torch.long)
            )
        self.apply(self._init)
        if cfg.bottleneck:
            # States are layer-normed (unit scale): 1/sqrt(d) spreads traits over (0, 1)
            # from the start instead of all sitting at 0.5 with vanishing gradients, and
            # gives loadings a scale that is not the product of two tiny initialisations.
            nn.init.normal_(self.to_traits.weight, std=d**-0.5)
            nn.init.normal_(self.to_loadings.weight, std=d**-0.5)
        # A learned temperature: traits live in [0, 1], so scores need room to grow.
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def set_item_metadata(
        self,
        cat: torch.Tensor,
        brand: torch.Tensor,
        price: torch.Tensor,
        tags: torch.Tensor | None = None,
    ) -> None:
        """Per-item codes, 1-based (0 = unknown), aligned with item ids (shifted by one);
        `tags` (n_items, max_tags), 0 = no tag."""
        pad = torch.zeros(1, dtype=torch.long)
        self.item_cat.copy_(torch.cat([pad, cat.long()]))
        self.item_brand.copy_(torch.cat([pad, brand.long()]))
        self.item_price.copy_(torch.cat([pad, price.long()]))
        if tags is not None and self.cfg.n_tags:
            self.item_tags.copy_(torch.cat([pad.new_zeros(1, tags.shape[1]), tags.long()]))
        self._drop_caches()  # item vectors read the codes

    def set_covisit(self, ptr: torch.Tensor, idx: torch.Tensor, val: torch.Tensor) -> None:
        """Item-to-following-item counts in CSR form (0-based items), see `covisit`."""
        dev = self.co_ptr.device
        self.co_ptr, self.co_idx = ptr.long().to(dev), idx.long().to(dev)
        self.co_val = val.float().to(dev)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The covisit rows' length is known only from the checkpoint.
        for name in ("co_idx", "co_val"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def covisit(
        self, idx: torch.Tensor, nw: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, T) history items (0-based) and event weights -> (N, n_items) sum over events
        of weight x C[item, j], without the scale: one sparse row per event.

        With `out` (N, n_items), the scaled sum is added to it in place instead (scoring:
        no second pass over the whole catalogue)."""
        scaled = out is not None
        one = idx.shape[0] == 1 and out is not None and out.device.type == "cpu"
        if one and not (out.requires_grad or nw.requires_grad):
            self._covisit_one(idx[0], nw[0], out[0])
            return out
        if out is None:
            out = torch.zeros(idx.shape[0], self.cfg.n_items, device=idx.device)
        r, t = torch.nonzero(nw != 0, as_tuple=True)
        if len(r) == 0 or len(self.co_idx) == 0:
            return out
        items, w = idx[r, t], nw[r, t]
        start = self.co_ptr[items]
        cnt = self.co_ptr[items + 1] - start
        ev = torch.repeat_interleave(torch.arange(len(items), device=idx.device), cnt)
        first = torch.repeat_interleave(cnt.cumsum(0) - cnt, cnt)
        pos = start[ev] + torch.arange(len(ev), device=idx.device) - first
        val = w[ev] * self.co_val[pos]
        if scaled:
            val = self.co_scale * val
        out.index_put_((r[ev], self.co_idx[pos]), val, accumulate=True)
        return out

    def _covisit_one(self, idx: torch.Tensor, nw: torch.Tensor, out: torch.Tensor) -> None:
        """`covisit(..., out=)` for one history on a CPU, in numpy: the same sum, a few
        microseconds per step instead of tens (a live update scores one history)."""
        keep = np.flatnonzero(nw.numpy())
        if len(keep) == 0 or len(self.co_idx) == 0:
            return
        items, w = idx.numpy()[keep], nw.numpy()[keep]
        ptr = self.co_ptr.numpy()
        start, cnt = ptr[items], ptr[items + 1] - ptr[items]
        first = np.repeat(np.cumsum(cnt) - cnt - start, cnt)
        pos = np.arange(int(cnt.sum())) - first
        val = np.repeat(w, cnt) * self.co_val.numpy()[pos] * float(self.co_scale)
        np.add.at(out.numpy(), self.co_idx.numpy()[pos], val.astype(np.float32, copy=False))

    def item_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Item representations (…, d); `ids` are 1-based (0 = padding). None = all items."""
        if ids is None:
            ids = torch.arange(1, self.cfg.n_items + 1, device=self.item_bias.device)
        v = self.item_emb(ids)
        if self.cfg.use_metadata:
            v = (
                v
                + self.cat_emb(self.item_cat[ids])
                + self.brand_emb(self.item_brand[ids])
                + self.price_emb(self.item_price[ids])
            )
            if self.cfg.n_tags:  # the mean of the item's tag vectors (none: 0)
                t = self.item_tags[ids].reshape(-1, self.cfg.max_tags)
                bag = F.embedding_bag(t, self.tag_emb.weight, mode="mean", padding_idx=0)
                v = v + bag.view_as(v)
        return v

    def encode(
        self,
        items: torch.Tensor,
        actions: torch.Tensor,
        gaps: torch.Tensor,
        starts: torch.Tensor,
        last_only: bool = False,
    ) -> torch.Tensor:
        """(B, T) event fields -> (B, T, d) causal states. Left-padded with item 0.

        `last_only`: the caller reads the last position only (`[:, -1]`); at inference the
        transformer then runs its top layer for that position alone and returns (B, 1, d).
        """
        T = items.shape[1]
        pad = items == 0
        frozen = self._frozen()
        if frozen and self._item_cache is not None:  # cached by scoring: one lookup
            x = F.embedding((items - 1).clamp(min=0), self._item_cache[0])  # (padding: below)
        else:
            x = self.item_vectors(items)  # (B, T, d)
        if self.cfg.use_actions:
            x = x * self.action_gate[actions].unsqueeze(-1) + self.action_emb(actions)
        if self.cfg.use_gaps:
            x = x + self.gap_emb(gaps) + self.session_emb(starts)
        # Positions count from each history's first (kept) event: causal, and the same for an
        # event whatever the padding of its batch.
        n_pad = pad.sum(1, keepdim=True)
        pos = (torch.arange(T, device=items.device).unsqueeze(0) - n_pad).clamp(min=0)
        x = self.drop(self.norm_in(x + self.pos_emb(pos.clamp(max=self.cfg.max_len))))
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        if self.cfg.encoder == "gru":
            h = self._gru(x, n_pad.squeeze(1))
        else:
            # One explicit mask (True = blocked): causal, and no attention to padding keys.
            # A padding query may see itself, so no row is fully blocked (no NaN). Passing
            # a key-padding mask instead lets PyTorch's inference fast path treat rows
            # differently in batches than alone.
            if frozen and not bool(pad.any()):  # no padding (a live update): plain causal
                return self.norm_out(self._transformer_frozen(x, None, last_only))
            T_ = torch.arange(T, device=items.device)
            causal = T_[None, :] > T_[:, None]  # (T, T)
            blocked = causal[None] | pad[:, None, :]  # (B, T, T)
            blocked = blocked & ~torch.eye(T, dtype=torch.bool, device=items.device)[None]
            if frozen:
                h = self._transformer_frozen(x, ~blocked, last_only)
            else:
                mask = blocked.repeat_interleave(self.cfg.n_heads, dim=0)  # (B * heads, T, T)
                h = self.encoder(x, mask=mask)
        return self.norm_out(h)

    def _transformer_frozen(
        self, x: torch.Tensor, allowed: torch.Tensor | None, last_only: bool = False
    ) -> torch.Tensor:
        """The encoder layers' inference computation written out on their own weights:
        pre-norm self-attention, then a GELU feed-forward, each added to its input.

        The same states as `self.encoder` to float rounding (tested). PyTorch's layer
        checks some twenty conditions per call before its fused path, which on one short
        history costs more than the two layers themselves (a live update: 0.53 -> 0.39 ms).
        With `last_only` the top layer computes the last position alone: every position
        is a key there, only the last a query (B, 1, d). `allowed` None: no padding, so
        the mask is the causal one (no mask tensor to build).
        """
        B, T, d = x.shape
        H = self.cfg.n_heads
        if allowed is not None:
            allowed = allowed.unsqueeze(1)  # (B, 1, T, T): the same for every head
        layers = self.encoder.layers
        for i, layer in enumerate(layers):
            att, n1, n2 = layer.self_attn, layer.norm1, layer.norm2
            y = F.layer_norm(x, (d,), n1.weight, n1.bias, n1.eps)
            qkv = F.linear(y, att.in_proj_weight, att.in_proj_bias).view(B, T, 3, H, d // H)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, d / H)
            causal = allowed is None
            if last_only and i == len(layers) - 1:
                q, x = q[:, :, -1:], x[:, -1:]
                # The last query sees every key: causal or not, nothing is masked.
                allowed, causal = None if causal else allowed[:, :, -1:], False
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=causal)
            x = x + att.out_proj(a.transpose(1, 2).reshape(B, q.shape[2], d))
            y = F.layer_norm(x, (d,), n2.weight, n2.bias, n2.eps)
            x = x + layer.linear2(layer.activation(layer.linear1(y)))
        return x

    def _gru(self, x: torch.Tensor, n_pad: torch.Tensor) -> torch.Tensor:
        """Run the GRU on real events only: shift them to the front, pack, shift back."""
        T = x.shape[1]
        t = torch.arange(T, device=x.device)[None, :]
        front = ((t + n_pad[:, None]) % T).unsqueeze(-1).expand_as(x)
        lengths = (T - n_pad).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            x.gather(1, front), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        back = ((t - n_pad[:, None]) % T).unsqueeze(-1).expand_as(out)
        return out.gather(1, back)

    def traits(self, h: torch.Tensor) -> torch.Tensor:
        """(…, d) states -> (…, k) traits in [0, 1]."""
        return torch.sigmoid(self.to_traits(h))

    def behaviour_logits(self, traits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(…, k) traits -> logits of the next event's action and its time-gap bucket."""
        return self.to_next_action(traits), self.to_next_gap(traits)

    def loadings(self) -> torch.Tensor:
        """(n_items, k) how much each trait raises each item's score."""
        return self._all_items()[1]

    def _frozen(self) -> bool:
        """Inference: eval mode, no gradients (the item cache and `_transformer_frozen`)."""
        return not self.training and not torch.is_grad_enabled()

    def _all_items(self) -> tuple[torch.Tensor, ...]:
        """Every item's vector, trait loadings, neighbour projection P v and the right-hand
        side of the scoring product ([loadings, v]^T, see `score`); absent parts are None.

        Recomputing them costs O(items x d) per call, which would dominate scoring one
        customer; they are cached while the network is frozen (eval mode, no gradients).
        """
        frozen = self._frozen()
        if frozen and self._item_cache is not None:
            return self._item_cache
        vecs = self.item_vectors()
        load = self.to_loadings(vecs) if self.cfg.bottleneck else None
        proj = self.neigh_proj(vecs) if self.cfg.neighbours else None
        right = self._right(vecs, load).T
        if frozen:
            # Stored (parts x items): a row vector times it reads memory in order, ~1.5x
            # faster than through the transposed view on a big catalogue.
            self._item_cache = (vecs, load, proj, right.contiguous())
            return self._item_cache
        return vecs, load, proj, right

    def _right(self, vecs: torch.Tensor, load: torch.Tensor | None) -> torch.Tensor:
        parts = [load if self.cfg.bottleneck else vecs] + ([vecs] if self.cfg.neighbours else [])
        return torch.cat(parts, 1)

    # Anything that changes weights, mode or device drops the caches.
    def _drop_caches(self) -> None:
        self._item_cache = self._basis_cache = None

    def train(self, mode: bool = True) -> FunnelNet:
        self._drop_caches()
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._drop_caches()
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, *args, **kwargs):
        self._drop_caches()
        return super()._apply(*args, **kwargs)

    def for_task(self, h: torch.Tensor, task: int) -> torch.Tensor:
        """States specialised for a task (0 = next event, 1 = next conversion)."""
        return h + self.task_emb.weight[task]

    def _same_pair(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, T) events -> (B, T, T): events s and t are real and of the same (item, action)."""
        key = items * self.cfg.n_actions + actions
        real = items > 0
        return (key[:, :, None] == key[:, None, :]) & real[:, None, :] & real[:, :, None]

    def repeats(self, items: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T) events -> per event, the position of the next event of the same (item,
        action) pair (T if none) and how many such events there are up to it (itself
        included). Computed once per training window; every prefix reads it (see
        `history_weights`)."""
        if not self.cfg.use_actions:
            actions = torch.zeros_like(actions)
        T = items.shape[1]
        same = self._same_pair(items, actions)
        pos = torch.arange(T, device=items.device)
        later = same & (pos[None, None, :] > pos[None, :, None])
        nxt = torch.where(later, pos[None, None, :], T).amin(-1)
        occ = (same & (pos[None, None, :] <= pos[None, :, None])).sum(-1)
        return nxt, occ

    def history_weights(
        self,
        items: torch.Tensor,
        actions: torch.Tensor,
        ages: torch.Tensor,
        task: int = 0,
        repeats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, T) history events -> (0-based items, repeat weights, neighbour weights).

        Weights are 0 at padding.

        Each event adds w[action] * softplus(r[age]) to its item's score, so the term for an
        item is the sum over its events in the history: action type x recency x count.
        `repeats` = (next same event, count, last visible position), from `repeats` of
        the window the rows are prefixes of; by default computed here for whole rows.
        """
        if not self.cfg.use_actions:  # ablation: every event is the same kind of event
            actions = torch.zeros_like(actions)
        real = items > 0
        # Per (item, action) pair: the recency of its latest event plus a saturating count,
        # so ten views do not simply outweigh one purchase ten times over.
        if repeats is None:  # whole rows: a latest event has no later twin in its row
            same = self._same_pair(items, actions)
            pos = torch.arange(items.shape[1], device=items.device)
            latest = ~(same & (pos[None, None, :] > pos[None, :, None])).any(-1)
            count = same.sum(-1).clamp(min=1).float()
        else:
            nxt, occ, upto = repeats
            latest = nxt > upto[:, None]
            count = occ.clamp(min=1).float()
        recency = self.history_action[task][actions] * F.softplus(self.history_age[task][ages])
        counted = self.history_count[task][actions] * torch.log1p(count)
        w = torch.where(latest & real, recency + counted, torch.zeros_like(recency))
        nw = self.neigh_action[task][actions] * F.softplus(self.neigh_age[task][ages])
        nw = nw.masked_fill(~real, 0.0)
        return (items - 1).clamp(min=0), w, nw

    def score(
        self,
        h: torch.Tensor,
        hist: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        cols: torch.Tensor | None = None,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, d) states (+ history events) -> (N, n_items) scores, or (N, C) for `cols`.

        `cols` (C,) restricts scoring to a few items (sampled softmax on big catalogues)
        without ever building the (N, n_items) matrix. `exclude` (n_items,) marks items
        scored -inf for everyone (through the bias: no pass over the (N, n_items) scores).
        """
        if cols is None:
            vecs, load, proj, right = self._all_items()
            bias, table = self._bias(exclude), proj
        else:
            vecs = self.item_vectors(cols + 1)
            load = self.to_loadings(vecs) if self.cfg.bottleneck else None
            right, bias = self._right(vecs, load).T, self.item_bias[cols]
            table = None  # projected from the history's own items in `_left`
        s = torch.addmm(bias, self._left(h, hist, table), right)
        if cols is None:
            self._add_sparse(s, hist)  # s is this call's own product
            return s
        if self.cfg.neighbours and hist is not None and float(self.co_scale) != 0.0:
            s = s + self.co_scale * self.covisit(hist[0], hist[2])[:, cols]
        if self.cfg.history and hist is not None:
            idx, w, _ = hist
            # Map history items onto the scored columns (first match), others dropped.
            where = torch.full((self.cfg.n_items,), -1, dtype=torch.long, device=s.device)
            where[cols.flip(0)] = torch.arange(len(cols) - 1, -1, -1, device=s.device)
            pos = where[idx]
            extra = torch.zeros(s.shape[0], len(cols) + 1, device=s.device)
            extra = extra.scatter_add(1, torch.where(pos >= 0, pos, len(cols)), w)
            s = s + extra[:, :-1]
        return s

    def top_k(
        self,
        h: torch.Tensor,
        hist: tuple | None,
        k: int,
        rank: int = 8,
        min_items: int = 16_384,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best items of one customer (values, 0-based items): the k best of
        `score(h, hist)[0]` (to float rounding; tied scores may come in another order),
        without reading all of the (parts x items) scoring matrix, whose size is what a
        live update waits for on a big catalogue (28 MB at 88k items).

        The product is taken in the basis of that matrix's principal directions (`_basis`):
        its first `rank` coordinates give a partial score, and the others can add at most
        |c_rest| x |z_rest(j)| to item j (Cauchy-Schwarz). Items whose bound is below the
        k-th best exact score among 2k candidates cannot be in the top k; the rest (about a
        hundred of 88k items on the latency benchmark) are scored exactly. Catalogues under
        `min_items`, batches, training, a GPU and bounds too loose to help take the full
        product.
        """
        n = self.cfg.n_items
        small = k < 1 or n < max(min_items, 4 * k)
        if h.shape[0] != 1 or small or not self._frozen() or h.device.type != "cpu":
            return block_top_k(self.score(h, hist)[0], k)
        _, _, proj, _ = self._all_items()
        basis, low, rest, rest_norm = self._basis(rank)
        c = self._left(h, hist, proj) @ basis  # (1, parts): coordinates in the basis
        part = torch.addmm(self.item_bias, c[:, :rank], low)  # all but the rest's share
        self._add_sparse(part, hist)
        part, c_rest = part[0], c[0, rank:]
        # A threshold: the k-th best exact score among the 2k best partial scores.
        first = block_top_k(part, 2 * k)[1]
        tau = float(torch.topk(part[first] + rest[first] @ c_rest, k).values[-1])
        if not math.isfinite(tau):  # fewer than k finite scores, or NaN
            return block_top_k(self.score(h, hist)[0], k)
        # An upper bound per item, widened a little for float rounding. (numpy finds the
        # few items above the threshold ~4x faster than torch.nonzero.)
        bound = torch.add(part, rest_norm, alpha=float(c_rest.norm()) * (1 + 1e-4))
        above = np.flatnonzero(bound.numpy() >= tau - 1e-4 * (1.0 + abs(tau)))
        if not k <= len(above) <= n // 8:  # a loose bound: finish the partial pass for all
            return block_top_k(part + rest @ c_rest, k)
        cand = torch.from_numpy(above)
        exact = part[cand] + rest[cand] @ c_rest
        best, pos = torch.topk(exact, k)
        return best, cand[pos]

    def _basis(self, rank: int) -> tuple[torch.Tensor, ...]:
        """Orthonormal basis of the scoring matrix's columns (parts x parts, principal
        directions first) and the matrix in it: its first `rank` rows (rank x items), the
        other rows per item (items x rest) and their norms. Cached like the item vectors."""
        cached = self._basis_cache  # read once: another thread may drop it meanwhile
        if cached is not None and cached[0] == rank:
            return cached[1:]
        right = self._all_items()[3]
        _, vecs = torch.linalg.eigh(right @ right.T)
        basis = vecs.flip(1).contiguous()  # orthonormal whatever the spectrum
        z = basis.T @ right
        rest = z[rank:].T.contiguous()
        parts = (basis, z[:rank].contiguous(), rest, rest.norm(dim=1))
        self._basis_cache = (rank, *parts)
        return parts

    def cross_entropy(
        self,
        h: torch.Tensor,
        hist: tuple | None,
        target: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean full-softmax cross-entropy of `score(h, hist, exclude=exclude)` at `target`.

        On a CPU, a block of rows at a time (`chunked_ce`: the (N, n_items) scores are never
        built whole); on a GPU, or with a covisit weight, through `score` in one piece.
        """
        if h.device.type != "cpu" or float(self.co_scale) != 0.0:
            return F.cross_entropy(self.score(h, hist, exclude=exclude), target)
        _, _, proj, right = self._all_items()
        left = self._left(h, hist, proj)
        idx, w = (hist[0], hist[1]) if hist is not None and self.cfg.history else (None, None)
        return score_cross_entropy(left, right, self._bias(exclude), target, idx, w)

    def _bias(self, exclude: torch.Tensor | None) -> torch.Tensor:
        """Item biases, -inf for the `exclude`d items (kept out of every ranking)."""
        if exclude is None:
            return self.item_bias
        return self.item_bias.masked_fill(exclude, float("-inf"))

    def _left(
        self, h: torch.Tensor, hist: tuple | None, table: torch.Tensor | None
    ) -> torch.Tensor:
        """The customer side of the scoring product: [scale * traits, u] (see `score`)."""
        # One matrix product for the trait part and the neighbour part:
        # [scale * traits, u] . [loadings, v]_j, with u = sum_s nw_s * P v(item_s).
        left = [self.logit_scale.exp() * self.traits(h) if self.cfg.bottleneck else h]
        if self.cfg.neighbours:
            if hist is None:
                u = h.new_zeros(h.shape[0], self.cfg.d_model)
            else:
                idx, _, nw = hist
                if table is None:  # project only the items in these histories
                    seen, rows = torch.unique(idx, return_inverse=True)
                    table = self.neigh_proj(self.item_vectors(seen + 1))
                else:
                    rows = idx
                # A weighted sum per history without building the (N, T, d) tensor.
                u = F.embedding_bag(rows, table, per_sample_weights=nw, mode="sum")
                # The encoder's dropout never reaches this linear item-to-item path, which
                # otherwise memorises training transitions within a few epochs.
                u = dropout(u, self.cfg.neighbour_dropout, self.training)
            left.append(u)
        return torch.cat(left, 1) if len(left) > 1 else left[0]

    def _add_sparse(self, s: torch.Tensor, hist: tuple | None) -> None:
        """Add the per-history-item terms (covisit, repeat) into all-item scores in place."""
        if hist is None:
            return
        if self.cfg.neighbours and float(self.co_scale) != 0.0:
            self.covisit(hist[0], hist[2], out=s)
        if self.cfg.history:
            s.scatter_add_(1, hist[0], hist[1])


class Dropout(nn.Module):
    """`nn.Dropout` whose CPU mask costs a third: see `dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on a CPU the mask is 16 random bits per element, compared with p.

    Why: torch's CPU `bernoulli_` draws a double per element, and on JD-sized data the
    encoder's dropout masks took 10% of a training step; one 64-bit draw for four elements
    is several times cheaper. The drop probability is p rounded to 1/65536.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    bits = bits.view(torch.int16)[:n].view(x.shape)
    mask = (bits >= round(p * 65536) - 32768).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * mask  # (a float mask: multiplying by a bool one, or `where`, is ~10x slower)


def block_top_k(
    scores: torch.Tensor, k: int, width: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of one score vector (values, positions): `torch.topk`'s values (tied
    scores may come in another order).

    The k best lie in the k blocks (of `width` scores) with the highest maxima: an item
    outside them is below k block maxima. So only those blocks (and the ragged tail) are
    ranked. On 88k items this is ~3x faster than `torch.topk` over all of them, which is
    ~4x faster than numpy's argpartition.
    """
    n = len(scores)
    n_blocks = n // width
    if n_blocks <= 2 * k:  # a small catalogue: ranking everything is as fast
        return torch.topk(scores, min(k, n))
    maxima = scores[: n_blocks * width].view(n_blocks, width).amax(1)
    blocks = torch.topk(maxima, k).indices
    cand = (blocks[:, None] * width + torch.arange(width, device=scores.device)).reshape(-1)
    cand = torch.cat([cand, torch.arange(n_blocks * width, n, device=scores.device)])
    best, pos = torch.topk(scores[cand], k)
    return best, cand[pos]
