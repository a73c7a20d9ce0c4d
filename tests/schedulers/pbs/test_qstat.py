"""The qstat parsers against every recorded OpenPBS output (tests/fixtures/openpbs) and
the text that Torque and Slurm's Torque wrapper print."""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict
from datetime import datetime

import pytest

from soca_api.schedulers.pbs.qstat import (
    QstatParseError,
    job_info_from_attributes,
    parse_pbs_time,
    parse_qstat_json,
    parse_qstat_queues,
    parse_qstat_text,
    parse_variable_list,
    strip_host,
)
from soca_api.schedulers.values import ACTIVE_STATES
from tests.fakepbs.fakepbs import FIXTURES_DIR, load_fixture

KNOWN_STATES = ACTIVE_STATES | {"F", "X", "M"}


def _qstat_argv(cmd: str) -> list[str] | None:
    """The qstat argument list of a recording made of exactly one qstat command."""
    last = cmd.split("; ")[-1]
    if any(mark in last for mark in ("|", "echo", "$(", "&&")):
        return None
    argv = shlex.split(last)
    return argv if argv and argv[0] == "qstat" else None


def _fixtures(kind: str) -> list[str]:
    names = []
    for name in sorted(os.listdir(FIXTURES_DIR)):
        if not name.endswith(".txt"):
            continue
        argv = _qstat_argv(load_fixture(name).cmd)
        if argv is None or "-f" not in argv or "-Q" in argv or "-B" in argv:
            continue
        is_json = "-F" in argv and argv[argv.index("-F") + 1] == "json"
        is_text = "-F" not in argv
        if (kind == "json" and is_json) or (kind == "text" and is_text):
            names.append(name)
    return names


JSON_FIXTURES = _fixtures("json")
TEXT_FIXTURES = _fixtures("text")


def _jobs(name: str) -> dict[str, dict]:
    recorded = load_fixture(name)
    return parse_qstat_json(recorded.stdout) if name in JSON_FIXTURES else parse_qstat_text(recorded.stdout)


def _info(name: str, job_id: str):
    jobs = _jobs(name)
    return job_info_from_attributes(job_id, jobs[job_id])


def test_fixture_discovery_finds_every_qstat_recording():
    # Guards the parametrisation below: a renamed fixture must not silently drop out.
    assert len(JSON_FIXTURES) >= 20
    assert {"04_qstat_f_json_queued.txt", "07_qstat_x_f_json_after_finish.txt",
            "17b_qstat_f_json_unknown_id.txt", "45b_qstat_x_t_f_json_array_finished.txt",
            "61_qstat_x_f_json_mixed_known_unknown.txt"} <= set(JSON_FIXTURES)
    assert set(TEXT_FIXTURES) == {"05_qstat_f_plain_queued.txt", "08_qstat_x_f_plain_after_finish.txt",
                                  "08b_qstat_f_plain_after_finish_no_x.txt", "12_qstat_f_plain_running.txt",
                                  "41b_qstat_f_plain_held.txt"}


@pytest.mark.parametrize("name", JSON_FIXTURES)
def test_every_json_recording_parses(name):
    recorded = load_fixture(name)
    jobs = parse_qstat_json(recorded.stdout)
    expected_ids = set(json.loads(recorded.stdout).get("Jobs", {}))
    assert set(jobs) == expected_ids
    if recorded.exit_code != 0 and "mixed" not in name:
        assert jobs == {}  # unknown / finished without -x: the header only, reason on stderr
    for full_id, attrs in jobs.items():
        info = job_info_from_attributes(full_id, attrs)
        assert full_id.startswith(info.id) and full_id.endswith(".pbshost")
        assert info.owner == "alice" and info.server == "pbshost"
        assert info.state in KNOWN_STATES
        assert isinstance(info.name, str) and isinstance(info.project, str)
        assert info.created is not None and info.substate is not None


