"""Pure tests of the Slurm adapter: PBS directives -> sbatch options, and the parsers of
`scontrol show job` / `squeue --json` on outputs captured from a real Slurm 22.05.8
(tests/fixtures/slurm/)."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from soca_api.schedulers.slurm.arrays import array_parent, group_arrays
from soca_api.schedulers.slurm.ids import pbs_job_id, slurm_job_id
from soca_api.schedulers.slurm.parsers import (
    job_info_from_scontrol,
    job_infos_from_squeue_json,
    parse_scontrol_job,
    parse_scontrol_jobs,
    pbs_exit_status,
    pbs_state,
)
from soca_api.schedulers.slurm.translate import TranslationError, sbatch_arguments, slurm_time
from soca_api.schedulers.values import ArraySpec, Dependency, JobInfo, JobRequest
from tests.conftest import PROJECT_DIR

FIXTURES = PROJECT_DIR / "tests" / "fixtures" / "slurm"


@pytest.fixture
def utc(monkeypatch):
    """The fixtures were captured on a UTC machine: squeue's epochs read as local time
    match scontrol's local text only in that zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def request(**fields: object) -> JobRequest:
    fields.setdefault("script", "#!/bin/bash\ntrue\n")
    return JobRequest(**fields)  # type: ignore[arg-type]


