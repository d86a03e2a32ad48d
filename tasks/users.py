"""The users and groups RootlessControlPlane runs the control plane as, created or reused as kubeadm's
users package does (cmd/kubeadm/app/util/users/users_linux.go, AddUsersAndGroups).

Reads: the node root's ``/etc/login.defs`` (SYS_UID_MIN/MAX, SYS_GID_MIN/MAX; 100-999 when missing),
``/etc/passwd`` and ``/etc/group`` (both must exist, as kubeadm opens them). Writes: ``/etc/passwd`` and
``/etc/group``, appending only the missing entries (``kubeadm-etcd:x:<uid>:<gid>:::/bin/false``,
``kubeadm-sa-key-readers:x:<gid>:kubeadm-kas,kubeadm-kcm`` ...), each file replaced atomically with its
mode kept, while holding kubeadm's fcntl write lock on it (so a kubeadm running at the same time waits).
Existing entries are reused after kubeadm's checks (system ID range, ``/bin/false`` shell, primary group
of the same name, group members); anything else is an error. A second run finds every entry and writes
nothing.

Like every node path, these are the files of the node root: on a real node (``--root /``) the host's
own account files, exactly those kubeadm edits; under a simulated root they describe that node only
(the host kernel knows nothing of them, and the numeric IDs chowned on its files are just numbers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from kubeboot.config import constants as c
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS

NO_SHELL = "/bin/false"
USER_FIELDS, GROUP_FIELDS = 7, 4
LOCK_TIMEOUT_SECONDS = 5.0  # openFileWithLock: F_SETLK retried every 200 ms for 5 s
USERS = (c.NONROOT_ETCD_USER, c.NONROOT_APISERVER_USER, c.NONROOT_KCM_USER, c.NONROOT_SCHEDULER_USER)
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    *((u, (u,)) for u in USERS),
    (c.NONROOT_SA_KEY_READERS_GROUP, (c.NONROOT_APISERVER_USER, c.NONROOT_KCM_USER)),
)


@dataclass
class Entry:
    """One line of /etc/passwd (id = UID, gid, shell) or /etc/group (id = GID, members)."""

    name: str
    id: int = 0
    gid: int = 0
    members: tuple[str, ...] = ()
    shell: str = ""


@dataclass(frozen=True)
class Limits:
    min_uid: int = 100
    max_uid: int = 999
    min_gid: int = 100
    max_gid: int = 999


@dataclass(frozen=True)
class UsersAndGroups:
    users: dict[str, Entry] = field(default_factory=dict)
    groups: dict[str, Entry] = field(default_factory=dict)

    def uid(self, name: str) -> int:
        return self.users[name].id

    def gid(self, name: str) -> int:
        return self.groups[name].id


class UsersError(Exception):
    """What kubeadm's users package would return as an error."""


# --- parsing ------------------------------------------------------------------------------------------


def parse_login_defs(text: str) -> Limits:
    keys = {"SYS_UID_MIN": "min_uid", "SYS_UID_MAX": "max_uid", "SYS_GID_MIN": "min_gid", "SYS_GID_MAX": "max_gid"}
    values = vars(Limits()).copy()
    for i, line in enumerate(text.split("\n")):
        for key, attr in keys.items():
            if line.startswith(key):
                try:
                    values[attr] = int(line.removeprefix(key).strip())
                except ValueError:
                    raise UsersError(f"could not parse value for {key} at line {i}") from None
    return Limits(**values)


def parse_entries(text: str, total: int) -> list[Entry]:
    entries = []
    for i, raw in enumerate(text.split("\n")):
        line = raw.strip()
        if not line:
            continue
        fields = line.split(":")
        if len(fields) != total:
            raise UsersError(f"entry must have {total} fields separated by ':', got {len(fields)} at line {i}: {line}")
        try:
            entry = Entry(fields[0], int(fields[2]))
            if total == GROUP_FIELDS:
                entry.members = tuple(fields[3].split(","))
            else:
                entry.gid, entry.shell = int(fields[3]), fields[6]
        except ValueError:
            raise UsersError(f"error parsing id at line {i}") from None
        entries.append(entry)
    return entries


# --- kubeadm's rules ------------------------------------------------------------------------------------


def _check_user(user: Entry, groups: list[Entry], limits: Limits) -> None:
    if not limits.min_uid <= user.id <= limits.max_uid:
        raise UsersError(f'UID {user.id} for user "{user.name}" is outside the system UID range: '
                         f"{limits.min_uid} - {limits.max_uid}")
    if user.shell != NO_SHELL:
        raise UsersError(f'user "{user.name}" has unexpected shell "{user.shell}"; expected "{NO_SHELL}"')
    primary = next((g for g in groups if g.id == user.gid), None)
    if primary is None:
        raise UsersError(f'could not find group with GID {user.gid} for user "{user.name}"')
    if primary.name != user.name:
        raise UsersError(f'user "{user.name}" has GID {primary.id} but the group with that GID is not named '
                         f'"{user.name}"')


