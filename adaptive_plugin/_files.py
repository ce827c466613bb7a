"""Owner-only files and directories for the plugin's state.

The state directory holds the SQLite database (prompts, cached answers, encrypted provider
keys, the ledger) and the FAISS index files (vectors of prompts): nobody but the proxy's user
reads them. Directories the plugin creates are 0700, files 0600. SQLite creates its `-wal`,
`-shm` and `-journal` files later, with the mode of the database file itself, so a database
file created 0600 keeps them 0600 too; files left 0644 by an older version are tightened at
start-up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("adaptive_plugin")

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def make_dirs(path: Path) -> Path:
    """Create `path` and its missing parents 0700 (whatever the umask); existing ones are left alone."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another worker made it
        os.chmod(directory, DIR_MODE)  # mkdir's mode went through the umask
    return path


def private_dir(path: Path) -> Path:
    """`make_dirs`, then take group and other access off `path` itself when this user owns it
    (a volume's root owned by root, as Kubernetes mounts it with fsGroup, stays as it is)."""
    make_dirs(path)
    tighten(path, DIR_MODE)
    return path


def tighten(path: Path, mode: int) -> None:
    """Remove permission bits beyond `mode` from an existing path that this user owns."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o777 & ~mode and st.st_uid == os.geteuid():
        try:
            os.chmod(path, st.st_mode & 0o777 & mode)
        except OSError as exc:  # e.g. a read-only mount: the files stay readable as they were
            log.warning("adaptive: cannot restrict %s to its owner: %s", path, exc.strerror)


def private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite would make it 0644, and its WAL
    and shared-memory files after it), and tighten an existing one and its sidecar files."""
    make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    except OSError:
        return  # SQLite reports the problem with the path (read-only, not a file, ...)
    os.close(fd)
    for candidate in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDECARS)):
        tighten(candidate, FILE_MODE)