@pytest.mark.parametrize("name", TEXT_FIXTURES)
def test_every_text_recording_parses(name):
    recorded = load_fixture(name)
    jobs = parse_qstat_text(recorded.stdout)
    expected = [line.split(": ", 1)[1] for line in recorded.stdout.splitlines() if line.startswith("Job Id:")]
    assert list(jobs) == expected
    for full_id, attrs in jobs.items():
        info = job_info_from_attributes(full_id, attrs)
        assert info.owner == "alice" and info.queue == "normal"
        assert info.variables["PBS_O_PATH"] == (
            "/opt/pbs/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games:/opt/pbs/bin")
        assert len(info.variables) == 9


# -- what each recording says ----------------------------------------------------------

def test_queued_job():
    info = _info("04_qstat_f_json_queued.txt", "1.pbshost")
    assert (info.id, info.name, info.owner, info.state, info.substate, info.queue) == (
        "1", "testjob", "alice", "Q", 10, "normal")
    assert info.resource_list == {"instance_type": "c5.large", "ncpus": 1, "nodect": 1, "nodes": 1,
                                  "place": "scatter", "select": "1:ncpus=1"}
    assert (info.ncpus, info.nodes, info.priority, info.rerunable) == (1, 1, 0, True)
    assert info.output_path == "/home/alice/pbstest/testjob_output.qlog"  # "localhost:" dropped
    assert info.error_path == "/home/alice/pbstest/testjob.e1"
    assert (info.join, info.project, info.submit_host) == ("oe", "myproject", "pbshost")
    assert info.created == datetime(2026, 11, 28, 12, 31, 48)
    assert info.workdir == "/home/alice/pbstest"
    assert info.exit_status is None and info.started is None and not info.is_finished
    assert info.native["Submit_arguments"] == "seed.sh"


@pytest.mark.parametrize("name", ["11_qstat_f_json_running.txt", "12_qstat_f_plain_running.txt"])
def test_running_job(name):
    info = _info(name, "2.pbshost")
    assert (info.state, info.exec_host) == ("R", "pbshost/0")
    assert info.started == datetime(2026, 11, 28, 12, 32, 2)
    assert info.comment == "Job run at Sat Nov 28 at 12:32 on (pbshost:ncpus=1)"


def test_running_job_just_started_then_with_resources_used():
    # 11 was taken at the start (substate 41, nothing used yet), 12 two seconds later.
    early = _info("11_qstat_f_json_running.txt", "2.pbshost")
    assert (early.substate, early.resources_used) == (41, {})
    later = _info("12_qstat_f_plain_running.txt", "2.pbshost")
    assert later.substate == 42 and later.native["session_id"] == "20457"
    assert later.resources_used["walltime"] == "00:00:00" and later.resources_used["ncpus"] == 1


@pytest.mark.parametrize("name", ["07_qstat_x_f_json_after_finish.txt", "08_qstat_x_f_plain_after_finish.txt"])
def test_finished_job(name):
    info = _info(name, "1.pbshost")
    assert (info.state, info.substate, info.exit_status) == ("F", 92, 0)
    assert info.finished == datetime(2026, 11, 28, 12, 31, 50) and info.is_finished
    assert info.native["run_count"] in (1, "1")


def test_deleted_job_right_after_qdel_is_still_running_then_finishes_with_271():
    assert _info("13b_qstat_f_json_right_after_qdel.txt", "2.pbshost").state == "R"
    assert _info("14_qstat_x_f_json_after_qdel.txt", "2.pbshost").state == "R"
    info = _info("14b_qstat_x_f_json_after_qdel_later.txt", "2.pbshost")
    assert (info.state, info.substate, info.exit_status) == ("F", 91, 271)


@pytest.mark.parametrize("name", [
    "06_qstat_f_json_after_finish_no_x.txt", "17b_qstat_f_json_unknown_id.txt",
    "17c_qstat_x_f_json_unknown_id.txt", "44c_qstat_f_json_subjob_out_of_range.txt",
    "44d_qstat_f_json_array_without_brackets.txt", "46b_qstat_f_json_subjob_finished_no_x.txt",
])
def test_unknown_or_finished_without_x_has_no_jobs(name):
    recorded = load_fixture(name)
    assert not recorded.stdout.endswith("\n")  # as recorded: no trailing newline
    assert parse_qstat_json(recorded.stdout) == {}


