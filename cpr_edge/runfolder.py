"""Run folders: one run at a time per folder, and never an earlier run's files beside a new one's.

``RunFolder(out, kind)`` checks the folder before anything slow (a file, a read-only place or a
folder of unrelated files is refused in one line), takes an exclusive lock (``.cpr-edge.lock``,
``flock``: a second run into the same folder is refused in one line, and the lock goes away
with the process however it dies), then removes what an earlier run of the same layout left
(docs/report.md lists it) so that report.md can never describe another run than the files
beside it.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from cpr_edge.errors import CprError

LOCK = ".cpr-edge.lock"
HIL_OUTPUTS = ("report.json", "report.md", "episodes.npz", "latency.png", "returns.png", "memory.png",
               "importance.png")
OUTPUTS = {
    "hil": HIL_OUTPUTS,
    "prune-and-flash": HIL_OUTPUTS + ("pruned.pt", "prune.json", "model", "baseline"),
}
"""What a run of each kind writes; ``qemu-*.log`` and atomic-write leftovers (``.*.tmp``) too."""


def _earlier_outputs(out: Path, kind: str) -> tuple[list[Path], list[str]]:
    known, foreign = [], []
    for p in sorted(out.iterdir()):
        if p.name == LOCK:
            continue
        if p.name in OUTPUTS[kind] or (p.name.startswith("qemu-") and p.name.endswith(".log")) or \
                (p.name.startswith(".") and p.name.endswith(".tmp")):
            known.append(p)
        elif not any(p.name in o for o in OUTPUTS.values()):
            foreign.append(p.name)
    return known, foreign


class RunFolder:
    def __init__(self, out, kind: str):
        if kind not in OUTPUTS:
            raise ValueError(kind)
        self.out, self.kind = Path(out), kind
        self._fd = None

    def check(self) -> None:
        """The folder can hold a run: a folder (or creatable), writable, no unrelated files."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise CprError(f"--out {out} is a file, not a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CprError(f"--out {out}: cannot create the folder ({e.strerror})")
        if not os.access(out, os.W_OK | os.X_OK):
            raise CprError(f"--out {out} is not writable")
        _, foreign = _earlier_outputs(out, self.kind)
        if foreign:
            raise CprError(f"--out {out} holds files that are not a cpr-edge {self.kind} run "
                           f"({', '.join(foreign[:3])}{'…' if len(foreign) > 3 else ''}); give an empty or new folder")

    def __enter__(self) -> "RunFolder":
        self.check()
        path = self.out / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CprError(f"--out {self.out}: cannot create its lock ({e.strerror})")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CprError(f"run folder {self.out} is in use by another run (pid {holder}); wait for it "
                           f"or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        known, _ = _earlier_outputs(self.out, self.kind)
        for p in known:  # an earlier run's files never sit beside this run's
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:  # the lock file stays (unlinking it would race a newcomer)
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.__exit__()
