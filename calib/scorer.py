"""Fast, exact loglikelihood scoring of lm-eval requests on in-memory Hugging Face causal LMs.

``FastLM`` (registered in lm-eval's model registry as ``calib-fast``) is lm-eval's ``HFLM`` with
one method replaced, ``_loglikelihood_tokens``. lm-eval still builds the requests, the few-shot
contexts, the tokenisation and the metrics; what changes is only how the model is run. Each
request's model input is HFLM's, ``(context + continuation)[-(max_length + 1):][:-1]``, and its
log-probabilities are read at HFLM's positions, so the scores agree up to float rounding.

Where HFLM spends its time, and what is done instead:

* every request runs its whole input, though inputs share long prefixes (a subject's few-shot
  block, an item's context for each of its choices, two Winogrande contexts up to the blank).
  Here the sorted unique inputs form a prefix tree; every token of the tree runs once and its
  keys/values are kept for each later input that extends it, across items as well as within one;
* the LM head and log-softmax run at every position; here only at the positions a request scores;
* rows of one forward pass have similar lengths (tree depth, then length), so little is padded;
* the bookkeeping is numpy over whole arrays, not Python per token.

``plan`` is the pure part (which tokens run in which pass, what is read where); ``FastLM`` runs a
plan. Models this does not cover (seq2seq, architectures outside ``calib.models.ARCHITECTURES``
such as OpenLM, and inputs past the point where a position-dependent RoPE (longrope, dynamic) changes
its frequencies) fall back to HFLM's own code, which is exact by definition.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from calib.models import ARCHITECTURES as FAST_MODEL_TYPES  # the one architecture list (calib.models)
from calib.models import rope_switch

MODEL_NAME = "calib-fast"
PASS_TOKENS = 1024  # new tokens per forward pass, padding included
KV_BUDGET_MB = 1024  # keys/values kept at once (pool + one batch's gathered past)
ENCODED_MAX = 200_000  # memoised encodings per process (a world evaluation has about 13,000)
_ENCODED: dict = {}  # (tokenizer key, string, add_special_tokens, left_truncate_len) -> token ids


# ---------------------------------------------------------------------------------- planning
@dataclass
class Plan:
    """The prefix tree of a list of requests, and the forward passes that run it.

    Inputs are the requests' unique model inputs in lexicographic order, so an input shares with
    all earlier inputs exactly what it shares with its predecessor (``shared[k]`` tokens). Every
    token of the tree is a node; input ``k`` runs its own tokens ``seqs[k][shared[k]:]`` (node ids
    ``own[k] ... own[k] + len - shared - 1``) on top of the kept keys/values of its first
    ``shared[k]`` nodes."""
    seqs: list[np.ndarray]          # unique model inputs, sorted
    shared: np.ndarray              # per input: leading tokens that are earlier nodes
    own: np.ndarray                 # per input: node id of its first own token
    paths: list[np.ndarray]         # per input: node id of every position
    n_nodes: int
    kept: np.ndarray                # per node: its keys/values are read by a later input
    slot: np.ndarray                # per node: row in the key/value pool (-1 if not kept)
    batches: list[np.ndarray]       # input indices run together, in order
    pool_size: int
    pair_node: np.ndarray           # per scored token: the node whose output predicts it
    pair_target: np.ndarray         # per scored token: the token id
    req_pairs: np.ndarray           # per request: offset of its scored tokens in pair_*
    req_len: np.ndarray             # per request: number of scored tokens
    stats: dict = field(default_factory=dict)


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    neq = np.flatnonzero(a[:n] != b[:n])
    return int(neq[0]) if len(neq) else n


def plan(requests: list[tuple[list[int], list[int]]], max_length: int, pass_tokens: int = PASS_TOKENS,
         past_tokens: int = 1 << 62, budget_tokens: int = 1 << 62, share: bool = True) -> Plan:
    """Plan (context_enc, continuation_enc) requests. A forward pass holds at most
    ``pass_tokens`` padded new tokens and ``past_tokens`` padded past ones (at least one input).
    ``budget_tokens`` bounds the kept keys/values: the sorted inputs are cut into blocks that
    fit, and a block carries only the path it shares with the next. ``share=False`` runs every
    unique input on its own (to measure that lever)."""
    inputs, targets = [], []
    for ctx, cont in requests:
        whole = (ctx + cont)[-(max_length + 1):]  # HFLM's left truncation
        inputs.append(tuple(whole[:-1]))
        targets.append(cont)
    uniq = sorted(set(inputs))
    index = {s: k for k, s in enumerate(uniq)}
    seqs = [np.asarray(s, dtype=np.int64) for s in uniq]
    n = len(seqs)
    shared = np.zeros(n, dtype=np.int64)
    own = np.zeros(n, dtype=np.int64)
    paths: list[np.ndarray] = []
    nxt = 0
    for k, s in enumerate(seqs):
        m = _common_prefix(seqs[k - 1], s) if (k and share) else 0
        shared[k], own[k] = m, nxt
        fresh = np.arange(nxt, nxt + len(s) - m)
        paths.append(np.concatenate([paths[k - 1][:m], fresh]) if m else fresh)
        nxt += len(s) - m
    owner = np.repeat(np.arange(n), [len(s) for s in seqs] - shared)
    kept = np.zeros(nxt, dtype=bool)
    for k in range(n):
        kept[paths[k][:shared[k]]] = True

    # blocks: consecutive inputs whose kept nodes fit the budget; later inputs can only reuse
    # a prefix of the boundary input's path, and that prefix is what the next block carries
    own_kept = np.add.reduceat(kept.astype(np.int64), own) if n else np.zeros(0, dtype=np.int64)
    block = np.zeros(n, dtype=np.int64)
    used = 0
    for k in range(n):
        if k and used + own_kept[k] > budget_tokens:
            block[k] = block[k - 1] + 1
            used = shared[k]
        else:
            block[k] = block[k - 1] if k else 0
        used += own_kept[k]

    # depth: one more than the input owning the last token it builds on, within its block
    depth = np.zeros(n, dtype=np.int64)
    for k in range(n):
        if shared[k]:
            o = owner[paths[k][shared[k] - 1]]
            depth[k] = depth[o] + 1 if block[o] == block[k] else 0

    # slots: a kept node holds its pool row for its whole life; a block's new nodes take the
    # rows its carried nodes do not hold (the nodes of earlier blocks are done with)
    slot = np.full(nxt, -1, dtype=np.int64)
    starts = np.flatnonzero(np.diff(block, prepend=-1)) if n else np.zeros(0, dtype=np.int64)
    ends = np.append(starts[1:], n)
    new_nodes = [np.concatenate([np.arange(own[k], own[k] + len(seqs[k]) - shared[k]) for k in range(a, e)])
                 for a, e in zip(starts, ends)]
    new_nodes = [x[kept[x]] for x in new_nodes]
    pool_size = max((shared[a] + len(x) for a, x in zip(starts, new_nodes)), default=0)
    batches = []
    for a, e, fresh in zip(starts, ends, new_nodes):
        held = slot[paths[a][:shared[a]]] if a else np.zeros(0, dtype=np.int64)
        slot[fresh] = np.setdiff1d(np.arange(pool_size), held)[:len(fresh)]
        members = np.arange(a, e)
        for d in range(int(depth[members].max()) + 1):
            rows = members[depth[members] == d]
            seg = np.asarray([len(seqs[k]) for k in rows]) - shared[rows]
            # by own length in powers of two, then past length: little padding either way
            order = np.lexsort((shared[rows], np.ceil(np.log2(seg))))
            rows, seg = rows[order], seg[order]
            # a pass holds at most pass_tokens query tokens (padded) and past_tokens past ones
            i = 0
            while i < len(rows):
                j, s_top, p_top = i + 1, seg[i], shared[rows[i]]
                while j < len(rows) and (j + 1 - i) * max(s_top, seg[j]) <= pass_tokens and \
                        (j + 1 - i) * max(p_top, shared[rows[j]]) <= past_tokens:
                    s_top, p_top = max(s_top, seg[j]), max(p_top, shared[rows[j]])
                    j += 1
                batches.append(rows[i:j])
                i = j

    # scored tokens: HFLM reads a request's last len(cont) input positions
    req_len = np.asarray([len(t) for t in targets], dtype=np.int64)
    req_pairs = np.concatenate([[0], np.cumsum(req_len)[:-1]]).astype(np.int64)
    pair_node = np.concatenate([paths[index[s]][len(s) - c:] for s, c in zip(inputs, req_len)]) \
        if requests else np.zeros(0, dtype=np.int64)
    pair_target = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets]) \
        if requests else np.zeros(0, dtype=np.int64)
    stats = {"requests": len(requests), "unique_inputs": n, "tree_tokens": int(nxt),
             "input_tokens": int(sum(len(s) for s in inputs)), "unique_input_tokens": int(sum(map(len, seqs))),
             "longest_input": int(max(map(len, seqs), default=0)), "scored_tokens": int(req_len.sum()),
             "scored_positions": int(len(np.unique(pair_node))), "blocks": int(block[-1]) + 1 if n else 0,
             "passes": len(batches), "kept_tokens": int(kept.sum())}
    return Plan(seqs, shared, own, paths, nxt, kept, slot, batches, pool_size, pair_node,
                pair_target, req_pairs, req_len, stats)


# ------------------------------------------------------------------------------ the model
def _make_cache(past):
    from transformers import DynamicCache
    if past is None:
        return DynamicCache()
    if hasattr(DynamicCache, "from_legacy_cache"):  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(past))
    return DynamicCache(ddp_cache_data=past)


def _layer_kv(cache, layer: int):
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


@register_model(MODEL_NAME)
class FastLM(HFLM):
    """HFLM with a prefix-sharing ``_loglikelihood_tokens`` (see the module docstring).
    Forward passes are sized by ``pass_tokens`` (new tokens, padding included), not by HFLM's
    ``batch_size``; ``kv_budget_mb`` bounds the keys/values held at once. ``share``/``head``
    exist to measure the levers: ``share=False`` runs each unique input on its own,
    ``head="all"`` runs the LM head at every position as HFLM does."""

    def __init__(self, *args, pass_tokens: int = PASS_TOKENS, kv_budget_mb: float = KV_BUDGET_MB,
                 share: bool = True, head: str = "scored", **kwargs):
        super().__init__(*args, **kwargs)
        from calib.errors import check_choice
        check_choice("head", head, ("scored", "all"))
        self.pass_tokens, self.kv_budget_mb = int(pass_tokens), float(kv_budget_mb)
        self.share, self.head = bool(share), head
        self.stats: dict = {}
        self.plan_only = False

    # -- tokenisation: lm-eval's own, memoised per process: every choice of an item re-encodes
    # the same context, and every job of a sweep encodes the same requests with the same tokenizer
    def _tokenizer_key(self):
        """What tok_encode's result depends on: the tokenizer's full definition (a fast
        tokenizer's serialisation) and the BOS setting; None for tokenizers without one."""
        key = getattr(self, "_tok_key", False)
        if key is False:
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            key = None if backend is None else (hashlib.sha256(backend.to_str().encode()).hexdigest(),
                                                 self.add_bos_token, self.prefix_token_id)
            self._tok_key = key
        return key

    def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
        tk = self._tokenizer_key()
        if tk is None or kwargs:
            return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)
        key = (tk, string, add_special_tokens, left_truncate_len)
        ids = _ENCODED.get(key)
        if ids is None:
            if len(_ENCODED) >= ENCODED_MAX:  # a sweep's requests fit many times over; drop the oldest
                del _ENCODED[next(iter(_ENCODED))]
            ids = _ENCODED[key] = tuple(super().tok_encode(string, add_special_tokens, left_truncate_len))
        return list(ids)

    # -- what the fast path covers
    def _fast_ok(self) -> bool:
        return self.backend == "causal" and getattr(self.config, "model_type", None) in FAST_MODEL_TYPES

    def _final_softcap(self) -> float | None:
        """Gemma 2/3 soft-cap their logits after the LM head: cap * tanh(logits / cap)."""
        cfg = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        return getattr(cfg, "final_logit_softcapping", None)

    def _kv_bytes_per_token(self) -> int:
        cfg = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        itemsize = torch.finfo(self.model.dtype).bits // 8
        return 2 * cfg.num_hidden_layers * kv_heads * head_dim * itemsize

    def _autocast(self):
        if self.mixed_precision_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype)

    def _plan(self, requests) -> Plan:
        budget = int(self.kv_budget_mb * 2**20 // self._kv_bytes_per_token())
        # half the budget for the pool, half for one pass's gathered past
        return plan([(ctx, cont) for _, ctx, cont in requests], self.max_length, self.pass_tokens,
                    past_tokens=max(self.max_length, budget // 2),
                    budget_tokens=max(self.max_length, budget // 2), share=self.share)

    def _fast_path(self, requests) -> bool:
        """Whether the fast path scores these requests (else HFLM's own code does)."""
        if not self._fast_ok():
            return False
        switch = rope_switch(self.config)  # longrope / dynamic RoPE: one frequency set per pass
        return switch is None or max(min(len(c) + len(t) - 1, self.max_length) for _, c, t in requests) <= switch

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if self.plan_only:  # request_tokens: the plan's counts, no model run
            self.stats = {**self._plan(requests).stats, "fast_path": self._fast_path(requests)} if requests else {}
            return [(0.0, False)] * len(requests)
        if not requests:
            return []
        if not self._fast_path(requests):
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        for _, ctx, cont in requests:  # HFLM's own preconditions
            assert len(ctx) > 0 and len(cont) > 0 and len(cont) <= self.max_length
        p = self._plan(requests)
        lp, ok = self._run(p, disable_tqdm)
        res = []
        for length in np.unique(p.req_len):
            idx = np.flatnonzero(p.req_len == length)
            cols = torch.as_tensor(p.req_pairs[idx][:, None] + np.arange(length))
            sums, alls = lp[cols].sum(-1).tolist(), ok[cols].all(-1).tolist()
            res.extend(zip(idx.tolist(), sums, alls))
        res.sort()
        out = [(float(s), bool(g)) for _, s, g in res]
        for (key, _, _), answer in zip(requests, out):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return out

    @torch.inference_mode()
    def _run(self, p: Plan, disable_tqdm: bool):
        from tqdm.auto import tqdm
        model, dev = self.model, self.device
        base, head, cap = model.base_model, model.get_output_embeddings(), self._final_softcap()
        # transformers >= 5.2x names the argument `cache`; older ones `past_key_values`
        cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        n_layers = model.config.get_text_config().num_hidden_layers \
            if hasattr(model.config, "get_text_config") else model.config.num_hidden_layers
        need = np.zeros(p.n_nodes, dtype=bool)
        need[p.pair_node] = True
        order = np.argsort(p.pair_node, kind="stable")  # pairs of each node, CSR
        start = np.searchsorted(p.pair_node[order], np.arange(p.n_nodes))
        count = np.bincount(p.pair_node, minlength=p.n_nodes)
        target = torch.as_tensor(p.pair_target, device=dev)
        lp = ok = None
        pool_k: list = []
        pool_v: list = []
        fed = padded = attended = heads = 0
        for rows in tqdm(p.batches, disable=disable_tqdm or self.rank != 0,
                         desc="Running loglikelihood requests (calib-fast)"):
            seg = np.asarray([len(p.seqs[k]) for k in rows]) - p.shared[rows]
            past = p.shared[rows]
            s_max, p_max = int(seg.max()), int(past.max())
            ids = np.zeros((len(rows), s_max), dtype=np.int64)
            nodes = np.full((len(rows), s_max), -1, dtype=np.int64)
            for i, k in enumerate(rows):
                ids[i, :seg[i]] = p.seqs[k][past[i]:]
                nodes[i, :seg[i]] = np.arange(p.own[k], p.own[k] + seg[i])
            kwargs = {}
            if p_max:
                pslots = np.zeros((len(rows), p_max), dtype=np.int64)
                mask = np.ones((len(rows), p_max + s_max), dtype=np.int64)
                for i, k in enumerate(rows):  # left padding keeps every query-key distance
                    pslots[i, p_max - past[i]:] = p.slot[p.paths[k][:past[i]]]
                    mask[i, :p_max - past[i]] = 0
                ps = torch.as_tensor(pslots, device=dev)
                cache = _make_cache([(pk[ps].transpose(1, 2), pv[ps].transpose(1, 2))
                                     for pk, pv in zip(pool_k, pool_v)])
                kwargs = {"attention_mask": torch.as_tensor(mask, device=dev),
                          "position_ids": torch.as_tensor(past[:, None] + np.arange(s_max), device=dev)}
            else:
                cache = _make_cache(None)
            with self._autocast():
                hidden = base(input_ids=torch.as_tensor(ids, device=dev), use_cache=True,
                              **{cache_arg: cache}, **kwargs).last_hidden_state
            fed += int(seg.sum())
            padded += len(rows) * s_max
            attended += len(rows) * p_max
            # keep the keys/values that later inputs read
            real = nodes >= 0
            keep = np.zeros_like(real)
            keep[real] = p.kept[nodes[real]]
            if keep.any():
                kt = torch.as_tensor(keep, device=dev)
                dst = torch.as_tensor(p.slot[nodes[keep]], device=dev)
                for layer in range(n_layers):
                    k, v = _layer_kv(cache, layer)
                    k, v = k[:, :, p_max:].transpose(1, 2)[kt], v[:, :, p_max:].transpose(1, 2)[kt]
                    if len(pool_k) <= layer:
                        pool_k.append(k.new_empty((p.pool_size, *k.shape[1:])))
                        pool_v.append(v.new_empty((p.pool_size, *v.shape[1:])))
                    pool_k[layer][dst], pool_v[layer][dst] = k, v
            # LM head + log-softmax at scored positions only
            sel = np.zeros_like(real)
            sel[real] = need[nodes[real]]
            if not sel.any():
                continue
            at = nodes[sel]
            if self.head == "all":
                with self._autocast():
                    logits = head(hidden[torch.as_tensor(real, device=dev)])
                logits = logits[torch.as_tensor(sel[real], device=dev)]
                heads += int(real.sum())
            else:
                with self._autocast():
                    logits = head(hidden[torch.as_tensor(sel, device=dev)])
                heads += len(at)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            logp = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            greedy = logp.argmax(dim=-1)
            cnt = count[at]
            row = np.repeat(np.arange(len(at)), cnt)
            pair = order[np.repeat(start[at] - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())]
            row_t, pair_t = torch.as_tensor(row, device=dev), torch.as_tensor(pair, device=dev)
            if lp is None:
                lp = torch.zeros(len(p.pair_node), dtype=logp.dtype, device=dev)
                ok = torch.zeros(len(p.pair_node), dtype=torch.bool, device=dev)
            lp[pair_t] = logp[row_t, target[pair_t]]
            ok[pair_t] = greedy[row_t] == target[pair_t]
        self.stats = {**p.stats, "tokens_fed": fed, "padded_tokens": padded, "past_tokens": attended,
                      "head_positions": heads}
        return lp.cpu(), ok.cpu()


def request_tokens(config, tokenizer, groups) -> dict:
    """Forward tokens each scorer feeds for lm-eval's requests ``groups`` (``calib.evaluate.
    suite_requests``: one list per simple_evaluate call), without running a model: ``fast``, the
    prefix tree FastLM runs (every token once; HFLM's count where the fast path does not score them:
    an architecture it does not cover, inputs past a longrope switch), and ``hflm``, every unique model input, as HFLM runs them. The requests are
    encoded by lm-eval's own code, on a model with no weights (the meta device) built from ``config``."""
    from transformers import AutoModelForCausalLM
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    with contextlib.redirect_stderr(__import__("io").StringIO()):
        lm = FastLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    lm.plan_only = True
    out = {"fast": 0, "hflm": 0}
    for _, instances in groups:
        lm.loglikelihood(instances, disable_tqdm=True)
        if lm.stats:
            out["hflm"] += lm.stats["unique_input_tokens"]
            out["fast"] += lm.stats["tree_tokens"] if lm.stats["fast_path"] else lm.stats["unique_input_tokens"]
    return out
