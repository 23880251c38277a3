"""Import each fraudapp module first, each in a process of its own.

Run by tests/unit/test_imports.py as a script, never imported by the tests. The
libraries are imported once here; each module is then imported in a forked child
whose only fraudapp module is the one asked for (and what it imports), which is what a
fresh interpreter would see: an import circle fails there as it would for a user
whose first import is that module. Forking saves ~1 s of faust's own import per
module. Prints one line per module that fails, and exits 1 if any did.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback


def modules() -> list[str]:
    import fraudapp

    names = ["fraudapp"]
    for info in pkgutil.walk_packages(fraudapp.__path__, "fraudapp."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


def in_child(task: object) -> list[str]:
    """Run ``task`` in a forked child and return the lines it gives back."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        with os.fdopen(write, "w") as out:
            out.write("\n".join(task()))  # type: ignore[operator]
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as inp:
        lines = inp.read().split()
    os.waitpid(pid, 0)
    return lines


def libraries(names: list[str]) -> list[str]:
    """Every module other than fraudapp's that importing all of fraudapp loads."""
    for name in names:
        importlib.import_module(name)
    return [m for m in sys.modules if m.split(".")[0] != "fraudapp"]


def main() -> int:
    # Listing the modules and the libraries they load happens in children, so that
    # the parent has no fraudapp module loaded at all; the libraries are then imported
    # here once (none starts a thread or a loop on import) and shared by the forks.
    names = in_child(modules)
    for library in in_child(lambda: libraries(names)):
        try:
            importlib.import_module(library)
        except Exception:  # noqa: BLE001, S112 - a library's private alias; the child imports it anyway
            continue
    if any(m.split(".")[0] == "fraudapp" for m in sys.modules):
        print("a library imported fraudapp: the forks would not start clean", file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - reported, whatever it is
                lines = traceback.format_exc().strip().splitlines()
                print(f"{name}: {lines[-1]}", file=sys.stderr)
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    print(f"{len(names)} modules, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
