"""``infomoe demo router``: a small MoE language model trained on CPU, its routing, and its frontier.

The job, end to end, in a few minutes on two CPU cores and without any
download:

1. Data: the Python standard library's own source files (read from the
   running interpreter's ``sysconfig`` paths), split by file into train and
   held-out sets, as bytes (vocabulary 256).
2. Train a Hugging Face OLMoE model (4 layers, hidden 128, 8 experts,
   top-2 by default) with its load-balancing loss; save checkpoints
   (``save_pretrained``) and record one routing log per checkpoint on the
   same held-out sequences (:class:`~infomoe.logs.export.RoutingRecorder`,
   with router logits, ``seq_id`` and ``position``).
3. Analyse: :func:`infomoe.logs.analyze_log` on the final log, the soft-gate
   ``I(X;T)`` and co-activation of each layer, router saturation across the
   checkpoints (:func:`infomoe.logs.router_saturation`).
4. Expert forcing on one layer (:func:`~infomoe.logs.export.expert_loss_matrix`)
   and that layer's accuracy-rate frontier with the learned router's point
   (:func:`~infomoe.logs.export.router_frontier_point`).
5. Figures (PNG) and ``results.json`` with the numbers behind each figure.
"""

from __future__ import annotations

import json
import math
import os
import sysconfig
import time
import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from infomoe._repr import json_ready