def option(args: list[str], name: str) -> str | None:
    """The value of --name=value in args (None when absent)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) <= 1, f"--{name} given twice: {args}"
    return values[0] if values else None


# --- sbatch_arguments -------------------------------------------------------------------


def test_seed_script_translation():
    seed = request(
        name="testjob", name_given=True, queue="normal", join="oe", export_all=True,
        output_path="testjob_output.qlog", project="myproject",
        resources={"nodes": "1", "instance_type": "c5.large"},
    )
    assert sbatch_arguments(seed) == [
        "--job-name=testjob",
        "--partition=normal",
        "--output=testjob_output.qlog",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--comment=myproject",
        "--export=ALL",
        "--constraint=c5.large",
    ]


def test_defaults_are_minimal():
    args = sbatch_arguments(request())
    assert args == [
        "--job-name=STDIN",
        "--output=STDIN.o%j",
        "--error=STDIN.e%j",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--export=ALL",
    ]
    assert not any(a.startswith(("--partition", "--time", "--mem", "--hold", "--mail")) for a in args)


def test_name_and_queue():
    args = sbatch_arguments(request(name="my.job-1", queue="high"))
    assert option(args, "job-name") == "my.job-1"
    assert option(args, "partition") == "high"


@pytest.mark.parametrize(
    ("fields", "output", "error"),
    [
        ({}, "job.o%j", "job.e%j"),
        ({"output_path": "out.txt"}, "out.txt", "job.e%j"),
        ({"error_path": "/abs/err.txt"}, "job.o%j", "/abs/err.txt"),
        ({"output_path": "o.txt", "error_path": "e.txt", "join": "oe"}, "o.txt", None),
        ({"output_path": "o.txt", "error_path": "e.txt", "join": "eo"}, "e.txt", None),
        ({"join": "oe"}, "job.o%j", None),
        ({"join": "eo"}, "job.e%j", None),
        ({"output_path": "logs/"}, "logs/job.o%j", "job.e%j"),
        ({"output_path": "100%.log"}, "100%%.log", "job.e%j"),
        ({"array": ArraySpec(1, 3)}, "job.o%A.%a", "job.e%A.%a"),
        ({"array": ArraySpec(1, 3), "output_path": "out.^array_index^"}, "out.%a", "job.e%A.%a"),
    ],
)
def test_output_error_and_join(fields, output, error):
    args = sbatch_arguments(request(name="job", **fields))
    assert option(args, "output") == output
    assert option(args, "error") == error


@pytest.mark.parametrize(
    ("resources", "ncpus", "nodes", "expected"),
    [
        # nodes= : one chunk per host (PBS place=scatter)
        ({"nodes": "1"}, 1, 1, ["--nodes=1", "--ntasks=1", "--cpus-per-task=1"]),
        ({"nodes": "2:ppn=4"}, 8, 2, ["--nodes=2", "--ntasks=2", "--cpus-per-task=4"]),
        ({"nodes": "2#excl"}, 2, 2, ["--nodes=2", "--ntasks=2", "--cpus-per-task=1", "--exclusive"]),
        # job-wide ncpus alone: one chunk placed pack
        ({"ncpus": "4"}, 4, 1, ["--nodes=1", "--ntasks=1", "--cpus-per-task=4"]),
        # select: default place=free lets Slurm choose the hosts
        ({"select": "2:ncpus=3"}, 6, 2, ["--ntasks=2", "--cpus-per-task=3"]),
        ({"select": "2:ncpus=3", "place": "scatter"}, 6, 2, ["--nodes=2", "--ntasks=2", "--cpus-per-task=3"]),
        ({"select": "2:ncpus=3", "place": "pack"}, 6, 2, ["--nodes=1", "--ntasks=2", "--cpus-per-task=3"]),
        ({"select": "2:ncpus=1", "place": "scatter:excl"}, 2, 2,
         ["--nodes=2", "--ntasks=2", "--cpus-per-task=1", "--exclusive"]),
        # uneven chunks round up to the largest share
        ({"select": "1:ncpus=4+2:ncpus=1"}, 6, 3, ["--ntasks=3", "--cpus-per-task=2"]),
    ],
)
def test_nodes_ncpus_select(resources, ncpus, nodes, expected):
    args = sbatch_arguments(request(resources=resources, ncpus=ncpus, nodes=nodes))
    placement = [a for a in args if a.startswith(("--nodes", "--ntasks", "--cpus-per-task", "--exclusive"))]
    assert placement == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0-00:00:01"), (59, "0-00:00:59"), (90, "0-00:01:30"), (3600, "0-01:00:00"),
     (100 * 3600, "4-04:00:00"), (86400 + 3661, "1-01:01:01")],
)
def test_walltime(seconds, expected):
    assert slurm_time(seconds) == expected
    assert option(sbatch_arguments(request(walltime_seconds=seconds)), "time") == expected


@pytest.mark.parametrize(
    ("fields", "name", "value"),
    [
        ({"mem_bytes": 8 * 2**30}, "mem", "8192"),
        ({"mem_bytes": 2**20 + 1}, "mem", "2"),  # rounded up to the next MB
        ({"mem_bytes": 1000}, "mem", "1"),
        # nodes=2 with 8gb total: 4096 MB per node
        ({"mem_bytes": 8 * 2**30, "resources": {"nodes": "2"}, "nodes": 2, "ncpus": 2}, "mem", "4096"),
        # select with free placement: the total shared per cpu
        ({"mem_bytes": 6 * 2**30, "resources": {"select": "2:ncpus=3:mem=3gb"}, "nodes": 2, "ncpus": 6},
         "mem-per-cpu", "1024"),
    ],
)
def test_memory(fields, name, value):
    args = sbatch_arguments(request(**fields))
    assert option(args, name) == value
    other = "mem-per-cpu" if name == "mem" else "mem"
    assert option(args, other) is None


def test_account_and_project():
    args = sbatch_arguments(request(account="acct1", project="myproject"))
    assert option(args, "account") == "acct1"
    assert option(args, "comment") == "myproject"
    assert option(args, "wckey") is None


def test_hold():
    assert "--hold" in sbatch_arguments(request(hold=True))
    assert "--hold" not in sbatch_arguments(request())


def test_dependencies():
    deps = [
        Dependency("afterok", ("12.head", "13")),
        Dependency("afternotok", ("14[]",)),
        Dependency("afterany", ("15[2].server",)),
        Dependency("after", ("16",)),
    ]
    args = sbatch_arguments(request(dependencies=deps))
    assert option(args, "dependency") == "afterok:12:13,afternotok:14,afterany:15_2,after:16"


@pytest.mark.parametrize("dependency", [Dependency("beforeok", ("12",)), Dependency("afterok", ("x1",)),
                                        Dependency("afterok", ())])
def test_dependency_refusals(dependency):
    with pytest.raises(TranslationError):
        sbatch_arguments(request(dependencies=[dependency]))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(ArraySpec(1, 10, 2, 3), "1-10:2%3"), (ArraySpec(1, 3), "1-3"), (ArraySpec(0, 7, 1, 2), "0-7%2")],
)
def test_array(spec, expected):
    assert option(sbatch_arguments(request(array=spec)), "array") == expected


def test_export():
    assert option(sbatch_arguments(request(export_all=True)), "export") == "ALL"
    assert option(sbatch_arguments(request(variables={"a": "1", "B_2": "x y"})), "export") == "ALL,a=1,B_2=x y"
    args = sbatch_arguments(request(variables={"a": "1"}), environment={"PBS_O_WORKDIR": "/home/u/job"})
    assert option(args, "export") == "ALL,a=1,PBS_O_WORKDIR=/home/u/job"


@pytest.mark.parametrize("variables", [{"a": "1,2"}, {"bad-name": "1"}, {"1a": "x"}])
def test_export_refusals(variables):
    with pytest.raises(TranslationError):
        sbatch_arguments(request(variables=variables))


def test_begin_time():
    args = sbatch_arguments(request(start_after=datetime(2031, 5, 4, 3, 2, 1)))
    assert option(args, "begin") == "2031-05-04T03:02:01"
    aware = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    local = aware.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
    assert option(sbatch_arguments(request(start_after=aware)), "begin") == local


@pytest.mark.parametrize(
    ("points", "users", "mail_type", "mail_user"),
    [
        ("a", None, None, None),  # the PBS default: nothing to say
        ("abe", None, "BEGIN,END,FAIL", None),
        ("be", "a@example.com,b@example.com", "BEGIN,END", "a@example.com,b@example.com"),
        ("n", None, "NONE", None),
        ("a", "a@example.com", "FAIL", "a@example.com"),
    ],
)
def test_mail(points, users, mail_type, mail_user):
    args = sbatch_arguments(request(mail_points=points, mail_users=users))
    assert option(args, "mail-type") == mail_type
    assert option(args, "mail-user") == mail_user


def test_rerunable():
    assert "--no-requeue" in sbatch_arguments(request(rerunable=False))
    assert "--no-requeue" not in sbatch_arguments(request(rerunable=True))


def test_priority():
    assert option(sbatch_arguments(request(priority=-100)), "nice") == "100"
    # raising the priority needs Slurm operator rights: not passed on
    assert option(sbatch_arguments(request(priority=100)), "nice") is None


def test_instance_type_modes():
    one = request(resources={"instance_type": "c5.large"})
    two = request(resources={"instance_type": "c5.large+m5.xlarge"})
    assert option(sbatch_arguments(one), "constraint") == "c5.large"
    assert option(sbatch_arguments(two), "constraint") == "c5.large|m5.xlarge"
    assert option(sbatch_arguments(two, instance_type_mode="ignore"), "constraint") is None
    with pytest.raises(ValueError):
        sbatch_arguments(one, instance_type_mode="nodes")
    with pytest.raises(TranslationError):
        sbatch_arguments(request(resources={"instance_type": "c5.large|x&y"}))


def test_unknown_site_resources_are_dropped():
    args = sbatch_arguments(request(resources={"spot_price": "0.1", "scratch_size": "100", "nodes": "1"}))
    assert not any("spot" in a or "scratch" in a for a in args)


def test_ignored_directives_do_not_show():
    args = sbatch_arguments(request(shell="/bin/zsh", keep_files="oe", group_list="g1"))
    assert args == sbatch_arguments(request())


def test_no_value_can_become_an_option():
    # every translated value is glued to its option with "=", never a separate argument
    args = sbatch_arguments(request(name="-x", queue="normal", account="--hold", project="-P"))
    assert all(a.startswith("--") and "=" in a for a in args)
    assert option(args, "job-name") == "-x"


def test_parse_script_request_round_trip():
    script = pytest.importorskip("soca_api.pbs.script")
    parsed = script.parse_script(
        "#!/bin/bash\n#PBS -N testjob\n#PBS -V -j oe -o testjob_output.qlog\n#PBS -P myproject\n"
        "#PBS -q normal\n#PBS -l nodes=1,instance_type=c5.large\n/bin/echo \"Hello World\"\n"
    )
    args = sbatch_arguments(parsed)
    assert option(args, "output") == "testjob_output.qlog"
    assert option(args, "error") is None
    assert option(args, "constraint") == "c5.large"
    assert option(args, "comment") == "myproject"


# --- ids and state maps -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "slurm"),
    [("12", "12"), ("12[]", "12"), ("12[3]", "12_3"), ("12.head", "12"), ("12[3].head.example", "12_3")],
)
def test_slurm_job_id(api, slurm):
    assert slurm_job_id(api) == slurm


@pytest.mark.parametrize("bad", ["", "12_3", "abc", "12;rm", "-1", "12[x]"])
def test_slurm_job_id_refuses(bad):
    with pytest.raises(ValueError):
        slurm_job_id(bad)


def test_pbs_job_id():
    assert pbs_job_id("17", "13", "1") == "13[1]"
    assert pbs_job_id("14", "14", "2-4%1") == "14[]"
    assert pbs_job_id("12", None, None) == "12"
    assert pbs_job_id(12, 0, None) == "12"


@pytest.mark.parametrize(
    ("state", "reason", "letter", "hold"),
    [
        ("PENDING", "None", "Q", "n"),
        ("PENDING", "Resources", "Q", "n"),
        ("PENDING", "JobHeldUser", "H", "u"),
        ("PENDING", "JobHeldAdmin", "H", "o"),
        ("PENDING", "Dependency", "H", "s"),
        ("PENDING", "BeginTime", "W", "n"),
        ("RUNNING", "None", "R", "n"),
        ("RUNNING", "JobHeldUser", "R", "n"),  # a running job held later keeps running
        ("COMPLETING", "None", "E", "n"),
        ("SUSPENDED", "None", "S", "n"),
        ("COMPLETED", "None", "F", "n"),
        ("CANCELLED by 0", "None", "F", "n"),
        ("TIMEOUT", "TimeLimit", "F", "n"),
        ("OUT_OF_MEMORY", "None", "F", "n"),
    ],
)
def test_state_map(state, reason, letter, hold):
    mapped = pbs_state(state, reason)
    assert (mapped.letter, mapped.hold_types) == (letter, hold)


def test_pending_until_a_future_eligible_time_is_waiting():
    now = datetime(2030, 1, 1, 12, 0, 0)
    assert pbs_state("PENDING", "None", datetime(2030, 1, 1, 13, 0), now).letter == "W"
    assert pbs_state("PENDING", "None", datetime(2030, 1, 1, 11, 0), now).letter == "Q"
    assert pbs_state("PENDING", "JobHeldUser", datetime(2030, 1, 1, 13, 0), now).letter == "H"


@pytest.mark.parametrize(
    ("state", "code", "signal", "status"),
    [
        ("COMPLETED", 0, 0, 0),
        ("FAILED", 3, 0, 3),
        ("FAILED", 0, 9, 265),
        ("FAILED", 0, 0, -1),
        ("CANCELLED", 0, 15, 271),
        ("CANCELLED", 0, 0, 271),
        ("TIMEOUT", 0, 15, -29),
        ("OUT_OF_MEMORY", 0, 125, 265),
        ("NODE_FAIL", 0, 0, -4),
        ("PREEMPTED", 0, 15, 271),
    ],
)
def test_exit_status_map(state, code, signal, status):
    assert pbs_exit_status(state, code, signal) == status


# --- scontrol show job ------------------------------------------------------------------


def test_parse_scontrol_fields():
    fields = parse_scontrol_job(fixture("scontrol_exit3.txt"))
    assert fields["JobId"] == "1"
    assert fields["JobName"] == "t1"
    assert fields["UserId"] == "socatest(1001)"
    assert fields["AllocNode:Sid"] == "localhost:6349"
    assert fields["CPUs/Task"] == "1"
    assert fields["TRES"] == "cpu=1,node=1,billing=1"
    assert fields["Comment"] == "myproj"  # scontrol's trailing space dropped
    assert fields["Power"] == ""
    assert fields["ExitCode"] == "3:0"


def test_parse_scontrol_values_with_spaces():
    text = (
        "JobId=5 JobName=x\n"
        "   JobState=PENDING Reason=(ReqNodeNotAvail, UnavailableNodes:vm) Dependency=(null)\n"
        "   Command=/home/u/my dir/run.sh --flag a=b\n"
        "   WorkDir=/home/u/my dir\n"
        "   StdOut=/home/u/my dir/out Key=1.txt\n"
    )
    fields = parse_scontrol_job(text)
    assert fields["Reason"] == "(ReqNodeNotAvail, UnavailableNodes:vm)"
    assert fields["Command"] == "/home/u/my dir/run.sh --flag a=b"
    assert fields["WorkDir"] == "/home/u/my dir"
    assert fields["StdOut"] == "/home/u/my dir/out Key=1.txt"
    assert "Key" not in fields


def test_scontrol_finished_nonzero_exit():
    info = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_exit3.txt")))
    assert (info.id, info.name, info.owner, info.queue) == ("1", "t1", "socatest", "normal")
    assert (info.state, info.substate, info.exit_status) == ("F", 92, 3)
    assert info.project == "myproj"
    assert info.output_path == info.error_path == "/tmp/sx/t1.o1"
    assert info.join == "oe"
    assert info.resource_list == {"instance_type": "c5.large", "ncpus": 1, "nodect": 1,
                                  "select": "1:ncpus=1", "walltime": "00:02:00"}
    assert info.started == datetime(2026, 11, 28, 13, 13, 38)
    assert info.finished == datetime(2026, 11, 28, 13, 13, 38)
    assert info.exec_host == "vm"
    assert info.submit_host == "localhost"


def test_scontrol_running():
    info = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_running.txt")))
    assert (info.state, info.substate, info.exit_status, info.finished) == ("R", 42, None, None)
    assert info.resource_list["mem"] == "100mb"
    assert info.resource_list["walltime"] == "00:10:00"
    assert info.resource_list["ncpus"] == 2
    assert info.resources_used == {"walltime": "00:00:02"}
    assert info.project == "_pbs_project_default"
    assert info.account is None


def test_scontrol_held_dependency_begin():
    held = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_held.txt")))
    assert (held.state, held.hold_types, held.substate) == ("H", "u", 20)
    assert held.started is None and held.exec_host is None
    dep = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_dependency.txt")))
    assert (dep.state, dep.hold_types) == ("H", "s")
    assert dep.depend == "afterok:63,afterany:62"
    begin = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_begin.txt")))
    assert begin.state == "W"
    assert begin.started is None  # Slurm's StartTime of a pending job is only an estimate
    assert begin.project == "proj"


def test_scontrol_cancelled_and_timeout():
    cancelled = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_cancelled_running.txt")))
    assert (cancelled.state, cancelled.exit_status, cancelled.substate) == ("F", 271, 91)
    never_ran = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_dependency_cancelled.txt")))
    assert (never_ran.state, never_ran.exit_status) == ("F", 271)
    timeout = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_timeout.txt")))
    assert (timeout.state, timeout.exit_status, timeout.owner) == ("F", -29, "slurmprobe")
    assert timeout.output_path == "/tmp/slurmprobe.4InRfC/slurm-4.out"


def test_scontrol_mail_and_memory_per_cpu():
    mail = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_mail.txt")))
    assert (mail.mail_points, mail.mail_users) == ("bea", "a@b.com")
    per_cpu = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_mem_per_cpu.txt")))
    assert per_cpu.resource_list["mem"] == "128mb"  # 64M per cpu x 2 cpus
    assert per_cpu.resource_list["select"] == "2:ncpus=1"


def test_scontrol_array_records():
    records = parse_scontrol_jobs(fixture("scontrol_array_finished.txt"))
    infos = [job_info_from_scontrol(r) for r in records]
    assert [i.id for i in infos] == ["13[3]", "13[2]", "13[1]"]
    assert infos[0].output_path == "/tmp/sx/arr.o13.3"
    parent = array_parent("13", infos)
    assert (parent.id, parent.state, parent.exit_status, parent.array_indices) == ("13[]", "F", 0, "1-3")


def test_scontrol_array_running_is_begun():
    infos = [job_info_from_scontrol(r) for r in parse_scontrol_jobs(fixture("scontrol_array_running.txt"))]
    assert [(i.id, i.state) for i in infos] == [("65[]", "Q"), ("65[1]", "R")]
    assert infos[0].array_indices == "3-5:2"  # the still-pending tasks 3 and 5
    parent = array_parent("65", infos)
    assert (parent.id, parent.state, parent.exit_status, parent.array_indices) == ("65[]", "B", None, "1-5:2")
    assert infos[1].native["TimeLimit"] == "365-00:00:00"
    assert "walltime" not in infos[1].resource_list  # no --time: Slurm's 365 days = no limit
    task = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_array_task_pending.txt")))
    assert (task.id, task.state) == ("65[5]", "Q")


def test_scontrol_array_cancelled_parent_status():
    infos = [job_info_from_scontrol(r) for r in parse_scontrol_jobs(fixture("scontrol_array_cancelled.txt"))]
    parent = array_parent("14", infos)
    assert (parent.state, parent.exit_status) == ("F", 2)  # PBS: a subjob was deleted


def test_array_parent_held_and_queued():
    def task(i: int, state: str) -> JobInfo:
        return JobInfo(id=f"7[{i}]", name="a", owner="u", state=state, queue="normal")

    assert array_parent("7", [task(1, "H"), task(2, "H")]).state == "H"
    assert array_parent("7", [task(1, "Q"), task(2, "H")]).state == "Q"
    assert array_parent("7", [task(1, "F"), task(2, "Q")]).state == "B"


# --- squeue --json ----------------------------------------------------------------------


def test_squeue_json_records():
    infos = {i.id: i for i in job_infos_from_squeue_json(fixture("squeue_mixed.json"))}
    assert infos["1"].exit_status == 3  # raw wait status 768
    assert infos["1"].output_path == "/tmp/sx/t1.o1"  # t1.o%j expanded
    assert infos["1"].project == "myproj"
    assert infos["2"].exit_status == 127
    assert (infos["16"].state, infos["16"].exit_status) == ("F", 271)
    assert (infos["10"].state, infos["10"].hold_types) == ("H", "u")
    assert (infos["12"].state, infos["12"].depend) == ("H", "afterok:11")
    assert infos["15"].state == "W"
    assert infos["11"].state == "R"
    assert infos["11"].native["time_limit"] == 525600 and "walltime" not in infos["11"].resource_list
    assert infos["13[1]"].output_path == "/tmp/sx/arr.o13.1"
    assert infos["14[]"].array_indices == "2-4"
    assert infos["14[]"].state == "Q"
    assert infos["3"].output_path and infos["3"].output_path.endswith("/slurm-3.out")


def test_squeue_json_timeout_and_owner():
    infos = {i.id: i for i in job_infos_from_squeue_json(fixture("squeue_pending.json"))}
    assert (infos["4"].state, infos["4"].exit_status, infos["4"].owner) == ("F", -29, "slurmprobe")
    assert infos["63"].resource_list["walltime"] == "00:10:00"
    assert infos["63"].resource_list["mem"] == "100mb"
    assert infos["63"].started is not None


def test_squeue_json_grouped_like_qstat():
    grouped = group_arrays(job_infos_from_squeue_json(fixture("squeue_mixed.json")))
    ids = [i.id for i in grouped]
    assert "13[]" in ids and "14[]" in ids
    assert not any(i.endswith("]") and not i.endswith("[]") for i in ids)
    parents = {i.id: i for i in grouped}
    assert (parents["13[]"].state, parents["13[]"].exit_status, parents["13[]"].array_indices) == ("F", 0, "1-3")
    assert (parents["14[]"].state, parents["14[]"].array_indices) == ("B", "1-4")
    assert len(ids) == len(set(ids))


def test_scontrol_and_squeue_agree(utc):
    """The same finished job read both ways gives the same PBS view."""
    from_json = {i.id: i for i in job_infos_from_squeue_json(fixture("squeue_mixed.json"))}["1"]
    from_text = job_info_from_scontrol(parse_scontrol_job(fixture("scontrol_exit3.txt")))
    for attribute in ("id", "name", "owner", "state", "queue", "exit_status", "output_path", "error_path",
                      "join", "project", "resource_list", "started", "finished", "created", "ncpus", "nodes"):
        assert getattr(from_json, attribute) == getattr(from_text, attribute), attribute


@pytest.mark.parametrize("text", ["not json", "[]", json.dumps({"jobs": None})])
def test_squeue_json_garbage(text):
    from soca_api.schedulers.errors import SchedulerError

    with pytest.raises(SchedulerError):
        job_infos_from_squeue_json(text)


def test_squeue_json_times_are_local(utc):
    infos = {i.id: i for i in job_infos_from_squeue_json(fixture("squeue_mixed.json"))}
    assert infos["1"].created == datetime(2026, 11, 28, 13, 13, 37)
    assert infos["1"].finished == datetime(2026, 11, 28, 13, 13, 38)


# --- command errors ---------------------------------------------------------------------


def _result(stderr: str, returncode: int = 1, stdout: str = ""):
    from soca_api.schedulers.commands import CommandResult

    return CommandResult(("x",), returncode, stdout, stderr)


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
         "SchedulerUnavailable"),
        ("slurm_load_jobs error: Unable to contact slurm controller (connect failure)", "SchedulerUnavailable"),
        ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
         "SchedulerTimeout"),
    ],
)
def test_outage_messages(stderr, error):
    from soca_api.schedulers import errors
    from soca_api.schedulers.slurm.adapter import _raise_for_outage

    with pytest.raises(getattr(errors, error)) as caught:
        _raise_for_outage(_result(stderr))
    assert caught.value.detail == stderr


def test_refusal_messages_are_not_outages():
    from soca_api.schedulers.slurm.adapter import _first_error_line, _raise_for_outage

    stderr = ("sbatch: error: invalid partition specified: nosuch\n"
              "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    _raise_for_outage(_result(stderr))  # no exception
    assert _first_error_line(stderr) == "sbatch: error: invalid partition specified: nosuch"
    assert _first_error_line("sbatch: warning: x\nsbatch: error: y\n") == "sbatch: error: y"
    assert _first_error_line("") == ""


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("scancel: Terminating job 9\nscancel: error: Kill job error on job id 9: Invalid job id specified\n",
         "JobNotFound"),
        ("scancel: Terminating job 3\n"
         "scancel: error: Kill job error on job id 3: Job/step already completing or completed\n", "JobNotFound"),
        ("Job has already finished for job 20\nslurm_suspend error: Job has already finished\n", "JobNotFound"),
        ("scancel: error: Kill job error on job id 21: Access/permission denied\n", "PermissionDenied"),
        ("Invalid user id for job 21\nslurm_suspend error: Invalid user id\n", "PermissionDenied"),
        ("slurm_suspend error: Something new\n", "JobRejected"),
    ],
)
def test_job_command_errors(stderr, error):
    from soca_api.schedulers import errors
    from soca_api.schedulers.slurm.adapter import SlurmAdapter

    with pytest.raises(getattr(errors, error)):
        SlurmAdapter._raise_for_job_error(_result(stderr, returncode=0), "Unable to change the job")


def test_scancel_success_is_quiet():
    from soca_api.schedulers.slurm.adapter import SlurmAdapter

    SlurmAdapter._raise_for_job_error(_result("scancel: Terminating job 14_3\n", returncode=0), "x")
