"""`nano2 model`: named configs, size and memory tables, checkpoints, tokenizers and generation."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from nano2.console import make_console
from nano2.contracts.chat import THINK_OPEN
from nano2.errors import Nano2Error

app = typer.Typer(
    help="The Nemotron-H hybrid: configs, sizes, checkpoints, tokenizers, generation.", no_args_is_help=True
)
tokenizer_app = typer.Typer(help="Train or inspect tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@app.command("configs")
def configs() -> None:
    """List the named architectures with their layer counts and parameters."""
    from model.configs import NAMED_CONFIGS
    from model.size import total_params

    table = Table(title="named configs", title_justify="left")
    for col in ("name", "layers", "M / * / -", "hidden", "FFN", "params", "description"):
        table.add_column(col, justify="right" if col in ("layers", "hidden", "FFN", "params") else "left")
    for cfg in NAMED_CONFIGS.values():
        c = cfg.counts()
        table.add_row(
            cfg.name, str(cfg.num_layers), f"{c['mamba']} / {c['attention']} / {c['mlp']}", str(cfg.hidden_size),
            str(cfg.intermediate_size), f"{total_params(cfg) / 1e9:.3f}B" if total_params(cfg) > 1e8
            else f"{total_params(cfg) / 1e6:.2f}M", cfg.description,
        )  # fmt: skip
    make_console().print(table)


@app.command("size")
def size(
    name: str = typer.Argument(..., help="A named config (see `nano2 model configs`) or a checkpoint directory."),
    context: int = typer.Option(131072, "--context", help="Context length in tokens."),
    batch: int = typer.Option(1, "--batch", help="Sequences served at once."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weights / KV / conv dtype (the SSM state stays fp32)."),
    gpu: str = typer.Option("a10g", "--gpu", help="a10g (paper rule, 19.66 GiB), h100, h200 or custom:GIB."),
    meta: bool = typer.Option(True, "--meta/--no-meta", help="Also count on a meta-device model and compare."),
) -> None:
    """Parameters by component and inference memory at a context, batch and dtype, against a GPU budget."""
    from model.io import load_config
    from model.size import (
        COMPONENTS,
        GIB,
        get_gpu,
        inference_memory,
        max_context,
        meta_param_breakdown,
        param_breakdown,
    )

    if context <= 0:
        raise Nano2Error(f"--context: expected a positive number of tokens, got {context}")
    if batch <= 0:
        raise Nano2Error(f"--batch: expected a positive number of sequences, got {batch}")
    cfg = load_config(name)
    budget = get_gpu(gpu)
    longest = max_context(cfg, budget, batch, dtype)
    formula = param_breakdown(cfg)
    counted = meta_param_breakdown(cfg) if meta else None
    console = make_console()
    c = cfg.counts()
    params = Table(
        title=f"{cfg.name}: {cfg.num_layers} layers ({c['mamba']} Mamba-2 / {c['attention']} attention / "
        f"{c['mlp']} MLP), hidden {cfg.hidden_size}, FFN {cfg.intermediate_size}",
        title_justify="left",
    )
    for col in ("component", "parameters (formula)", "meta-device count", "share"):
        params.add_column(col, justify="left" if col == "component" else "right")
    total = sum(formula.values())
    for comp in COMPONENTS:
        params.add_row(
            comp, f"{formula[comp]:,}", "-" if counted is None else f"{counted[comp]:,}", f"{formula[comp] / total:.1%}"
        )
    params.add_row(
        "total", f"{total:,} ({total / 1e9:.3f}B)", "-" if counted is None else f"{sum(counted.values()):,}", ""
    )
    console.print(params)
    if counted is not None and counted != formula:
        raise Nano2Error(f"formula and meta-device counts disagree for {cfg.name}: {formula} vs {counted}")
    mem = inference_memory(cfg, context, batch, dtype)
    table = Table(
        title=f"inference memory at context {context:,}, batch {batch}, {dtype} (SSM state fp32)", title_justify="left"
    )
    table.add_column("part")
    table.add_column("GiB", justify="right")
    for part, value in (
        ("weights", mem.weights),
        (f"KV cache ({c['attention']} attention layers)", mem.kv_cache),
        (f"Mamba conv state ({c['mamba']} layers)", mem.mamba_conv),
        (f"Mamba SSM state ({c['mamba']} layers, fp32)", mem.mamba_ssm),
        ("total", mem.total),
    ):
        table.add_row(part, f"{value / GIB:.3f}")
    console.print(table)
    fits = mem.total <= budget.budget_bytes
    verdict = "fits" if fits else "does not fit"
    console.print(
        f"[bold]{verdict}[/] on {budget.name}: {mem.total / GIB:.2f} GiB of a {budget.budget_gib:.2f} GiB budget "
        f"({budget.note}); longest context that fits at batch {batch}: {longest:,} tokens"
    )


@app.command("init")
def init(
    name: str = typer.Argument(..., help="A named config (see `nano2 model configs`)."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint directory to write."),
    seed: int = typer.Option(0, "--seed"),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="tokenizer.json or a tokenizer directory."),
) -> None:
    """Write a freshly initialised HF checkpoint (config.json + safetensors + manifest)."""
    from model.configs import get_config
    from model.io import build_model, save_checkpoint
    from model.size import total_params

    cfg = get_config(name)
    if tokenizer is not None:
        from model.tokenizer import load_tokenizer

        vocab = load_tokenizer(tokenizer).get_vocab_size()
        if vocab > cfg.vocab_size:
            raise Nano2Error(f"--tokenizer: {vocab:,} tokens do not fit the model's vocab_size {cfg.vocab_size:,}")
    model = build_model(cfg, seed=seed, dtype=dtype)
    save_checkpoint(model, output, cfg, tokenizer_dir=tokenizer, extra={"seed": seed})
    make_console().print(f"wrote {output}: {cfg.name}, {total_params(cfg):,} parameters, {dtype}, seed {seed}")


@app.command("generate")
def generate_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory (with tokenizer files)."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="Prompt text (a user message with --chat)."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the chat template."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    budget: int | None = typer.Option(None, "--thinking-budget", help="Close </think> after this many tokens."),
    grace: int = typer.Option(500, "--grace", help="Hard cut this many tokens after the budget without a newline."),
    fast: bool = typer.Option(True, "--fast/--reference", help="Fast decode path or the transformers cache."),
) -> None:
    """Generate from a checkpoint, optionally with the chat template and a thinking budget."""
    from model.generate import HFDecoder, SamplingParams, generate, make_budget
    from model.io import load_checkpoint
    from model.tokenizer import load_tokenizer, render_chat

    model = load_checkpoint(checkpoint)
    tok = load_tokenizer(checkpoint)
    text = render_chat([{"role": "user", "content": prompt}]) if chat else prompt
    ids = tok.encode(text, add_special_tokens=False).ids
    if fast:
        from model.fast_decode import FastDecoder

        decoder = FastDecoder(model, max_batch=1, max_len=len(ids) + max_new_tokens + 8)
    else:
        decoder = HFDecoder(model)
    rule = make_budget(tok, budget, grace, thinking=text.rstrip().endswith(THINK_OPEN)) if budget is not None else None
    eos = tok.token_to_id("</s>")
    params = SamplingParams(max_new_tokens, temperature, top_p, seed, stop_token_ids=(eos,) if eos is not None else ())
    result = generate(decoder, ids, params, tokenizer=tok, budget=rule)
    console = make_console()
    console.print(result.text, markup=False, highlight=False)
    console.print(
        f"[dim]{len(result.token_ids)} tokens, finish: {result.finish_reason}"
        + (f", thinking tokens {result.thinking_tokens}, forced close: {result.forced_close}" if rule else "")
        + "[/]"
    )


@tokenizer_app.command("train")
def tokenizer_train(
    corpus: list[Path] = typer.Argument(..., help=".jsonl(.gz), .txt or .parquet files."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for tokenizer.json + HF files."),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="Target size; rounded up to --round-to."),
    field: str = typer.Option("text", "--field", help="Text field of JSONL/Parquet rows."),
    limit: int | None = typer.Option(None, "--limit", help="Use at most this many texts."),
    round_to: int = typer.Option(64, "--round-to", help="Round the vocabulary up to a multiple of this."),
    min_frequency: int = typer.Option(2, "--min-frequency"),
) -> None:
    """Train a byte-level BPE with the recipe's chat/reasoning special tokens."""
    from model.tokenizer import CorpusStats, iter_corpus_texts, save_tokenizer, train_bpe
    from nano2.manifest import ArtifactKind, OutputStats, current_command, input_ref, write_manifest

    missing = [str(p) for p in corpus if not p.exists()]
    if missing:
        raise Nano2Error(f"corpus file not found: {missing[0]}")
    stats = CorpusStats()
    texts = iter_corpus_texts(corpus, field=field, limit=limit, stats=stats)
    tok = train_bpe(texts, vocab_size, min_frequency, round_to)
    save_tokenizer(tok, output)
    # a tokenizer is an artifact like any other: what it was trained on, with which settings, by which code
    settings = {"vocab_size": vocab_size, "field": field, "limit": limit, "round_to": round_to}
    write_manifest(
        output,
        kind=ArtifactKind.TOKENIZER,
        name=output.name,
        command=current_command(),
        config={**settings, "min_frequency": min_frequency},
        inputs=[input_ref(p) for p in corpus],
        stats=OutputStats(documents=stats.texts),
        extra={"vocab_size": tok.get_vocab_size(), "files_read": stats.files, "records_skipped": stats.skipped},
    )
    make_console().print(f"wrote {output}: vocab {tok.get_vocab_size():,}, trained on {stats.texts:,} texts")
