"""``infomoe export``: run a Hugging Face MoE model on some tokens and record a routing log."""

from __future__ import annotations

import argparse
import os

__all__ = ["register", "run_export"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to an ``argparse`` subparsers object."""
    from infomoe.logs.export._hf import TINY_ARCHS

    p = subparsers.add_parser(
        "export", help="record the routing of a Hugging Face MoE model into a routing log",
        description="Run a Hugging Face MoE model (a model id or local path, or a tiny random-config model "
                    "with --tiny ARCH) on generated token ids or given text, and record every router's "
                    "chosen experts and gate weights into a routing log directory.",
        epilog="example: infomoe export --tiny mixtral --out mixtral.log --tokens 4096")
    p.add_argument("model", nargs="?", default=None,
                   help="Hugging Face model id or local path (omit with --tiny)")
    p.add_argument("--out", required=True,
                   help="routing-log directory to create (an existing log needs --resume)")
    p.add_argument("--resume", action="store_true",
                   help="append to the routing log already at --out (same model and layers)")
    p.add_argument("--tiny", metavar="ARCH", choices=TINY_ARCHS, default=None,
                   help=f"build a tiny random-init model instead of loading one ({', '.join(TINY_ARCHS)})")
    p.add_argument("--tokens", type=int, default=2048, help="tokens to generate and run (default 2048)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--batch", type=int, default=8, help="sequences per forward pass (default 8)")
    p.add_argument("--text", nargs="+", default=None,
                   help="run these texts instead of random token ids (tokenizer of MODEL; with --tiny the "
                        "UTF-8 bytes modulo the vocabulary)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--flush-tokens", type=int, default=None,
                   help="tokens per shard (default 65536; with --counts 2**24 per tables record)")
    p.add_argument("--record-logits", action="store_true",
                   help="also record router logits (with --counts their soft-gate sums are kept anyway)")
    p.add_argument("--counts", action="store_true",
                   help="counts mode: keep only the report's count tables, accumulated on the device, "
                        "instead of every token's routing (infomoe report reads either)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--local-files-only", action="store_true", help="never download (transformers option)")
    p.set_defaults(func=run_export)
    return p


def _batches(args, vocab: int, tokenizer):
    import numpy as np
    import torch

    if args.text:
        if tokenizer is not None:
            enc = tokenizer(list(args.text), return_tensors="pt", padding=True)
            yield enc["input_ids"], enc.get("attention_mask")
            return
        rows = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) % vocab for t in args.text]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):  # left padding, as for generation
            ids[i, width - len(r):] = r
            mask[i, width - len(r):] = 1
        yield torch.from_numpy(ids), torch.from_numpy(mask)
        return
    total, seq_len, batch = args.tokens, args.seq_len, args.batch
    gen = torch.Generator().manual_seed(args.seed)
    done = 0
    while done < total:
        n = min(total - done, seq_len * batch)
        b = max(1, -(-n // seq_len))
        s = min(seq_len, n)
        ids = torch.randint(0, vocab, (b, s), generator=gen)
        yield ids, None
        done += b * s


def _check_arguments(args) -> None:
    """The checks that need neither torch nor the model: they fail in well under a second."""
    from infomoe._validate import check_positive_int
    from infomoe.cli import UsageError, check_output_dir
    from infomoe.logs._manifest import MANIFEST_NAME

    for name in ("tokens", "seq_len", "batch", "flush_tokens"):
        if getattr(args, name) is not None:
            check_positive_int(getattr(args, name), "--" + name.replace("_", "-"))
    if args.tiny is not None and args.model is not None:
        raise UsageError("give either MODEL or --tiny ARCH, not both.")
    if args.tiny is None and args.model is None:
        raise UsageError("MODEL (a Hugging Face id or local path) or --tiny ARCH is required.")
    check_output_dir(args.out)
    if os.path.exists(os.path.join(args.out, MANIFEST_NAME)) and not args.resume:
        raise UsageError(f"--out {args.out!r} already holds a routing log: pass --resume to append "
                         "to it, or choose a new --out directory")
    if args.model is not None and args.model.startswith(("/", "./", "../", "~", ".\\")) \
            and not os.path.isdir(os.path.expanduser(args.model)):
        raise UsageError(f"MODEL {args.model!r} looks like a local path, but there is no such "
                         "directory")


def _check_device(torch, device: str):
    """`device` as a ``torch.device``, or a UsageError when torch cannot use it here."""
    from infomoe.cli import UsageError

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:1, "
                         "mps...") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available (torch {torch.__version__} "
                             f"{'built without CUDA' if torch.version.cuda is None else 'sees no GPU'}); "
                             "use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise UsageError(f"--device {device}: torch sees {n} CUDA device(s), cuda:0 to "
                             f"cuda:{n - 1}")
    elif dev.type not in ("cpu", "meta"):
        backend = getattr(torch.backends, dev.type, None) or getattr(torch, dev.type, None)
        available = getattr(backend, "is_available", None)
        if callable(available) and not available():
            raise UsageError(f"--device {device}: torch has no {dev.type} device here; "
                             "use --device cpu")
    return dev


def _load_model(transformers, args):
    """The Hugging Face model (and tokenizer, with --text); a model that cannot be found is a UsageError."""
    from infomoe.cli import UsageError

    lfo = args.local_files_only
    try:
        cfg = transformers.AutoConfig.from_pretrained(args.model, local_files_only=lfo)
        cls = (transformers.AutoModelForSeq2SeqLM if getattr(cfg, "is_encoder_decoder", False)
               else transformers.AutoModelForCausalLM)
        model = cls.from_pretrained(args.model, local_files_only=lfo).eval()
        tokenizer = None
        if args.text:
            tokenizer = transformers.AutoTokenizer.from_pretrained(args.model, local_files_only=lfo)
    except OSError as exc:  # transformers' "not found / not cached / no connection"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if lfo:
            raise UsageError(f"MODEL {args.model!r} is not in the Hugging Face cache, and "
                             "--local-files-only forbids downloading it: run once without "
                             f"--local-files-only, or give a local directory ({reason})") from None
        raise UsageError(f"cannot load MODEL {args.model!r}: {reason}") from None
    if tokenizer is not None:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
    return model, tokenizer


def run_export(args) -> int:
    """Run the ``export`` subcommand; returns the exit status."""
    from infomoe.cli import UsageError, require_extra

    _check_arguments(args)
    torch = require_extra("torch", "torch", "infomoe export")
    transformers = require_extra("transformers", "torch", "infomoe export")
    device = _check_device(torch, args.device)

    from infomoe.logs.export._hf import tiny_model
    from infomoe.logs.export._torch import RoutingRecorder

    tokenizer = None
    if args.tiny is not None:
        model = tiny_model(args.tiny, seed=args.seed)
        model_id = f"tiny:{args.tiny}"
    else:
        model, tokenizer = _load_model(transformers, args)
        model_id = args.model
    try:
        model = model.to(device)
    except RuntimeError as exc:  # e.g. a device type this torch knows but cannot reach
        raise UsageError(f"--device {args.device}: cannot move the model there "
                         f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})") from None
    vocab = int(model.config.vocab_size)
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    from infomoe._progress import progress_bar

    bar = None
    with RoutingRecorder(model, args.out, mode="counts" if args.counts else "ids", flush_tokens=args.flush_tokens,
                         record_logits=True if args.record_logits else None, model_id=model_id,
                         resume=args.resume) as rec, torch.no_grad():
        # once the log is open: a refused --resume shows no bar
        bar = progress_bar(enabled=True, total=None if args.text else args.tokens, unit="tok", desc="export")
        try:
            for ids, mask in _batches(args, vocab, tokenizer):
                ids = ids.to(args.device)
                kw = {} if mask is None else {"attention_mask": mask.to(args.device)}
                if enc_dec:
                    start = int(getattr(model.config, "decoder_start_token_id", 0) or 0)
                    kw["decoder_input_ids"] = torch.full((ids.shape[0], 1), start, dtype=torch.long,
                                                         device=args.device)
                model(input_ids=ids, **kw)
                bar.update(ids.numel())
        finally:
            if bar is not None:
                bar.close()
    what = "tables record(s) of count tables" if args.counts else "shard(s)"
    print(f"recorded {rec.num_tokens_recorded} tokens x {len(rec.sites)} MoE layers "
          f"({rec.adapter.name}) in {rec.num_shards} {what} -> {args.out}")
    return 0
