"""`hf://` URIs, parsed in one place for `rlspec check`, the plan, and the curate, bench and model jobs.

What: the forms huggingface_hub defines for its `hf://` paths (`HfFileSystem`):

    hf://datasets/ORG/NAME[@REV]   a dataset on the Hub (a data source's `uri`)
    hf://ORG/NAME[@REV]            a model on the Hub (`model.path`, `model.tokenizer`, a teacher)

`@REV` is a branch, tag or commit; a revision with a slash is URL-encoded, as huggingface_hub writes
it (`@refs%2Fpr%2F1`). A source's `revision:` field may say the same thing; `@REV` and a `revision:`
that disagree are an error (which one would the job read?).

For a data source, rlspec's older forms keep working:
- `hf://ORG/NAME` means the dataset ORG/NAME, with a deprecation warning (`rlspec check`, and once
  per URI in the job's log): huggingface_hub reads that form as a *model*, so the spec should say
  `hf://datasets/ORG/NAME`;
- `hf://` followed by a local folder (`hf://./data/saved`, `hf:///abs/folder`, or a name that is a
  folder next to the spec) reads a `save_to_disk` folder or a folder of data files.

Why a module of its own: the compiler (checks, plan, memory estimates) and the jobs must agree on
what a URI names; it imports only the standard library, so the compiler stays light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

SCHEME = "hf://"
_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_REPO_ID = re.compile(rf"^{_PART}(/{_PART})?$")
_PREFIXES = {"datasets": "dataset", "spaces": "space", "models": "model"}


class UriError(ValueError):
    """A `hf://` URI that names nothing rlspec can read; the message says what to write."""


@dataclass(frozen=True)
class HfRef:
    """What a `hf://` URI names. `form`: `hub` (the documented form), `legacy` (a dataset written
    `hf://ORG/NAME`: a local folder of that name if there is one, else the hub dataset), or `folder`
    (a local dataset folder)."""

    kind: Literal["dataset", "model"]
    name: str  # the repo id (ORG/NAME), or the folder
    revision: str | None
    form: Literal["hub", "legacy", "folder"]


def is_hf(uri: str) -> bool:
    return uri.startswith(SCHEME)


def parse_dataset(uri: str, revision: str | None = None) -> HfRef:
    """A data source's `hf://` URI, with the source's `revision:` field (None if not set)."""
    rest = _body(uri)
    first, _, after = rest.partition("/")
    if first in _PREFIXES and after:
        if first != "datasets":
            raise UriError(f"{uri} names a {_PREFIXES[first]} repository, not a dataset; a data source reads "
                           "hf://datasets/ORG/NAME[@REV]")
        name, rev = _repo(uri, after)
        return HfRef("dataset", name, _agree(uri, rev, revision), "hub")
    if rest.startswith((".", "/", "~")) or not _REPO_ID.match(rest.partition("@")[0]):
        if revision is not None:
            raise UriError(f"{uri} is a local dataset folder, which has no revision; for the hub dataset write "
                           "hf://datasets/ORG/NAME@REV")
        return HfRef("dataset", rest, None, "folder")
    name, rev = _repo(uri, rest)
    return HfRef("dataset", name, _agree(uri, rev, revision), "legacy")


def parse_model(uri: str, revision: str | None = None) -> HfRef:
    """A model's `hf://ORG/NAME[@REV]`, with `model.revision` (None if not set)."""
    rest = _body(uri)
    first, _, after = rest.partition("/")
    if first in ("datasets", "spaces") and after:
        raise UriError(f"{uri} names a {_PREFIXES[first]} repository; a model is hf://ORG/NAME[@REV] (or a local "
                       "folder)")
    name, rev = _repo(uri, after if first == "models" and after else rest)
    return HfRef("model", name, _agree(uri, rev, revision, field="model.revision"), "hub")


def hub_model(name: str, revision: str | None) -> tuple[str, str | None]:
    """(repo id, revision) of a hub model written `hf://ORG/NAME[@REV]`, or `ORG/NAME[@REV]` as the
    plan hands it on (a repo id never holds `@`)."""
    ref = parse_model(name if is_hf(name) else SCHEME + name, revision)
    return ref.name, ref.revision


def deprecation(uri: str) -> str:
    """The warning for a dataset written in the legacy form `hf://ORG/NAME`."""
    rest = _body(uri)
    return (f"{uri}: `hf://ORG/NAME` names a model in huggingface_hub's hf:// paths; this form still reads the "
            f"dataset but is deprecated: write hf://datasets/{rest} (or, for a local folder, hf://./{rest})")


def _body(uri: str) -> str:
    if not is_hf(uri):
        raise UriError(f"{uri!r} is not a hf:// URI")
    rest = uri[len(SCHEME):]
    if not rest.strip("/"):
        raise UriError(f"{uri} names no repository; write hf://datasets/ORG/NAME (a dataset) or hf://ORG/NAME "
                       "(a model)")
    return rest


def _repo(uri: str, text: str) -> tuple[str, str | None]:
    """ORG/NAME and the revision from `ORG/NAME[@REV]`; a path inside the repository is refused."""
    repo, at, rev = text.partition("@")
    if at and "/" in rev:
        rev, _, inner = rev.partition("/")
        raise UriError(f"{uri}: a file path inside the repository ({inner!r}) is not supported; name the repository "
                       "(and for a dataset its `config` and `split`), or use a local copy of the file")
    if not _REPO_ID.match(repo):
        extra = " (a path inside the repository is not supported)" if repo.count("/") > 1 else ""
        raise UriError(f"{uri}: {repo!r} is not a repository id ORG/NAME{extra}; letters, digits, `-`, `_` and `.`")
    if at and not rev:
        raise UriError(f"{uri}: nothing after `@`; write a branch, tag or commit, or drop the `@`")
    return repo, unquote(rev) if at else None


def _agree(uri: str, at_rev: str | None, field_rev: str | None, *, field: str = "revision") -> str | None:
    if at_rev is not None and field_rev is not None and at_rev != field_rev:
        raise UriError(f"{uri} pins revision {at_rev!r}, but `{field}` says {field_rev!r}; which one the job "
                       f"would read is ambiguous: keep one of them")
    return at_rev if at_rev is not None else field_rev