def _check_group(group: Entry, members: tuple[str, ...], limits: Limits) -> None:
    if not limits.min_gid <= group.id <= limits.max_gid:
        raise UsersError(f'GID {group.id} for user "{group.name}" is outside the system UID range: '
                         f"{limits.min_gid} - {limits.max_gid}")
    if ",".join(group.members) != ",".join(members):
        raise UsersError(f'expected users "{",".join(members)}" for group "{group.name}"; '
                         f'got "{",".join(group.members)}"')


def missing_entries(users: list[Entry], groups: list[Entry], limits: Limits) -> tuple[list[Entry], list[Entry]]:
    """validateEntries: the users and groups to create; existing ones checked."""
    new_users, new_groups = [], []
    for name in USERS:
        found = next((u for u in users if u.name == name), None)
        if found is None:
            new_users.append(Entry(name, shell=NO_SHELL))
        else:
            _check_user(found, groups, limits)
    for name, members in GROUPS:
        found = next((g for g in groups if g.name == name), None)
        if found is None:
            new_groups.append(Entry(name, members=members))
        else:
            _check_group(found, members, limits)
    return new_users, new_groups


def allocate_ids(entries: list[Entry], lo: int, hi: int, total: int) -> list[int]:
    """The ``total`` lowest IDs in [lo, hi] no entry uses."""
    used = {e.id for e in entries}
    free = [i for i in range(lo, hi + 1) if i not in used][:total]
    if len(free) < total:
        raise UsersError(f"could not allocate {total} IDs based on existing entries in the range: {lo} - {hi}")
    return free


def _assign(groups: list[Entry], new_users: list[Entry], new_groups: list[Entry], limits: Limits,
            users: list[Entry]) -> None:
    for group, gid in zip(new_groups, allocate_ids(groups, limits.min_gid, limits.max_gid, len(new_groups)),
                          strict=True):
        group.id = gid
    by_name = {g.name: g.id for g in [*groups, *new_groups]}
    for user, uid in zip(new_users, allocate_ids(users, limits.min_uid, limits.max_uid, len(new_users)),
                         strict=True):
        user.id, user.gid = uid, by_name.get(user.name, 0)


def user_line(e: Entry) -> str:
    return f"{e.name}:x:{e.id}:{e.gid}:::{NO_SHELL}"


def group_line(e: Entry) -> str:
    return f"{e.name}:x:{e.id}:{','.join(e.members)}"


def append_lines(text: str, lines: list[str]) -> str:
    """addEntries: a newline first when the file lacks its last one."""
    if not lines:
        return text
    return text + ("" if not text or text.endswith("\n") else "\n") + "\n".join(lines) + "\n"


# --- the files ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(fs: NodeFS, node_path: str) -> Iterator[str]:
    """openFileWithLock: the file opened read-write and write-locked (F_SETLK, retried); its text."""
    try:
        fd = os.open(fs.path(node_path), os.O_RDWR)
    except OSError as e:
        raise UsersError(f"open {node_path}: {(e.strerror or str(e)).lower()}") from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise UsersError(f'timeout attempting to obtain lock on file "{node_path}": {e.strerror}') from None
                time.sleep(0.2)
        with open(fd, encoding="utf-8", closefd=False) as f:
            yield f.read()
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _rewrite(fs: NodeFS, node_path: str, text: str) -> None:
    mode = stat.S_IMODE(fs.path(node_path).stat().st_mode)
    fs.write(node_path, text, mode=mode)


def add_users_and_groups(fs: NodeFS) -> UsersAndGroups:
    """AddUsersAndGroups on the node root; ``PermanentError`` with kubeadm's message on any problem."""
    try:
        return _add(fs)
    except UsersError as e:
        raise PermanentError(f"failed to create users and groups: {e}") from None


def _add(fs: NodeFS) -> UsersAndGroups:
    limits = parse_login_defs(fs.read_text(c.ETC_LOGIN_DEFS) or "")
    with _locked(fs, c.ETC_PASSWD) as passwd_text, _locked(fs, c.ETC_GROUP) as group_text:
        try:
            users = parse_entries(passwd_text, USER_FIELDS)
        except UsersError as e:
            raise UsersError(f'could not parse "{c.ETC_PASSWD}": {e}') from None
        try:
            groups = parse_entries(group_text, GROUP_FIELDS)
        except UsersError as e:
            raise UsersError(f'could not parse "{c.ETC_GROUP}": {e}') from None
        try:
            new_users, new_groups = missing_entries(users, groups, limits)
        except UsersError as e:
            raise UsersError(f"error validating existing users and groups: {e}") from None
        _assign(groups, new_users, new_groups, limits, users)
        _rewrite(fs, c.ETC_PASSWD, append_lines(passwd_text, [user_line(u) for u in new_users]))
        _rewrite(fs, c.ETC_GROUP, append_lines(group_text, [group_line(g) for g in new_groups]))
    return UsersAndGroups(users=_first_by_name([*users, *new_users], USERS),
                          groups=_first_by_name([*groups, *new_groups], tuple(dict(GROUPS))))


def _first_by_name(entries: list[Entry], names: tuple[str, ...]) -> dict[str, Entry]:
    """entriesToEntryMap: the first entry of each managed name."""
    out: dict[str, Entry] = {}
    for e in entries:
        if e.name in names:
            out.setdefault(e.name, e)
    return out
