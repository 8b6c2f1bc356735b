"""`model` job: put the spec's starting model (and every teacher) into the build folder.

    python -m rlspec.runtime.model --job jobs/model/<id>.json --context context.json

Every later job loads its model from an input folder `<inputs[role]>/model` (weights and
tokenizer), never from a name, so all of them read the same bytes and compute nodes need no
network. This job makes that folder, one of three ways (`config.build.kind`):

- `fetch` of a hub model (`hf://ORG/NAME[@REV]` or `ORG/NAME`, parsed by `rlspec.compiler.uris`):
  downloaded once at its pinned `revision` (through the Hugging Face cache,
  which honours HF_HUB_OFFLINE and HF_HUB_CACHE), then hard-linked (or copied) into `model/`;
  `done.json` records the commit the revision resolved to;
- `fetch` of a local folder: `model/` links to its files (relative paths are relative to the spec's
  folder); a folder that changed since `rlspec compile` is refused, since its fingerprint is in
  the job id;
- with `model.tokenizer` set, that tokenizer replaces the model's own tokenizer files in `model/`;
- `scratch`: offline runs (the quickstart, tests, CI) build a tiny transformers model from a config:
  a byte-level BPE tokenizer trained here on the warm-up corpus (with Qwen2's pre-tokenizer, see
  `tinymodel`), random weights from the spec seed, and a short supervised warm-up on worked
  examples so the policy starts out writing answers in the right format (`...</think>\\n\\boxed{..}`
  / a python block). The warm-up trains only on the response tokens.

Output: `<output_dir>/model/`, `warmup.jsonl` (scratch: loss per step), and `done.json`, written last.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rlspec.compiler.hashing import folder_fingerprint
from rlspec.compiler.jobs import FetchBuild, ModelName, ScratchBuild
from rlspec.compiler.uris import UriError, hub_model
from rlspec.runtime.atomic import replace_dir_atomic, temp_path, write_json_atomic
from rlspec.runtime.job import Job, JobError, load_job, parse_args, spec_dir

# Files a tokenizer may be saved as; with `model.tokenizer` set they are replaced by its own.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "added_tokens.json", "chat_template.jinja", "chat_template.json")


class ModelJobError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args("model", argv)
    try:
        job = load_job(args.job, "model", args.context)
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        build = job.config.build
        summary = fetch(build, out, spec_dir(job)) if isinstance(build, FetchBuild) else from_scratch(job, build, out)
        write_json_atomic(out / "done.json", summary)
    except (JobError, ModelJobError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------- fetch


def fetch(build: FetchBuild, out: Path, root: Path | None) -> dict[str, Any]:
    """`model/` from a hub model or a local folder, with the tokenizer override applied."""
    tmp = _fresh_tmp(out)
    source, resolved = locate(build.model, root)
    link_files(source, tmp, copy=build.model.kind == "hub")
    if build.tokenizer is not None:
        tok_source, _ = locate(build.tokenizer, root)
        replace_tokenizer(tmp, tok_source)
    _commit(tmp, out / "model")
    print(f"model {build.model.name} ({resolved}) -> {out / 'model'}", flush=True)
    return {"model": "model", "source": build.model.kind, "name": build.model.name, "resolved": resolved,
            "tokenizer": build.tokenizer.name if build.tokenizer else None}


def locate(ref: ModelName, root: Path | None) -> tuple[Path, str]:
    """The folder holding `ref`'s files, and what it resolved to (a commit, or the folder)."""
    if ref.kind == "local":
        path = Path(ref.name).expanduser()
        path = path if path.is_absolute() or root is None else root / path
        if not path.is_dir():
            raise ModelJobError(f"local model folder {path} does not exist")
        now = folder_fingerprint(path)
        if now != ref.fingerprint:
            raise ModelJobError(f"local model folder {path} changed since `rlspec compile` (fingerprint {now} vs "
                                f"{ref.fingerprint}); recompile so that the jobs that use it rerun")
        return path.resolve(), str(path.resolve())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    try:
        repo, revision = hub_model(ref.name, ref.revision)  # `hf://ORG/NAME@REV` or `ORG/NAME`
    except UriError as exc:
        raise ModelJobError(str(exc)) from None
    try:
        path = Path(snapshot_download(repo_id=repo, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelJobError(f"cannot fetch hub model {repo!r} at revision {revision or 'main'} "
                            f"({type(exc).__name__}: {exc}); on a machine without network, put it in the "
                            "Hugging Face cache first (HF_HUB_CACHE) or name a local folder") from None
    return path, path.name  # a snapshot folder is named by its commit


def link_files(source: Path, target: Path, *, copy: bool) -> None:
    """Every file of `source` under `target`: hub snapshots are hard-linked (or copied across
    file systems), so the build folder holds the bytes; local folders are symlinked."""
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        dst = target / src.relative_to(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        real = src.resolve()
        if not copy:
            dst.symlink_to(real)
            continue
        try:
            os.link(real, dst)
        except OSError:
            shutil.copy2(real, dst)


def replace_tokenizer(model: Path, tokenizer_source: Path) -> None:
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except (OSError, ValueError) as exc:
        raise ModelJobError(f"cannot load the tokenizer {tokenizer_source} ({type(exc).__name__}: {exc})") from None
    for name in TOKENIZER_FILES:
        (model / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(model)


def _fresh_tmp(out: Path) -> Path:
    tmp = temp_path(out / "model")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _commit(tmp: Path, final: Path) -> None:
    replace_dir_atomic(tmp, final)


# ------------------------------------------------------------------------------------------- scratch


def from_scratch(job: Job, build: ScratchBuild, out: Path) -> dict[str, Any]:
    examples = warmup_examples(build, spec_dir(job))
    model, tokenizer = build_model(build, examples)
    losses = warm_up(model, tokenizer, examples, build)
    save(model, tokenizer, out)
    (out / "warmup.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": v}) + "\n"
                                              for i, v in enumerate(losses)))
    return {"model": "model", "source": "scratch", "parameters": sum(p.numel() for p in model.parameters()),
            "vocab": len(tokenizer), "warmup_steps": len(losses),
            "warmup_loss_first": losses[0] if losses else None, "warmup_loss_last": losses[-1] if losses else None}


def warmup_examples(build: ScratchBuild, root: Path | None) -> list[dict[str, Any]]:
    """(prompt text, response text) pairs from the warm-up sources, prompts rendered as the policy
    sees them (with `use_chat_template`, through the chat template the tiny tokenizer will carry)."""
    from rlspec.runtime.data.builtin import generate
    from rlspec.runtime.data.records import field_value
    from rlspec.runtime.prompts import render_prompt
    from rlspec.runtime.scoring import record_domain
    from rlspec.runtime.tinymodel import ChatTemplate
    chat = ChatTemplate()
    out = []
    for i, source in enumerate(build.warmup.sources):
        if source.uri.startswith("builtin://"):
            rows = generate(source.uri)
        else:
            from rlspec.runtime.data.sources import read_source
            rows = read_source(source, "math", spec_dir=root,  # validates the source and mapping
                               place=f"model.from_scratch.warmup.sources[{i}]")
        for row in rows:
            # a local file's `response` column lands in the record's meta; a generator's is a column
            response = field_value(row, "response")
            if not isinstance(response, str) or not response:
                raise ModelJobError(f"warm-up source {source.uri}: records need a `response` (a worked answer); "
                                    "for builtin generators add `worked=true` to the URI")
            domain = record_domain(row)
            out.append({"prompt": render_prompt(row, domain, build.prompt, chat), "response": response})
    if not out:
        raise ModelJobError("the warm-up sources gave no examples")
    random.Random(build.seed).shuffle(out)
    return out


def build_model(build: ScratchBuild, examples: list[dict[str, Any]]):
    """Tokenizer trained on the warm-up corpus, then a randomly initialised model of the spec's shape."""
    from rlspec.runtime import tinymodel
    corpus = [e["prompt"] + e["response"] + tinymodel.EOS_TOKEN for e in examples[: build.tokenizer.corpus_size]]
    tokenizer = tinymodel.train_tokenizer(corpus, build.tokenizer.vocab_size)
    arch = build.architecture
    shape = tinymodel.TinyModelConfig(family=arch.family, hidden=arch.hidden_size, layers=arch.num_layers,
                                      heads=arch.num_heads, kv_heads=arch.num_kv_heads, ffn=arch.intermediate_size,
                                      vocab=build.tokenizer.vocab_size, max_positions=build.max_context,
                                      tie_embeddings=arch.tie_word_embeddings, seed=build.seed)
    return tinymodel.build_model(tokenizer, shape), tokenizer


def warm_up(model, tokenizer, examples: list[dict[str, Any]], build: ScratchBuild) -> list[float]:
    """Supervised fine-tuning on the responses (prompt tokens are context only)."""
    import torch
    w = build.warmup
    if w.steps == 0:
        return []
    torch.manual_seed(build.seed)
    rows = [_encode(tokenizer, e, w.max_tokens) for e in examples]
    rows = [r for r in rows if r is not None]
    opt = torch.optim.AdamW(model.parameters(), lr=w.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / w.steps))
    order = random.Random(build.seed + 1)
    losses, t0 = [], time.perf_counter()
    model.train()
    for step in range(w.steps):
        batch = [rows[order.randrange(len(rows))] for _ in range(w.batch_size)]
        ids, labels, attn = _collate(batch, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step % 25 == 0 or step == w.steps - 1:
            print(f"warm-up step {step + 1}/{w.steps} loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
    model.eval()
    return losses


def _encode(tokenizer, example: dict[str, Any], max_tokens: int):
    prompt = tokenizer(example["prompt"], add_special_tokens=False)["input_ids"]
    response = tokenizer(example["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + response)[:max_tokens]
    if len(prompt) >= len(ids):
        return None  # the response would be cut away entirely
    return ids, len(prompt)


def _collate(batch, pad_id: int):
    import torch
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (seq, p) in enumerate(batch):
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, p:len(seq)] = torch.tensor(seq[p:])
        attn[row, :len(seq)] = 1
    return ids, labels, attn


def save(model, tokenizer, out: Path) -> None:
    """Write `model/` atomically (temporary folder, then rename)."""
    from rlspec.runtime.tinymodel import save_model
    tmp = _fresh_tmp(out)
    save_model(model, tokenizer, tmp)
    (tmp / "rlspec.json").write_text(json.dumps({"built_by": "rlspec.runtime.model"}) + "\n")
    _commit(tmp, out / "model")


if __name__ == "__main__":
    sys.exit(main())