def test_finished_without_x_text_prints_nothing():
    assert parse_qstat_text(load_fixture("08b_qstat_f_plain_after_finish_no_x.txt").stdout) == {}


@pytest.mark.parametrize("name", ["41_qstat_f_json_held.txt", "41b_qstat_f_plain_held.txt",
                                  "26b_qstat_f_json_V_env_held.txt"])
def test_held_job(name):
    jobs = _jobs(name)
    info = job_info_from_attributes(*next(iter(jobs.items())))
    assert (info.state, info.substate, info.hold_types) == ("H", 20, "u")


def test_array_parent_and_subjobs():
    parent = _info("43_qstat_f_json_array_queued.txt", "16[].pbshost")
    assert (parent.id, parent.array_indices, parent.state) == ("16[]", "1-3", "Q")
    jobs = _jobs("43b_qstat_f_json_array_t_queued.txt")
    assert [job_info_from_attributes(k, v).id for k, v in jobs.items()] == ["16[]", "16[1]", "16[2]", "16[3]"]
    sub = _info("44_qstat_f_json_subjob_queued.txt", "16[1].pbshost")
    assert sub.id == "16[1]" and sub.array_indices is None
    done = _info("46_qstat_x_f_json_subjob_finished.txt", "16[1].pbshost")
    assert (done.state, done.exit_status, done.native["array_index"]) == ("F", 0, 1)
    finished_parent = _info("45_qstat_x_f_json_array_finished.txt", "16[].pbshost")
    assert (finished_parent.state, finished_parent.exit_status) == ("F", 0)
    assert len(_jobs("45b_qstat_x_t_f_json_array_finished.txt")) == 4


def test_several_ids_answer_only_the_known_ones():
    assert list(_jobs("61_qstat_x_f_json_mixed_known_unknown.txt")) == ["3.pbshost"]


@pytest.mark.parametrize("json_name, text_name, job_id", [
    ("04_qstat_f_json_queued.txt", "05_qstat_f_plain_queued.txt", "1.pbshost"),
    ("07_qstat_x_f_json_after_finish.txt", "08_qstat_x_f_plain_after_finish.txt", "1.pbshost"),
    ("41_qstat_f_json_held.txt", "41b_qstat_f_plain_held.txt", "15.pbshost"),
])
def test_json_and_text_of_the_same_job_give_the_same_job_info(json_name, text_name, job_id):
    from_json = asdict(_info(json_name, job_id))
    from_text = asdict(_info(text_name, job_id))
    from_json.pop("native")
    from_text.pop("native")
    assert from_json == from_text


# -- JSON edge cases ---------------------------------------------------------------------

def test_numeric_job_name_and_project_become_strings():
    # Released OpenPBS prints `-N 12345` back as a number (fixture 80 shows the line).
    assert '"Job_Name":12345,' in load_fixture("80_numeric_jobname_v_and_V_env.txt").stdout
    text = load_fixture("04_qstat_f_json_queued.txt").stdout
    text = text.replace('"Job_Name":"testjob"', '"Job_Name":12345').replace('"project":"myproject"', '"project":42')
    text = text.replace('"PBS_O_QUEUE":"normal"', '"FOO":123')
    attrs = parse_qstat_json(text)["1.pbshost"]
    assert attrs["Job_Name"] == "12345" and attrs["project"] == "42"
    assert attrs["Variable_List"]["FOO"] == "123"
    assert attrs["Priority"] == 0 and attrs["Resource_List"]["ncpus"] == 1  # numbers stay numbers
    info = job_info_from_attributes("1.pbshost", attrs)
    assert (info.name, info.project) == ("12345", "42")


def test_missing_jobs_key_is_empty():
    assert parse_qstat_json('{"timestamp":1,"pbs_version":"23.06.06","pbs_server":"h"}') == {}
    assert parse_qstat_json(load_fixture("65_qstat_Q_f_json.txt").stdout) == {}