__all__ = ["FULL", "QUICK", "DemoSettings", "run_router_demo", "stdlib_corpus"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the router demo (see :data:`FULL` and :data:`QUICK`)."""

    arch: str = "olmoe"
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    experts: int = 8
    top_k: int = 2
    intermediate: int = 128
    seq_len: int = 64
    batch: int = 24
    steps: int = 300
    lr: float = 3e-3
    warmup: int = 20
    aux_loss_coef: float = 0.01
    checkpoints: int = 6
    eval_seqs: int = 64
    forcing_seqs: int = 24
    forcing_layer: int = 2
    max_train_bytes: int = 16_000_000
    max_test_bytes: int = 2_000_000
    test_every: int = 10  # one file in this many (by a hash of its path) is held out


#: The default settings (about 2-3 minutes of training on two shared CPU cores).
FULL = DemoSettings()
#: Tiny settings for tests (a few seconds).
QUICK = DemoSettings(layers=2, hidden=32, heads=2, experts=4, top_k=2, intermediate=32, seq_len=16, batch=8,
                     steps=12, warmup=2, checkpoints=3, eval_seqs=8, forcing_seqs=4, forcing_layer=1,
                     max_train_bytes=200_000, max_test_bytes=50_000)


# -- data -----------------------------------------------------------------------------------

def _stdlib_files(root: str) -> list:
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("site-packages", "dist-packages", "__pycache__"))
        for f in sorted(files):
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


def stdlib_corpus(*, test_every: int = 10, max_train_bytes: int | None = None,
                  max_test_bytes: int | None = None, root: str | None = None):
    """The standard library's Python source as bytes, split by file into train and held-out sets.

    A file is held out when ``crc32(relative path) % test_every == 0``
    (deterministic, the same on every machine with the same files).  Files
    are read in sorted order until each set reaches its byte cap.

    Parameters
    ----------
    test_every : int, default 10
        About one file in this many is held out.
    max_train_bytes, max_test_bytes : int, optional
        Caps on the bytes read per set (default: everything).
    root : str, optional
        Source folder (default ``sysconfig.get_paths()["stdlib"]``).

    Returns
    -------
    train, test : ndarray of uint8
        The files' bytes, joined by a blank line.
    info : dict
        ``root``, file and byte counts of each set, and the Python version.

    Examples
    --------
    >>> from infomoe._router_demo import stdlib_corpus
    >>> train, test, info = stdlib_corpus(max_train_bytes=10_000, max_test_bytes=5_000)
    >>> train.dtype.name, len(train) >= 10_000, info["test_files"] > 0
    ('uint8', True, True)
    """
    import platform

    root = root or sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"the standard library source folder {root!r} does not exist")
    parts = {"train": [], "test": []}
    sizes = {"train": 0, "test": 0}
    caps = {"train": max_train_bytes, "test": max_test_bytes}
    counts = {"train": 0, "test": 0}
    for rel in _stdlib_files(root):
        which = "test" if zlib.crc32(rel.replace(os.sep, "/").encode()) % test_every == 0 else "train"
        cap = caps[which]
        if cap is not None and sizes[which] >= cap:
            continue
        try:
            with open(os.path.join(root, rel), "rb") as fh:
                data = fh.read()
        except OSError:  # pragma: no cover - unreadable file: skipped
            continue
        parts[which].append(data + b"\n\n")
        sizes[which] += len(data) + 2
        counts[which] += 1
        if all(caps[w] is not None and sizes[w] >= caps[w] for w in parts):
            break
    if not parts["train"] or not parts["test"]:
        raise FileNotFoundError(f"no Python source files found under {root!r} (train {counts['train']}, "
                                f"held out {counts['test']})")
    arrays = {w: np.frombuffer(b"".join(p), dtype=np.uint8) for w, p in parts.items()}
    info = {"root": root, "python": platform.python_version(), "train_files": counts["train"],
            "test_files": counts["test"], "train_bytes": int(arrays["train"].size),
            "test_bytes": int(arrays["test"].size), "split": f"crc32(path) % {test_every} == 0 held out"}
    return arrays["train"], arrays["test"], info


def _held_out(test: np.ndarray, n: int, seq_len: int) -> np.ndarray:
    """``n`` held-out sequences at evenly spaced offsets of the held-out bytes."""
    if test.size < seq_len + 1:
        raise ValueError(f"the held-out text has {test.size} bytes, fewer than one sequence of {seq_len}")
    starts = np.linspace(0, test.size - seq_len, n).astype(np.int64)
    return np.stack([test[s:s + seq_len] for s in starts]).astype(np.int64)


# -- analysis helpers -----------------------------------------------------------------------

def _layer_coactivation(report, layer: int) -> dict:
    """Co-activation of one layer of a routing report: pair fractions and lift against the loads.

    The pair counts are the report's ``coactivation`` tables and the lift is
    :func:`infomoe.plot._logs.coactivation_lift`, the one definition of it
    (:func:`infomoe.plot.coactivation_heatmap` draws the same numbers).

    Parameters
    ----------
    report : LogReport
        From :func:`infomoe.logs.analyze_log`.
    layer : int
        Layer id.

    Returns
    -------
    dict
        ``coactivation_pair_fraction`` (E, E): fraction of the report's
        tokens choosing both ``i`` and ``j`` (the diagonal: choosing ``i``);
        ``coactivation_lift`` (E, E): the pair's count over the count
        expected if each token's experts were drawn independently with these
        loads (1 under uniformly random top-k routing; NaN on the diagonal);
        ``coactivation_max_lift`` and ``coactivation_top_pair``: the largest
        off-diagonal lift and its pair (``None`` when no token chose two
        experts, e.g. top-1).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from infomoe.logs import analyze_log, write_log
    >>> from infomoe._router_demo import _layer_coactivation
    >>> ids = np.array([[0, 1], [2, 3]] * 50)[:, None, :]   # 0 always with 1, 2 with 3
    >>> r = analyze_log(write_log(os.path.join(tempfile.mkdtemp(), "l"), ids, num_experts=4), intervals=False)
    >>> c = _layer_coactivation(r, 0)
    >>> c["coactivation_top_pair"], round(c["coactivation_max_lift"], 3)   # E - 1 for a fixed pairing
    ((0, 1), 3.0)
    """
    from infomoe.plot._logs import coactivation_lift

    lift = coactivation_lift(report, layer)  # validates report and layer
    i = [int(v) for v in report.layer_ids].index(layer)
    n = int(report.num_tokens)
    pair = np.asarray(report.coactivation[i], dtype=np.float64) / n
    np.fill_diagonal(pair, np.asarray(report.load[i], dtype=np.float64) / n)
    if np.isnan(lift).all():
        top, top_lift = None, None
    else:
        a, b = np.unravel_index(int(np.nanargmax(lift)), lift.shape)
        top, top_lift = (int(a), int(b)), float(lift[a, b])
    return {"coactivation_pair_fraction": pair, "coactivation_lift": lift, "coactivation_max_lift": top_lift,
            "coactivation_top_pair": top}


def _soft_gate_information(logits: np.ndarray) -> float:
    from infomoe.routing import routing_information

    return float(routing_information(np.asarray(logits, dtype=np.float64), from_logits=True))


# -- the model --------------------------------------------------------------------------------

def _build_model(s: DemoSettings, seed: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
              num_key_value_heads=s.heads, vocab_size=256, intermediate_size=s.intermediate,
              max_position_embeddings=max(128, s.seq_len), pad_token_id=None, bos_token_id=None,
              eos_token_id=None, num_experts=s.experts, num_experts_per_tok=s.top_k, norm_topk_prob=True,
              output_router_logits=True, router_aux_loss_coef=s.aux_loss_coef, tie_word_embeddings=False)
    if s.arch == "qwen3_moe":
        kw.update(moe_intermediate_size=s.intermediate, head_dim=s.hidden // s.heads, decoder_sparse_step=1,
                  mlp_only_layers=[])
    elif s.arch != "olmoe":
        raise ValueError(f"`arch` must be 'olmoe' or 'qwen3_moe', got {s.arch!r}")
    cfg = AutoConfig.for_model(s.arch, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.config.name_or_path = f"infomoe-demo-router-{s.arch}"
    return model


def _save_checkpoint(model, path: str) -> None:
    """``save_pretrained`` without transformers' per-shard progress bar (its setting is restored)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _lr(step: int, s: DemoSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _record(model, held: np.ndarray, path: str, step: int, batch: int) -> float:
    """One routing log of the held-out sequences; returns their mean next-token loss (nats)."""
    import torch

    from infomoe.logs.export import RoutingRecorder

    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad(), RoutingRecorder(model, path, record_logits=True, step=step,
                                          metadata={"step": int(step)}) as rec:
        for a in range(0, held.shape[0], batch):
            x = torch.as_tensor(held[a:a + batch])
            rec.set_batch(seq_id=np.arange(a, a + x.shape[0]))
            logits = model(input_ids=x).logits
            ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                   x[:, 1:].reshape(-1), reduction="sum")
            tot += float(ce)
            n += x[:, 1:].numel()
    model.train()
    return tot / n


