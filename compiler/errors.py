"""Located spec problems: every error or warning points at `file:line:col dotted.path`.

The compiler never lets a traceback reach the user for bad input. Every problem found while
loading, validating or expanding a spec becomes an `Issue`; they are collected, sorted by file and
line, and raised together as one `SpecError` so the user sees all of them at once.

The wording helpers live here too, so every message shows values, examples and guesses the same
way: `suggest` (a "did you mean" only for a close spelling), `show` (the value the user wrote),
`yaml_value` / `snippet` (what to write instead, as YAML that reads back as the right type), and
`FOREIGN_KEYS`: keys spelled the way veRL, TRL or OpenRLHF spell them, pointing at rlspec's name.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")

# A path into the spec as the user wrote it: ("stages", 1, "max_response_tokens").
Path = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Loc:
    """Where a value (or key) stands in a YAML file. Lines and columns are 1-based."""

    file: str
    line: int
    col: int


@dataclass(frozen=True)
class Issue:
    path: Path
    message: str
    loc: Loc | None = None
    severity: Literal["error", "warning"] = "error"

    def render(self) -> str:
        where = "<spec>"
        if self.loc is not None:  # a command-line override (`--set #2`) has no line to point at
            where = self.loc.file if self.loc.line == 0 else f"{self.loc.file}:{self.loc.line}:{self.loc.col}"
        dotted = dotted_path(self.path) or "<root>"
        tag = "" if self.severity == "error" else "warning: "
        return f"{where} {dotted}: {tag}{self.message}"

    def sort_key(self) -> tuple:
        loc = self.loc or Loc("~", 0, 0)
        return (loc.file, loc.line, loc.col, dotted_path(self.path), self.message)


@dataclass
class SpecError(Exception):
    """One or more located errors in a spec (warnings ride along so they are not lost)."""

    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    def render(self) -> str:
        return "\n".join(i.render() for i in sorted(self.issues, key=Issue.sort_key))


def dotted_path(path: Path) -> str:
    """("stages", 1, "max_response_tokens") -> "stages[1].max_response_tokens"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{str(part)!r}]"  # a key with spaces or control characters, shown unambiguously
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_dotted(text: str) -> Path:
    """Inverse of `dotted_path`: "stages[1].max_response_tokens" -> ("stages", 1, "max_response_tokens").

    Raises ValueError on malformed text (empty parts, unbalanced brackets). A bracketed part that is
    not an integer is kept as a string (a stage or dataset *name*: `stages[math-8k]`).
    """
    parts: list[str | int] = []
    for chunk in text.split("."):
        if not chunk:
            raise ValueError(f"empty part in path {text!r}")
        head, _, rest = chunk.partition("[")
        if head:
            parts.append(head)
        elif not rest:
            raise ValueError(f"empty part in path {text!r}")
        while rest:
            inner, sep, rest = rest.partition("]")
            if not sep or not inner:
                raise ValueError(f"unbalanced or empty [] in path {text!r}")
            parts.append(int(inner) if inner.lstrip("-").isdigit() else inner)
            if rest:
                if not rest.startswith("["):
                    raise ValueError(f"unexpected text after ] in path {text!r}")
                rest = rest[1:]
    return tuple(parts)


# ------------------------------------------------------------------------------------------
# wording
# ------------------------------------------------------------------------------------------

# difflib similarity (2 * matches / total length) a guess must reach: typos score high
# ('temprature' -> 'temperature' 0.95, 'grup_size' -> 'group_size' 0.95, 'lenght' -> 'length' 0.83),
# unrelated keys that share letters do not ('stop' -> 'top_p' 0.67, 'bench' -> 'benchmarks' 0.67).
SUGGEST_CUTOFF = 0.75


def suggest(word: str, options) -> str:
    """` (did you mean 'x'?)` for a close spelling among `options`, else ``."""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=SUGGEST_CUTOFF)
    return f" (did you mean {close[0]!r}?)" if close else ""