@pytest.mark.parametrize("text", [
    load_fixture("04_qstat_f_json_queued.txt").stdout[:400],  # truncated
    '{"Jobs": {"1.h": {"Job_Name": "a\\qb"}}}',  # 19.x: bad escape after `qsub -V`
    "", "garbage", "[1, 2]", '{"Jobs": [1]}', '{"Jobs": {"1.h": "x"}}',
])
def test_invalid_json_raises_a_short_parse_error(text):
    with pytest.raises(QstatParseError) as caught:
        parse_qstat_json(text)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert len(message) < 120 and "PBS_O_HOME" not in message and "qb" not in message


# -- text edge cases ---------------------------------------------------------------------

def test_wrapped_lines_join_mid_word_without_separator():
    text = (
        "Job Id: 315236.kman\n"
        "    Job_Name = job.pbs\n"
        "    Resource_List.ncpus = 1\n"
        "    Variable_List = PBS_O_HOME=/home/u,PBS_O_LANG=en_AU.UTF-8,\n"
        "\tPBS_O_PATH=/usr/bin:/bin,PBS_O_M\n"
        "\tAIL=/var/spool/mail/u\n"
        "    comment = a long comment that wraps in the mid\n"
        "\tdle of a word = and has an equals sign\n"
        "\n"
    )
    attrs = parse_qstat_text(text)["315236.kman"]
    assert attrs["Variable_List"] == {"PBS_O_HOME": "/home/u", "PBS_O_LANG": "en_AU.UTF-8",
                                      "PBS_O_PATH": "/usr/bin:/bin", "PBS_O_MAIL": "/var/spool/mail/u"}
    assert attrs["comment"] == "a long comment that wraps in the middle of a word = and has an equals sign"
    assert attrs["Resource_List"] == {"ncpus": "1"}


def test_text_of_several_jobs_and_dotted_names():
    text = "".join(load_fixture(name).stdout for name in ("05_qstat_f_plain_queued.txt",
                                                          "12_qstat_f_plain_running.txt"))
    jobs = parse_qstat_text(text)
    assert list(jobs) == ["1.pbshost", "2.pbshost"]
    assert jobs["2.pbshost"]["resources_used"]["walltime"] == "00:00:00"
    assert jobs["2.pbshost"]["session_id"] == "20457"


# What Slurm 22.05's wrapper printed here (`qstat -f`, cat -A showed the TABs).
SLURM_WRAPPER_TEXT = (
    "Job Id:\t1\n"
    "\tJob_Name = t1\n"
    "\tJob_Owner = socatest@localhost\n"
    "\tjob_state = C\n"
    "\tqueue = normal\n"
    "\tqtime = Sat Nov 28 13:13:37 2026\n"
    "\tmtime = Sat Nov 28 13:13:38 2026\n"
    "\tctime = Sat Nov 28 13:13:39 2026\n"
    "\texec_host = vm/1\n"
    "\tPriority = 4294901759\n"
    "\teuser = socatest(1001)\n"
    "\tegroup = socatest(1001)\n"
    "\tResource_List.walltime = 00:02:00\n"
    "\tResource_List.nodect = 1\n"
    "\tResource_List.ncpus = 2\n"
    "\n"
    "Job Id:\t2\n"
    "\tJob_Name = b.sh\n"
    "\tJob_Owner = bob@localhost\n"
    "\tjob_state = R\n"
    "\tqueue = high\n"
    "\tqtime = Sat Nov  7 09:03:04 2026\n"
    "\tmtime = Sat Nov  7 09:03:05 2026\n"
    "\tPriority = 1\n"
    "\teuser = bob(1002)\n"
    "\tegroup = bob(1002)\n"
    "\tResource_List.walltime = 8760:00:00\n"
    "\n"
)


