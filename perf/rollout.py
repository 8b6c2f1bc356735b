"""Benchmark: rollout throughput of our engines against the bare libraries they wrap.

What: generated tokens per second for one workload (default 64 prompts x n=4 x 128 new tokens,
temperature 1, fixed lengths, per-token log-probs of the sampled tokens) on four paths:
  - bare vLLM: `LLM.generate` with the same SamplingParams our wrapper builds (flat processed
    log-probs, no detokenisation), on the very `LLM` instance our engine holds;
  - our `vllm` engine: `Engine.generate` (adds prompt checks, RNG isolation, text decoding);
  - bare transformers: `model.generate(do_sample=True, output_scores=True)` on one left-padded
    batch, then log-softmax of the scores to get the sampled tokens' log-probs;
  - our `hf` engine: `Engine.generate` on the same model, same single batch.
Why: the issue's goals: wrapper overhead <= 5% for each engine, and vLLM vs HF (~1.5x measured
on this CPU). Ratios are only meaningful within one run, so all paths run here, interleaved.
How: `python perf/rollout.py [--prompts 64 --n 4 --max-tokens 128 --repeats 8]`; prints a table,
writes perf/results/rollout.json. Uses a tiny model built locally unless `--model DIR`.
Set OMP_NUM_THREADS yourself (the CPU is shared; the JSON records it and the load average).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import torch

from rlspec.runtime import tinymodel
from rlspec.compiler.jobs import EngineSettings
from rlspec.runtime.rollout import SamplingParams, make_engine

RESULTS = Path(__file__).resolve().parent / "results" / "rollout.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="HF model folder (default: build the tiny model)")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def settings(engine: str, rows: int) -> EngineSettings:
    return EngineSettings.model_validate({
        "engine": engine, "max_prompt_tokens": 256,
        "vllm": {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.5,
                 "kv_cache_memory_bytes": 256 << 20, "enforce_eager": True, "max_num_seqs": rows,
                 "pipeline_parallel_size": 1, "quantization": None},
        "hf": {"batch_size": rows}})


def make_prompts(tokenizer, count: int) -> list[list[int]]:
    questions = [text.split("<|im_end|>")[0].split("user\n")[1] for text in tinymodel.arithmetic_corpus(count, seed=1)]
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in questions]
    return [tokenizer(c, add_special_tokens=False)["input_ids"] for c in chats]


# --- the four paths; each returns the number of generated tokens --------------------------------


def bare_vllm(engine, prompts, sampling: SamplingParams) -> int:
    params = engine.sampling_params(1, sampling)[0]
    outputs = engine.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    results = [(list(c.token_ids), list(c.logprobs.logprobs), c.finish_reason) for o in outputs for c in o.outputs]
    return sum(len(ids) for ids, _, _ in results)


@torch.inference_mode()
def bare_hf(engine, prompts, sampling: SamplingParams) -> int:
    rows = [p for p in prompts for _ in range(sampling.n)]
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[engine.pad_id] * (width - len(r)) + r for r in rows])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(r) for r in rows])[:, None]).long()
    out = engine.model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                                top_p=1.0, max_new_tokens=sampling.max_tokens, min_new_tokens=sampling.max_tokens,
                                pad_token_id=engine.pad_id, output_scores=True, return_dict_in_generate=True)
    tokens = out.sequences[:, width:]
    logprobs = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1).gather(-1, tokens[..., None])
    results = list(zip(tokens.tolist(), logprobs.squeeze(-1).tolist()))
    return sum(len(ids) for ids, _ in results)


def ours(engine, prompts, sampling: SamplingParams) -> int:
    return engine.generate(prompts, sampling).timing.generated_tokens


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn(*args)
    return time.perf_counter() - start, tokens


def run(paths: dict, prompts, sampling: SamplingParams, repeats: int) -> dict[str, dict]:
    """Interleave the paths (load on the shared CPU then hits all alike); best and median tok/s."""
    for fn, engine in paths.values():  # warm-up: vLLM compiles its sampler helpers on first use
        fn(engine, prompts[:4], sampling)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    expected = len(prompts) * sampling.n * sampling.max_tokens
    for rep in range(repeats):
        # alternate the order, so a drift in background load favours no path
        for name, (fn, engine) in (list(paths.items()) if rep % 2 == 0 else reversed(paths.items())):
            seconds, tokens = timed(fn, engine, prompts, sampling)
            assert tokens == expected, f"{name}: {tokens} tokens, expected {expected}"
            samples[name].append(tokens / seconds)
    return {name: {"best": max(v), "median": statistics.median(v), "all": v} for name, v in samples.items()}


def table(results: dict[str, dict]) -> list[dict]:
    comparisons = [
        ("our vllm engine vs bare vLLM", "ours_vllm", "bare_vllm", "overhead <= 5% (ratio >= 0.95)"),
        ("our hf engine vs bare generate", "ours_hf", "bare_hf", "overhead <= 5% (ratio >= 0.95)"),
        ("vLLM vs HF (our engines)", "ours_vllm", "ours_hf", "~1.5x measured on this CPU"),
        ("vLLM vs HF (bare)", "bare_vllm", "bare_hf", "~1.5x measured on this CPU"),
    ]
    return [{"comparison": title, "ours": a, "theirs": b, "goal": goal,
             "ours_tok_s": results[a]["best"], "theirs_tok_s": results[b]["best"],
             "ratio_best": results[a]["best"] / results[b]["best"],
             "ratio_median": results[a]["median"] / results[b]["median"]} for title, a, b, goal in comparisons]


def print_table(rows: list[dict], results: dict[str, dict]) -> None:
    print(f"{'path':<12}{'best tok/s':>12}{'median tok/s':>14}")
    for name, r in results.items():
        print(f"{name:<12}{r['best']:>12.0f}{r['median']:>14.0f}")
    print(f"\n{'comparison':<34}{'ours':>9}{'theirs':>9}{'ratio (best)':>14}{'(median)':>10}  goal")
    for r in rows:
        print(f"{r['comparison']:<34}{r['ours_tok_s']:>9.0f}{r['theirs_tok_s']:>9.0f}"
              f"{r['ratio_best']:>14.3f}{r['ratio_median']:>10.3f}  {r['goal']}")


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tinymodel.build_tiny_model(Path(tmp) / "tiny")
        rows = args.prompts * args.n
        common = dict(dtype="float32", seed=0, max_model_len=1024)
        vllm = make_engine(model, settings("vllm", rows), **common)
        hf = make_engine(model, settings("hf", rows), **common)
        prompts = make_prompts(hf.tokenizer, args.prompts)
        sampling = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=args.max_tokens,
                                  ignore_eos=True)
        paths = {"bare_vllm": (bare_vllm, vllm), "ours_vllm": (ours, vllm),
                 "bare_hf": (bare_hf, hf), "ours_hf": (ours, hf)}
        results = run(paths, prompts, sampling, args.repeats)
        vllm.close()
    rows_out = table(results)
    print_table(rows_out, results)
    headline = rows_out[0]
    report = {
        "peer": "bare vLLM LLM.generate (same LLM instance and SamplingParams)",
        "ours": headline["ours_tok_s"], "theirs": headline["theirs_tok_s"], "unit": "generated tokens/s (best of repeats)",
        "ratio": headline["ratio_best"], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows_out, "paths": results,
        "workload": {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "temperature": 1.0,
                     "logprobs": "sampled token, processed", "dtype": "float32", "repeats": args.repeats,
                     "model": "tiny Qwen2 (hidden 128, 2 layers)" if args.model is None else str(args.model)},
        "machine": {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
                    "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(), "python": sys.version.split()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