# -- figures -----------------------------------------------------------------------------------

def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _figures(out: str, res: dict, report, curve, saturation) -> dict:
    from matplotlib.figure import Figure

    from infomoe import plot

    paths = {}
    fr = res["frontier"]
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.subplots()
    plot.accuracy_rate(curve, ax=ax, kind="distortion", label="frontier D(R) (Blahut-Arimoto)")
    soft, learned, topk = fr["soft_gate"], fr["learned_topk"], fr["topk_channel"]
    ax.plot([soft["rate"]], [soft["loss"]], "o", color="C0", ms=8,
            label=f"router: soft gate as a channel (excess {soft['excess_loss']:.3g} nats)")
    ax.plot([topk["rate"]], [topk["loss"]], "D", color="C4", ms=7,
            label=f"router: top-{res['settings']['top_k']} weights as a channel")
    ax.plot([learned["rate"]], [learned["loss"]], "P", color="C1", ms=9,
            label=f"learned top-{res['settings']['top_k']} mixture (actual loss)")
    ax.annotate("", xy=(soft["rate"], soft["frontier_loss"]), xytext=(soft["rate"], soft["loss"]),
                arrowprops=dict(arrowstyle="->", color="C0", lw=1))
    if soft["frontier_rate"] is not None:
        ax.annotate("", xy=(soft["frontier_rate"], soft["loss"]), xytext=(soft["rate"], soft["loss"]),
                    arrowprops=dict(arrowstyle="->", color="C0", lw=1, ls="--"))
    ax.set_ylabel("next-token loss [nats]")
    ax.set_title(f"layer {res['forcing']['layer']}: accuracy-rate frontier and the learned router")
    ax.legend(fontsize="x-small", loc="upper right")
    paths["frontier"] = _save(fig, os.path.join(out, "frontier.png"))

    fig = Figure(figsize=(6.4, 3.6))
    plot.load_heatmap(report, ax=fig.subplots())
    paths["report_load"] = _save(fig, os.path.join(out, "report_load.png"))
    fig = Figure(figsize=(6.4, 4.2))
    ax = plot.layer_information(report, ax=fig.subplots())
    lids = [r["layer_id"] for r in res["layers"]]
    ax.plot(lids, [r["soft_gate_information"] for r in res["layers"]], "k--o", ms=4,
            label="soft gate I(X;T)")
    ax.legend(fontsize="small")
    paths["report_information"] = _save(fig, os.path.join(out, "report_information.png"))

    multi = [int(lid) for lid, k in zip(report.layer_ids, report.top_k) if k >= 2]
    if multi:  # co-activation needs two experts per token
        fig = Figure(figsize=(3.8 * len(multi), 3.4))
        for ax, lid in zip(np.atleast_1d(fig.subplots(1, len(multi))), multi):
            plot.coactivation_heatmap(report, layer=lid, ax=ax)
        paths["coactivation"] = _save(fig, os.path.join(out, "coactivation.png"))

    if saturation is not None:
        fig = Figure(figsize=(6.4, 4.2))
        plot.saturation_plot(saturation, ax=fig.subplots())
        paths["saturation"] = _save(fig, os.path.join(out, "saturation.png"))

    tr = res["training"]
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    ax.plot(tr["step"], tr["train_loss"], lw=0.8, label="train (batch)")
    ax.plot(tr["checkpoint_steps"], tr["held_out_loss"], "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss [nats / byte]")
    ax.legend()
    paths["training"] = _save(fig, os.path.join(out, "training.png"))
    return paths