def test_slurm_wrapper_text():
    jobs = parse_qstat_text(SLURM_WRAPPER_TEXT)
    assert list(jobs) == ["1", "2"]
    assert jobs["1"]["Resource_List"] == {"walltime": "00:02:00", "nodect": "1", "ncpus": "2"}
    done = job_info_from_attributes("1", jobs["1"])
    assert (done.id, done.name, done.owner, done.state, done.queue) == ("1", "t1", "socatest", "F", "normal")
    assert (done.ncpus, done.nodes, done.exit_status, done.priority) == (2, 1, None, 4294901759)
    # The wrapper's ctime is the end time and mtime the start time.
    assert done.created == datetime(2026, 11, 28, 13, 13, 37)
    assert done.started == datetime(2026, 11, 28, 13, 13, 38)
    assert done.finished == datetime(2026, 11, 28, 13, 13, 39)
    running = job_info_from_attributes("2", jobs["2"])
    assert (running.state, running.owner, running.finished) == ("R", "bob", None)
    assert running.queued == datetime(2026, 11, 7, 9, 3, 4)


def test_torque_style_text_and_completed_state():
    text = ("Job Id: 42.torque.example.org\n"
            "    Job_Name = STDIN\n"
            "    Job_Owner = carol@login1.example.org\n"
            "    job_state = C\n"
            "    queue = batch\n"
            "    exit_status = 3\n"
            "    Output_Path = login1.example.org:/home/carol/STDIN.o42\n"
            "    job_array_request = 1-4\n"
            "    init_work_dir = /home/carol\n\n")
    info = job_info_from_attributes("42.torque.example.org", parse_qstat_text(text)["42.torque.example.org"])
    assert (info.id, info.owner, info.state, info.exit_status) == ("42", "carol", "F", 3)
    assert (info.server, info.output_path) == ("torque.example.org", "/home/carol/STDIN.o42")
    assert (info.array_indices, info.workdir) == ("1-4", "/home/carol")


def test_empty_text():
    assert parse_qstat_text("") == {}
    assert parse_qstat_text("\n\n") == {}


# -- small helpers -----------------------------------------------------------------------

def test_parse_pbs_time():
    assert parse_pbs_time("Tue Oct  4 21:23:20 2022") == datetime(2022, 10, 4, 21, 23, 20)
    assert parse_pbs_time("Sat Nov 28 12:31:48 2026") == datetime(2026, 11, 28, 12, 31, 48)
    for bad in (None, "", "Infinite", "yesterday", True):
        assert parse_pbs_time(bad) is None


def test_variable_list_commas_inside_values():
    assert parse_variable_list("A=1,LIST=x,y,z,B=,C=a=b") == {"A": "1", "LIST": "x,y,z", "B": "", "C": "a=b"}
    assert parse_variable_list("") == {}


def test_strip_host():
    assert strip_host("pbshost:/home/a/x") == "/home/a/x"
    assert strip_host("/home/a/x:y") == "/home/a/x:y"
    assert strip_host(None) is None


OPENPBS_QSTAT_Q = (
    "Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n"
    "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"
    "workq                0     0 yes yes     0     0     0     0     0     0 Exec\n"
    "normal               0     3 yes yes     1     1     1     0     0     0 Exec\n"
    "high                 0     1 yes yes     0     0     1     0     0     0 Exec\n"
)
# What Slurm 22.05's wrapper printed here for `qstat -Q`.
SLURM_QSTAT_Q = (
    "Queue              Max   Tot   Ena   Str   Que   Run   Hld   Wat   Trn   Ext T\n"
    "----------------   ---   ---   ---   ---   ---   ---   ---   ---   ---   --- -\n"
    "normal               ?     ?   yes   yes     ?     ?     ?     ?     ?     ? E\n"
    "high                 ?     ?   yes   yes     ?     ?     ?     ?     ?     ? E\n"
)


def test_parse_qstat_queues():
    assert parse_qstat_queues(OPENPBS_QSTAT_Q) == ["workq", "normal", "high"]
    assert parse_qstat_queues(SLURM_QSTAT_Q) == ["normal", "high"]
    assert parse_qstat_queues("") == []
