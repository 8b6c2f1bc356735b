"""`rlspec run --profile local` refuses jobs of several nodes: a train job's torchrun per node and an
inference job's replicas on other nodes start through srun in a Slurm allocation, and the local
profile would start them all on this machine. The refusal is located at the `nodes` that asks."""

from __future__ import annotations

import pytest

from rlspec.compiler.cli import refuse_multi_node_locally
from rlspec.compiler.errors import SpecError
from rlspec.compiler.validate import check_file

from conftest import MINI


@pytest.mark.parametrize("block, kind", [("  bench: {gpus: 1, nodes: 2}\n", "bench"),
                                         ("  sample: {gpus: 1, nodes: 2}\n", "sample"),
                                         ("  train: {gpus: 1, nodes: 2}\n", "train")])
def test_a_multi_node_job_is_refused_locally_at_its_nodes(write_spec, block, kind):
    text = MINI + "resources:\n" + block
    path = write_spec(text)
    checked = check_file(path, display="spec.yaml")
    with pytest.raises(SpecError) as err:
        refuse_multi_node_locally(str(path), checked, "local")
    issue = err.value.issues[0]
    assert issue.path == ("resources", kind, "nodes")
    assert issue.loc is not None and issue.loc.line == text.splitlines().index(block.rstrip("\n")) + 1
    assert f"2 nodes per {kind} job need Slurm" in issue.message
    refuse_multi_node_locally(str(path), checked, "slurm")  # the Slurm profile takes it


def test_one_node_jobs_run_locally(write_spec):
    path = write_spec(MINI + "resources:\n  bench: {gpus: 2}\n")
    refuse_multi_node_locally(str(path), check_file(path, display="spec.yaml"), "local")
