"""etcd-join's pure pieces: the --initial-cluster of a joining member and the joining etcd command."""

from __future__ import annotations

from kubeboot.config.models import Arg
from kubeboot.tasks.etcdclient import Member
from kubeboot.tasks.phases.joinetcd import initial_cluster, joined_command

MINE = "https://10.0.0.2:2380"


def member(id_: int, name: str, peer: str, *, learner: bool = False) -> Member:
    return Member(id_, name, (peer,), (peer.replace("2380", "2379"),) if name else (), learner)


def test_this_member_is_named_after_the_node_and_an_unstarted_one_by_its_hex_id() -> None:
    members = [member(0xA1, "cp1", "https://10.0.0.1:2380"), member(0xB2, "", MINE, learner=True),
               member(0xC3, "", "https://10.0.0.3:2380", learner=True)]
    assert initial_cluster(members, MINE, "cp2") == (
        "cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380,c3=https://10.0.0.3:2380")


def test_the_joining_command_says_existing_and_stays_sorted() -> None:
    command = ["etcd", "--advertise-client-urls=https://10.0.0.2:2379", "--initial-cluster=cp2=" + MINE,
               "--name=cp2"]
    assert joined_command(command, "cp1=x,cp2=y", []) == [
        "etcd", "--advertise-client-urls=https://10.0.0.2:2379", "--initial-cluster=cp1=x,cp2=y",
        "--initial-cluster-state=existing", "--name=cp2"]


def test_the_users_extra_args_still_win() -> None:
    command = ["etcd", "--initial-cluster=cp2=" + MINE, "--initial-cluster-state=new", "--name=cp2"]
    extra = [Arg(name="initial-cluster-state", value="new")]
    assert joined_command(command, "cp1=x,cp2=y", extra) == [
        "etcd", "--initial-cluster=cp1=x,cp2=y", "--initial-cluster-state=new", "--name=cp2"]