def yaml_value(value: Any) -> str:
    """A value as YAML that reads back as the same type: floats keep a dot before the exponent
    (YAML 1.1 reads `1e-6` as text, `1.0e-6` as a number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            mantissa += ".0"
        return mantissa + (f"e{int(exponent)}" if e else "")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_value(str(k))}: {yaml_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][\w./@+-]*", text) and text.lower() not in _YAML_WORDS:
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # a message line must stay one line: escape the rest
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in quoted)


_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def show(value: Any, limit: int = 40) -> str:
    """How a message names the value the user wrote: `a map {a: 1}`, `the text 'fast'`, `0`."""
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) <= limit else f"a text of {len(value)} characters"
    text = yaml_value(value)
    if len(text) > limit:
        text = text[: limit - 4] + " ...]" if isinstance(value, (list, tuple)) else text[: limit - 4] + " ...}"
    if isinstance(value, dict):
        return f"a map {text}"
    if isinstance(value, (list, tuple)):
        return f"a list {text}"
    return text


def snippet(relative: str, value: Any) -> str:
    """`kl.coef` + 0.1 -> `kl: {coef: 0.1}`: a dotted path written as one line of YAML."""
    parts = relative.split(".")
    shown = yaml_value(value) if not isinstance(value, (dict, list)) or len(yaml_value(value)) <= 30 else "..."
    text = f"{parts[-1]}: {shown}"
    for part in reversed(parts[:-1]):
        text = f"{part}: {{{text}}}"
    return text


# ------------------------------------------------------------------------------------------
# keys as other RL frameworks spell them
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Foreign:
    """A key another framework uses: rlspec's path for it (`stages[*].` = set in each stage), or,
    when rlspec has no such setting, a note saying what to do instead."""

    origin: str
    target: str = ""
    note: str = ""
    unless_under: frozenset[str] = frozenset()  # models where the word means something else
    only_under: frozenset[str] = frozenset()


def _f(origin: str, target: str = "", note: str = "", unless: tuple = (), only: tuple = ()) -> Foreign:
    return Foreign(origin, target, note, frozenset(unless), frozenset(only))


_GROUP = "stages[*].group_size"
_PROMPTS = "stages[*].prompts_per_step"
_RESPONSE = "stages[*].max_response_tokens"
FOREIGN_KEYS: dict[str, Foreign] = {
    "kl_loss_coef": _f("veRL", "algorithm.kl.coef"),
    "kl_coef": _f("veRL", "algorithm.kl.coef"),
    "init_kl_coef": _f("OpenRLHF", "algorithm.kl.coef"),
    "beta": _f("TRL", "algorithm.kl.coef", unless=("Optimizer",)),
    "use_kl_loss": _f("veRL", note="rlspec has no switch for it: the KL loss is on exactly when `algorithm.kl.coef` "
                      "> 0 (0 loads no reference model); remove the key and set the coefficient"),
    "use_kl_in_reward": _f("veRL", note="rlspec applies KL only as a loss term (`algorithm.kl.coef`), never in the "
                           "reward; remove the key"),
    "kl_loss_type": _f("veRL", "algorithm.kl.estimator"),
    "kl_estimator": _f("OpenRLHF", "algorithm.kl.estimator"),
    "clip_ratio_c": _f("veRL", "algorithm.clip.dual"),
    "clip_ratio": _f("veRL", note="rlspec clips each side on its own: set `algorithm.clip.low` and "
                     "`algorithm.clip.high` (DAPO: 0.2 and 0.28)"),
    "clip_ratio_low": _f("veRL", "algorithm.clip.low"),
    "clip_ratio_high": _f("veRL", "algorithm.clip.high"),
    "epsilon": _f("TRL", "algorithm.clip.low", unless=("Optimizer", "Advantage")),
    "epsilon_low": _f("TRL", "algorithm.clip.low"),
    "epsilon_high": _f("TRL", "algorithm.clip.high"),
    "eps_clip": _f("OpenRLHF", "algorithm.clip.low"),
    "ppo_mini_batch_size": _f("veRL", "algorithm.mini_batch_size"),
    "ppo_micro_batch_size": _f("veRL", "algorithm.micro_batch_size"),
    "ppo_micro_batch_size_per_gpu": _f("veRL", "algorithm.micro_batch_size"),
    "micro_train_batch_size": _f("OpenRLHF", "algorithm.micro_batch_size"),
    "per_device_train_batch_size": _f("TRL", "algorithm.micro_batch_size"),
    "n": _f("veRL", _GROUP, only=("Rollout",)),
    "num_generations": _f("TRL", _GROUP),
    "n_samples_per_prompt": _f("OpenRLHF", _GROUP),
    "train_batch_size": _f("veRL", _PROMPTS),
    "rollout_batch_size": _f("OpenRLHF", _PROMPTS),
    "ppo_epochs": _f("veRL", "algorithm.updates_per_batch"),
    "num_iterations": _f("TRL", "algorithm.updates_per_batch"),
    "response_length": _f("veRL", _RESPONSE),
    "max_response_length": _f("veRL", _RESPONSE),
    "max_completion_length": _f("TRL", _RESPONSE),
    "generate_max_len": _f("OpenRLHF", _RESPONSE),
    "max_tokens": _f("vLLM", _RESPONSE, unless=("Warmup",)),
    "max_prompt_length": _f("veRL/TRL", "rollout.max_prompt_tokens"),
    "prompt_max_len": _f("OpenRLHF", "rollout.max_prompt_tokens"),
    "learning_rate": _f("TRL", "algorithm.optimizer.lr"),
    "actor_lr": _f("veRL", "algorithm.optimizer.lr"),
    "actor_learning_rate": _f("OpenRLHF", "algorithm.optimizer.lr"),
    "entropy_coeff": _f("veRL", "algorithm.entropy_coef"),
    "loss_agg_mode": _f("veRL", "algorithm.loss_agg"),
    "loss_type": _f("TRL", "algorithm.loss_agg", note="rlspec's `algorithm.loss_agg`: TRL's `grpo` is "
                    "`seq_mean_token_mean`, `dr_grpo` is `seq_mean_token_sum_norm`, `dapo`/`bnpo` are `token_mean`"),
    "tensor_model_parallel_size": _f("veRL", "rollout.vllm.tensor_parallel_size"),
    "vllm_tensor_parallel_size": _f("TRL", "rollout.vllm.tensor_parallel_size"),
    "vllm_gpu_memory_utilization": _f("TRL", "rollout.vllm.gpu_memory_utilization"),
    "total_epochs": _f("veRL", "stages[*].epochs"),
    "num_train_epochs": _f("TRL", "stages[*].epochs"),
    "total_training_steps": _f("veRL", "stages[*].steps"),
    "max_steps": _f("TRL", "stages[*].steps"),
    "max_grad_norm": _f("TRL", "algorithm.optimizer.grad_clip"),
    "lr_warmup_steps": _f("veRL", "algorithm.optimizer.warmup_steps", note="rlspec's `algorithm.optimizer.warmup_steps`; "
                          "veRL counts it in batches (train steps): add `warmup_unit: batches`"),
    "target_entropy": _f("Skywork-OR1", "algorithm.adaptive_entropy.target"),
    "tgt_entropy": _f("Skywork-OR1", "algorithm.adaptive_entropy.target"),
    "delta_ent_coef": _f("Skywork-OR1", "algorithm.adaptive_entropy.step"),
    "max_ent_coef": _f("Skywork-OR1", "algorithm.adaptive_entropy.max_coef"),
    "min_ent_coef": _f("Skywork-OR1", "algorithm.adaptive_entropy.min_coef"),
    "gen_batch_size": _f("veRL", "algorithm.dynamic_sampling.generation_batch_size"),
    "max_num_gen_batches": _f("veRL", "algorithm.dynamic_sampling.max_rounds"),
    "lr_scheduler_type": _f("TRL", "algorithm.optimizer.schedule"),
    "norm_adv_by_std_in_grpo": _f("veRL", "algorithm.advantage.normalize_std"),
    "scale_rewards": _f("TRL", "algorithm.advantage.normalize_std"),
    "adv_estimator": _f("veRL", note="rlspec trains with the GRPO group advantage only (reward minus the group "
                        "mean, see `algorithm.advantage`); remove the key"),
    "mask_truncated_completions": _f("TRL", note="rlspec's `algorithm.overlong.kind: mask` excludes truncated "
                                     "responses from the loss"),
    "model_name_or_path": _f("TRL", "model.path"),
    "pretrain": _f("OpenRLHF", "model.path"),
    "save_freq": _f("veRL", "algorithm.checkpoint_every"),
    "save_steps": _f("TRL", "algorithm.checkpoint_every"),
    "n_gpus_per_node": _f("veRL", "resources.train.gpus"),
    "nnodes": _f("veRL", "resources.train.nodes"),
}


def foreign_hint(key: str, model: str | None) -> Foreign | None:
    """The FOREIGN_KEYS entry for an unknown `key` under the model class named `model`, if any.
    A dotted key (`actor.ppo_mini_batch_size`, as veRL's overrides write them) is looked up by its
    last part."""
    entry = FOREIGN_KEYS.get(key.rsplit(".", 1)[-1])
    if entry is None or model in entry.unless_under or (entry.only_under and model not in entry.only_under):
        return None
    return entry
