"""Scratch directories of jobs, and sweeping those whose job died.

A job works in `<spool_dir>/reelwire-job-<random>/`, and holds an exclusive `flock` on the
`.lock` file inside it for as long as it runs. A worker killed mid-job (SIGKILL, the OOM killer,
a lost machine) leaves its directory behind, but its lock dies with it: the kernel releases a
process's locks when it exits. So any worker that shares the data directory can tell a dead
job's scratch from a live one (its own or another worker's on this machine) by trying the lock,
and removes only what nobody holds.

A directory is created under a hidden name, its lock taken, and only then renamed to the name
the sweep looks at, so the sweep never sees a live directory before its lock is held. Hidden
directories left by a crash in that instant are swept once they are `HIDDEN_GRACE_SECONDS` old.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "reelwire-job-"
_HIDDEN = "." + PREFIX
LOCK_NAME = ".lock"
HIDDEN_GRACE_SECONDS = 60.0


@contextlib.contextmanager
def scratch_dir(parent: Path) -> Iterator[Path]:
    """A fresh `reelwire-job-*` directory under `parent`, locked while in use, removed after."""
    parent.mkdir(parents=True, exist_ok=True)
    hidden = Path(tempfile.mkdtemp(prefix=_HIDDEN, dir=parent))
    fd = os.open(hidden / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        work = parent / hidden.name[1:]
        os.rename(hidden, work)
        try:
            yield work
        finally:
            # Removed while still locked: the sweep either sees it locked or sees it gone.
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(hidden, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def sweep(parent: Path) -> int:
    """Remove the scratch directories under `parent` that no live job holds; how many."""
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return 0
    removed = 0
    now = time.time()
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.startswith(PREFIX):
                if _held(Path(entry.path)):
                    continue
            elif entry.name.startswith(_HIDDEN):
                if now - entry.stat(follow_symlinks=False).st_mtime < HIDDEN_GRACE_SECONDS:
                    continue
            else:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed += 1
            logger.info("removed the scratch directory of a dead job: %s", entry.path)
    return removed


def _held(directory: Path) -> bool:
    """Whether a live job holds this directory's lock. A directory without a lock file was left
    by a job that died (or by a version that did not lock): nobody holds it."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock we may have just taken
    return False
