"""Identity end to end: the checkpoint, the exported model and the ELF of a HIL run must belong
together, checked before anything boots (one-line refusal otherwise), and recorded in the report.

- the checkpoint's SHA-256 must be the one export.json recorded when the model was exported;
- export.json must describe the ``model_int8.tflite`` beside it (its ``sha256``);
- the ELF must be the one memory.json recorded at build time (``elf_sha256``), built from this
  model (``model_sha256``) and from the firmware sources and generator of this installation
  (``firmware_source_id``): a stale ELF is refused, it is not "close enough";
- after HELLO, the board must report the model hash and the source id of that build.
"""
from __future__ import annotations

from pathlib import Path

from cpr_edge.errors import CprError
from cpr_edge.hil.reference import load_export


def checkpoint_sha256(path) -> str:
    from cpr_edge.firmware_build.identity import sha256_of

    return sha256_of(path)


def check_task_export(model_dir) -> dict:
    """export.json of ``model_dir``, refused unless it names a task: closed-loop episodes step the
    task's dm_control environment, and an export of a plain policy (``export --policy``) has none."""
    info = load_export(model_dir)
    if not info.get("task"):
        kind = (info.get("source") or {}).get("kind") or "unknown"
        raise CprError(f"{model_dir} is an export of a plain policy (source {kind}): it has no task to run "
                       f"closed-loop episodes on; check it on the board with "
                       f"cpr-edge validate --board BOARD --model {model_dir}")
    return info


def check_checkpoint(model_dir, checkpoint) -> dict:
    """The checkpoint must be the one the model of ``model_dir`` was exported from."""
    info = load_export(model_dir)
    want = (info.get("checkpoint") or {}).get("sha256")
    got = checkpoint_sha256(checkpoint)
    if not want:
        raise CprError(f"{Path(model_dir) / 'export.json'} records no checkpoint sha256: the model's "
                       f"checkpoint cannot be verified; re-export it from a checkpoint file")
    if got != want:
        raise CprError(f"checkpoint {checkpoint} (sha256 {got[:12]}) is not the one {model_dir} was exported "
                       f"from (sha256 {want[:12]})")
    return {"checkpoint_sha256": got, "tflite_sha256": info["sha256"]}


def check_firmware(model_dir, elf, memory: dict | None) -> dict:
    """The ELF must be the recorded build of this model from the current firmware sources."""
    from cpr_edge.firmware_build.identity import firmware_source_id, sha256_of

    info = load_export(model_dir)
    if memory is None:
        raise CprError(f"no memory.json next to {elf}: the firmware's build is unknown; rebuild it "
                       f"(cpr-edge build)")
    elf_sha = sha256_of(elf)
    problems = []
    if memory.get("elf_sha256") != elf_sha:
        problems.append(f"{elf} (sha256 {elf_sha[:12]}) is not the ELF its memory.json records "
                        f"({str(memory.get('elf_sha256'))[:12]})")
    if memory.get("model_sha256") != info["sha256"]:
        problems.append(f"it was built from model {str(memory.get('model_sha256'))[:12]}, not "
                        f"{info['sha256'][:12]} of {model_dir}")
    current = firmware_source_id()
    if memory.get("firmware_source_id") != current:
        problems.append(f"it was built from firmware sources {memory.get('firmware_source_id')}, these are "
                        f"{current} (stale firmware)")
    if problems:
        raise CprError("firmware does not belong to the run: " + "; ".join(problems) + "; rebuild it")
    return {"elf_sha256": elf_sha, "firmware_source_id": current}


def check_hello_identity(hello, firmware_identity: dict) -> None:
    """After boot: the board says it runs firmware of the recorded source id."""
    from cpr_edge.firmware_build.identity import source_id_of

    h = hello if isinstance(hello, dict) else hello.to_dict()
    got = source_id_of(h["fw_version"])
    if got != firmware_identity["firmware_source_id"]:
        raise CprError(f"the board runs firmware {h['fw_version']!r}, expected source id "
                       f"{firmware_identity['firmware_source_id']}: wrong or stale firmware on the board")
