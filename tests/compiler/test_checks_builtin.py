"""`builtin://` URI parameters are checked by `rlspec check`, at the URI's line, with the very parser
the data generator uses (`rlspec.compiler.builtin_params.parse_uri`), in every place a source
can stand: datasets, benchmarks and the from-scratch warm-up corpus.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlspec.compiler.cli import main
from rlspec.compiler import builtin_params
from rlspec.runtime.data import builtin

from conftest import MINI, REPO

SCRATCH = MINI.replace("  path: org/model\n", """\
  from_scratch:
    warmup:
      sources:
        - uri: builtin://math?n=50&worked=true
""")


def check(path, capsys) -> tuple[int, str]:
    rc = main(["check", str(path)])
    return rc, capsys.readouterr().err


def error_at(err: str, path, line: int, dotted: str) -> str:
    prefix = f"{path}:{line}:"
    hits = [x for x in err.splitlines() if x.startswith(prefix) and f" {dotted}: " in x]
    assert hits, f"no message for {dotted} at line {line} in:\n{err}"
    return hits[0].split(f" {dotted}: ", 1)[1]


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


@pytest.mark.parametrize("old,new,dotted", [
    ("builtin://math?n=100", "builtin://math?n=100&dificulty=2", "datasets.math.sources[0].uri"),
    ("builtin://math?n=20&split=test", "builtin://math?n=20&split=tset", "benchmarks.held.source.uri"),
    ("builtin://math?n=50&worked=true", "builtin://math?n=0&worked=true",
     "model.from_scratch.warmup.sources[0].uri"),
])
def test_bad_parameter_is_an_error_at_the_uri(write_spec, capsys, old, new, dotted):
    text = SCRATCH.replace(old, new, 1)
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    message = error_at(err, path, line_of(text, new), dotted)
    # one implementation: the compiler says exactly what the generator would raise when the job runs
    with pytest.raises(builtin_params.BuiltinError) as raised:
        builtin.generate(new)
    assert raised.value.problem in message


@pytest.mark.parametrize("uri,fragments", [
    ("builtin://math?dificulty=2", ["unknown parameter(s) ['dificulty']", "did you mean 'difficulty'?", "valid: "]),
    ("builtin://math?zzz=2", ["unknown parameter(s) ['zzz']; valid: "]),  # nothing close: no guess
    ("builtin://math?split=tset", ["did you mean 'test'?", "use one of ['train', 'test']"]),
    ("builtin://math?difficulty=7", ["difficulty=7 is outside [1, 5]", "1 (one step, small numbers)"]),
    ("builtin://math?n=lots", ["n='lots' is not an integer", "write e.g. n=100"]),
    ("builtin://math?tasks=chian", ["unknown task(s) ['chian']", "did you mean 'chain'?"]),
    ("builtin://maths", ["unknown builtin generator", "did you mean 'math'?"]),
    ("builtin://math?n=3&n=4", ["n= is given 2 times (3, 4); keep one"]),
])
def test_messages_say_what_to_write(uri, fragments):
    with pytest.raises(builtin_params.BuiltinError) as raised:
        builtin_params.parse_uri(uri)
    for fragment in fragments:
        assert fragment in raised.value.problem, raised.value.problem
    assert ("did you mean" in raised.value.problem) == any("did you mean" in f for f in fragments)


def test_benchmark_on_the_training_split_warns(write_spec, capsys):
    text = MINI.replace("builtin://math?n=20&split=test", "builtin://math?n=20")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 0
    assert "warning: this benchmark reads the `train` split" in error_at(
        err, path, line_of(text, "builtin://math?n=20"), "benchmarks.held.source.uri")


def test_task_names_match_the_generator():
    for kind in builtin_params.KINDS:
        assert builtin_params.TASKS[kind] == builtin.task_names(kind), kind


def test_check_loads_nothing_of_the_runtime():
    code = ("import sys\nfrom rlspec.compiler.cli import main\n"
            "assert main(['check', 'specs/quickstart.yaml']) == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith('rlspec.runtime')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"


def test_decontamination_extra_files_are_checked_too(write_spec, capsys):
    """`extra_files` are read like sources, so a `builtin://` one is parsed the same way."""
    text = MINI.replace("      - kind: decontaminate\n",
                        "      - kind: decontaminate\n        extra_files: ['builtin://math?split=tets']\n")
    path = write_spec(text)
    rc, err = check(path, capsys)
    assert rc == 1
    msg = error_at(err, path, line_of(text, "split=tets"), "datasets.math.filters[1].extra_files[0]")
    assert "split='tets' (did you mean 'test'?)" in msg
