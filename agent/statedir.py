"""The state folder holds the outbox (alarms, snapshots), incidents and the nuisance
log: nobody but the agent (and, through the folder's group, maintainers reading
the status file) may read them, whatever umask the agent was started with.

``secure(state_dir)`` is called once by ``firegate run`` before anything is
written: it sets the process umask to 077 (every file the agent creates is
0600, every folder 0700), creates the folder 0700 when it does not exist, and
takes away what others may do with an existing one and with the files already
in it. The group's access to the folder is left alone (the systemd unit makes
it 0750, group firegate, so that maintainers can run ``firegate status``); the
status file is written 0640 on purpose (agent.health).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("agent.run")

STATUS_FILE_MODE = 0o640  # agent.health writes status.json with this mode


def secure(state_dir: Path) -> None:
    """Make ``state_dir`` and what is in it private to the agent (see the module
    docstring). Never raises: a folder that cannot be created or changed is
    reported by whoever uses it next."""
    os.umask(0o077)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _tighten(state_dir, 0o750)
        for entry in os.scandir(state_dir):
            if entry.is_file(follow_symlinks=False):
                keep = STATUS_FILE_MODE if entry.name == "status.json" else 0o600
                _tighten(Path(entry.path), keep)
    except OSError as e:
        log.debug("state folder %s: %s", state_dir, e)


def _tighten(path: Path, most: int) -> None:
    """Remove every permission bit of ``path`` beyond ``most`` (ours only)."""
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~most and st.st_uid == os.geteuid():
        os.chmod(path, mode & most)
        log.warning(
            "%s was readable or writable by others (mode %o); now %o",
            path,
            mode,
            mode & most,
        )