# -- the job -------------------------------------------------------------------------------------

def run_router_demo(out: str, *, settings: DemoSettings = FULL, seed: int = 0, progress: bool = False,
                    echo=print) -> dict:
    """Train the demo MoE model, record and analyse its routing, force experts, place it on its frontier.

    Parameters
    ----------
    out : str
        Output folder (created): ``checkpoints/``, ``logs/``, PNG figures,
        ``results.json`` and ``expert_losses.npz``.
    settings : DemoSettings, default FULL
        Sizes (:data:`QUICK` for a run of seconds).
    seed : int, default 0
    progress : bool, default False
        Progress bars.
    echo : callable, default print
        Where the text report goes.

    Returns
    -------
    dict
        The results (as written to ``results.json``), with ``"paths"``.

    Raises
    ------
    RuntimeError
        After writing everything else, when :func:`infomoe.logs.router_saturation`
        is not available (the saturation step is reported as failed).
    """
    import torch

    from infomoe._progress import progress_bar
    from infomoe._router_frontier import router_frontier_point
    from infomoe.logs import analyze_log, open_log
    from infomoe.logs.export import expert_loss_matrix

    s = settings
    if not 0 <= s.forcing_layer < s.layers:
        raise ValueError(f"--layer must be a layer id in 0..{s.layers - 1}, got {s.forcing_layer}")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    timings = {}
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    ck_dir, log_dir = os.path.join(out, "checkpoints"), os.path.join(out, "logs")
    os.makedirs(ck_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)

    train, test, data_info = stdlib_corpus(test_every=s.test_every, max_train_bytes=s.max_train_bytes,
                                           max_test_bytes=s.max_test_bytes)
    held = _held_out(test, s.eval_seqs, s.seq_len)
    timings["data_s"] = time.perf_counter() - t0
    echo(f"data: {data_info['train_files']} train files ({data_info['train_bytes']:,} bytes), "
         f"{data_info['test_files']} held-out files ({data_info['test_bytes']:,} bytes) of Python "
         f"{data_info['python']}'s standard library; {held.shape[0]} held-out sequences of {s.seq_len} bytes")

    # -- training with checkpoints ------------------------------------------------------------
    t1 = time.perf_counter()
    model = _build_model(s, seed)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    train_t = torch.as_tensor(train.astype(np.int64))
    ck_steps = sorted({int(round(v)) for v in np.linspace(0, s.steps, s.checkpoints)})
    train_loss, steps_done, held_loss, log_paths = [], [], [], []
    bar = progress_bar(enabled=progress, total=s.steps, desc="training", unit="step")
    model.train()
    for step in range(s.steps + 1):
        if step in ck_steps:
            lp = os.path.join(log_dir, f"step_{step:05d}")
            held_loss.append(_record(model, held, lp, step, batch=s.batch))
            log_paths.append(lp)
            _save_checkpoint(model, os.path.join(ck_dir, f"step_{step:05d}"))
        if step == s.steps:
            break
        for g in opt.param_groups:
            g["lr"] = _lr(step, s)
        starts = torch.randint(0, train_t.numel() - s.seq_len - 1, (s.batch,), generator=gen)
        x = torch.stack([train_t[a:a + s.seq_len] for a in starts.tolist()])
        o = model(input_ids=x, labels=x)
        o.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        aux = getattr(o, "aux_loss", None)
        lm = float(o.loss.detach()) - (0.0 if aux is None else s.aux_loss_coef * float(aux.detach()))
        train_loss.append(lm)
        steps_done.append(step)
        bar.update(1)
        if progress and step % 10 == 0:
            bar.set_postfix_str(f"loss {lm:.3f}")
    bar.close()
    model.eval()
    timings["train_s"] = time.perf_counter() - t1
    echo(f"trained {s.arch} ({s.layers} layers, hidden {s.hidden}, {s.experts} experts, top-{s.top_k}, "
         f"{n_params:,} parameters) for {s.steps} steps of {s.batch}x{s.seq_len} bytes in "
         f"{timings['train_s']:.1f} s: held-out loss {held_loss[0]:.3f} -> {held_loss[-1]:.3f} nats/byte "
         f"({held_loss[-1] / math.log(2):.3f} bits/byte); checkpoints at steps {ck_steps}")

    # -- 1. the routing report ----------------------------------------------------------------
    t2 = time.perf_counter()
    final_log = log_paths[-1]
    report = analyze_log(final_log)
    echo("")
    echo(report.format_table())
    logits = open_log(final_log).read(columns=["router_logits"])["router_logits"]
    layers = [{"layer_id": lid, "soft_gate_information": _soft_gate_information(logits[lid]),
               **_layer_coactivation(report, lid)} for lid in (int(v) for v in report.layer_ids)]
    echo("")
    echo(f"soft gate and co-activation ({report.num_tokens} held-out tokens; I in bits, at most "
         f"log2 {s.experts} = {math.log2(s.experts):.2f})")
    echo(f"{'layer':>5} {'I(X;T) soft':>11} {'max lift':>8} {'top pair':>8}")
    for r in layers:
        lift = "-" if r["coactivation_max_lift"] is None else f"{r['coactivation_max_lift']:.2f}"
        echo(f"{r['layer_id']:>5} {r['soft_gate_information']:>11.3f} {lift:>8} {r['coactivation_top_pair']!s:>8}")
    echo("  lift = tokens choosing i and j together / the count if each token's experts were drawn "
         "independently with these loads; 1 = independent (uniformly random top-k routing)")

    # router saturation across the checkpoints
    saturation, sat_json, sat_error = None, None, None
    try:
        from infomoe.logs import router_saturation
    except ImportError as exc:
        sat_error = f"infomoe.logs.router_saturation is not available ({exc})"
    else:
        saturation = router_saturation(log_paths, steps=ck_steps)
        sat_json = {k: getattr(saturation, k) for k in
                    ("steps", "reference", "layer_ids", "num_matched", "exact_set_match", "jaccard",
                     "top1_agreement", "js", "exact_set_match_layers", "jaccard_layers",
                     "top1_agreement_layers", "js_layers", "unit") if hasattr(saturation, k)}
        echo("")
        echo("router saturation (agreement with the final checkpoint, mean over layers)")
        echo(f"{'step':>6} {'exact set':>9} {'jaccard':>8} {'top-1':>6}")
        for i, st in enumerate(np.asarray(saturation.steps)):
            echo(f"{int(st):>6} {float(saturation.exact_set_match[i]):>9.3f} {float(saturation.jaccard[i]):>8.3f} "
                 f"{float(saturation.top1_agreement[i]):>6.3f}")
    if sat_error:
        echo(f"router saturation: FAILED: {sat_error}")
    timings["report_s"] = time.perf_counter() - t2

    # -- 2. expert forcing ------------------------------------------------------------------------
    t3 = time.perf_counter()
    fx = held[:s.forcing_seqs]
    m = expert_loss_matrix(model, fx, layer=s.forcing_layer, batch_size=max(1, min(8, s.forcing_seqs)),
                           progress=progress)
    timings["forcing_s"] = time.perf_counter() - t3

    # -- 3. the frontier and the router's point ---------------------------------------------------
    t4 = time.perf_counter()
    soft = router_frontier_point(m.loss, m.router_probs)
    curve = soft.curve
    learned = router_frontier_point(m.loss, m.router_probs, float(m.routed_loss.mean()), curve=curve)
    q = np.zeros_like(m.router_probs)
    np.put_along_axis(q, m.routed_ids, m.routed_weights, axis=1)  # top-k weights as a channel
    q = q / q.sum(axis=1, keepdims=True)
    topk = router_frontier_point(m.loss, q, curve=curve)
    timings["frontier_s"] = time.perf_counter() - t4
    per_expert = m.loss.mean(axis=0)
    echo("")
    echo(f"expert forcing, layer {m.layer}: {m.num_tokens} held-out tokens x {m.num_experts} experts "
         f"(mode {m.mode!r}: only that token forced, its context routed as learned)")
    echo("  mean loss per forced expert [nats]: " + " ".join(f"{v:.3f}" for v in per_expert))
    echo(f"  learned top-{m.top_k} routing {m.routed_loss.mean():.4f}, best single expert {curve.d_max:.4f} "
         f"(expert {curve.best_expert}), oracle {curve.d_min:.4f} at {curve.rate_at_d_min:.3f} {curve.unit}")
    echo("")
    echo(f"accuracy-rate frontier of layer {m.layer} ({np.size(curve.rate)} points, certificate <= "
         f"{float(np.max(curve.certificate)):.2g} {curve.unit}) and the router's points:")
    echo(f"{'point':<28} {'rate':>7} {'loss':>8} {'D(R)':>8} {'excess':>8} {'R(D)':>7} {'wasted':>7} {'below?':>6}")
    for name, p in (("soft gate as a channel", soft), (f"top-{m.top_k} weights as a channel", topk),
                    (f"learned top-{m.top_k} mixture", learned)):
        rd = "-" if p.frontier_rate is None else f"{p.frontier_rate:.3f}"
        wr = "-" if p.wasted_rate is None else f"{p.wasted_rate:.3f}"
        echo(f"{name:<28} {p.rate:>7.3f} {p.loss:>8.4f} {p.frontier_loss:>8.4f} {p.excess_loss:>8.4f} "
             f"{rd:>7} {wr:>7} {p.below_frontier!s:>6}")
    echo(f"  rate in {curve.unit} (soft-gate I(X;T) of the layer on these tokens), loss in nats; excess = loss - "
         "D(rate), wasted = rate - R(loss).")
    echo("  The channel points are achievable routers, so they can never be below the frontier (checked "
         "with the solver's certificate); the learned mixture's loss combines two experts' outputs, which "
         "single-expert routing need not reach.")

    res = {
        "format": "infomoe.demo-router", "version": 1, "seed": seed, "settings": asdict(s),
        "data": data_info, "num_parameters": int(n_params),
        "training": {"step": steps_done, "train_loss": train_loss, "checkpoint_steps": ck_steps,
                     "held_out_loss": held_loss, "checkpoints": [os.path.join(ck_dir, f"step_{c:05d}")
                                                                 for c in ck_steps],
                     "logs": log_paths},
        "report": report.to_dict(), "layers": layers,
        "saturation": sat_json if sat_error is None else {"error": sat_error},
        "forcing": {"layer": m.layer, "mode": m.mode, "num_tokens": m.num_tokens,
                    "mean_loss_per_expert": per_expert, "routed_loss": float(m.routed_loss.mean()),
                    "file": os.path.join(out, "expert_losses.npz")},
        "frontier": {"curve": {"rate": curve.rate, "distortion": curve.distortion,
                               "raw_distortion": curve.raw_distortion, "beta": curve.beta,
                               "certificate": curve.certificate, "converged": curve.converged,
                               "d_max": curve.d_max, "d_min": curve.d_min,
                               "rate_at_d_min": curve.rate_at_d_min, "best_expert": curve.best_expert,
                               "unit": curve.unit},
                     "soft_gate": soft.to_dict(), "topk_channel": topk.to_dict(),
                     "learned_topk": learned.to_dict()},
    }
    np.savez_compressed(os.path.join(out, "expert_losses.npz"), loss=m.loss, routed_loss=m.routed_loss,
                        router_probs=m.router_probs, routed_ids=m.routed_ids, routed_weights=m.routed_weights,
                        seq_id=m.seq_id, position=m.position, target=m.target)
    t5 = time.perf_counter()
    res = json_ready(res)
    paths = _figures(out, res, report, curve, saturation)
    timings["figures_s"] = time.perf_counter() - t5
    timings["total_s"] = time.perf_counter() - t0
    res["timings"] = json_ready(timings)
    res["paths"] = paths
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1, allow_nan=False)
    paths["results"] = os.path.join(out, "results.json")
    echo("")
    echo("wrote " + ", ".join(paths.values()))
    if sat_error:
        raise RuntimeError(f"router saturation step failed: {sat_error}; everything else was written to {out}")
    return res


def settings_for(*, quick: bool = False, steps: int | None = None, layer: int | None = None) -> DemoSettings:
    """:data:`FULL` or :data:`QUICK` with the command line's overrides."""
    s = QUICK if quick else FULL
    if steps is not None:
        s = replace(s, steps=int(steps), warmup=min(s.warmup, max(1, int(steps) // 5)))
    if layer is not None:
        s = replace(s, forcing_layer=int(layer))
    return s
