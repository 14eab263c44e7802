"""What the tests (and the benchmarks) share: callers, fakes at our seams, the Live
API double, impaired links, speech. Importable as `tests.support` from the repository
root (pytest's rootdir, `python -m bench.<name>`), with no `sys.path` edits."""

from pathlib import Path

#: The checkout's root: where `python -m gateway` finds the browser client.
REPO_ROOT = Path(__file__).resolve().parents[2]
