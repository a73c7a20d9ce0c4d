"""Tests for soca_api.pbs.script: payload decoding, #PBS parsing, Resource_List rendering."""
from __future__ import annotations

import base64
from datetime import datetime

import pytest

from soca_api.pbs.script import (
    ScriptError,
    ScriptTooLarge,
    decode_payload,
    format_mem,
    format_walltime,
    parse_script,
    resource_list,
)
from soca_api.schedulers.values import ArraySpec, Dependency, Directive, JobRequest

# The seed document's script and its base64, exactly as printed there.
SEED_SCRIPT = """#!/bin/bash
#PBS -N testjob
#PBS -V -j oe -o testjob_output.qlog
#PBS -P myproject
#PBS -q normal
#PBS -l nodes=1,instance_type=c5.large
/bin/echo "Hello World"
"""
SEED_B64 = (
    "IyEvYmluL2Jhc2gKI1BCUyAtTiB0ZXN0am9iCiNQQlMgLVYgLWogb2UgLW8gdGVzdGpvYl9vdXRwdXQucWxvZwoj"
    "UEJTIC1QIG15cHJvamVjdAojUEJTIC1xIG5vcm1hbAojUEJTIC1sIG5vZGVzPTEsaW5zdGFuY2VfdHlwZT1jNS5s"
    "YXJnZQovYmluL2VjaG8gIkhlbGxvIFdvcmxkIgo="
)
# The seed's decode example drops the "=".
SEED_B64_UNPADDED = SEED_B64.rstrip("=")

NOW = datetime(2026, 11, 28, 12, 0, 0)
LIMIT = 64 * 1024


def b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def parse(*directive_lines: str, body: str = "sleep 1\n") -> JobRequest:
    """A script with a shebang, the given lines, then a command."""
    return parse_script("#!/bin/bash\n" + "".join(f"{d}\n" for d in directive_lines) + body, NOW)


def rejected(script: str) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        parse_script(script, NOW)
    return info.value


# --- ScriptError ---------------------------------------------------------------------


def test_script_error_is_a_value_error_whose_str_is_the_message():
    exc = ScriptError("Line 4: unknown option -Z", 4)
    assert isinstance(exc, ValueError)
    assert str(exc) == exc.message == "Line 4: unknown option -Z"
    assert exc.line == 4
    assert ScriptError("payload is empty").line is None


def test_script_too_large_is_a_script_error():
    assert issubclass(ScriptTooLarge, ScriptError)


# --- decode_payload: accepted forms -------------------------------------------------------


def test_seed_base64_from_the_document_decodes_to_the_seed_script():
    assert b64(SEED_SCRIPT) == SEED_B64  # the document's hash is the script shown
    assert decode_payload(SEED_B64, LIMIT) == SEED_SCRIPT


def test_seed_base64_without_padding_decodes():
    assert decode_payload(SEED_B64_UNPADDED, LIMIT) == SEED_SCRIPT


@pytest.mark.parametrize("padding", ["", "=", "=="])
def test_any_short_padding_is_accepted(padding):
    assert decode_payload(b64("#!/bin/sh\nid\n").rstrip("=") + padding, LIMIT) == "#!/bin/sh\nid\n"


# "~~~" and "???" encode to "fn5+" and "Pz8/": the test needs both alphabets' characters.
URLSAFE_SCRIPT = "#!/bin/sh\necho ~~~ ???\n"


def test_urlsafe_base64_is_accepted():
    standard = b64(URLSAFE_SCRIPT)
    assert "+" in standard and "/" in standard
    urlsafe = base64.urlsafe_b64encode(URLSAFE_SCRIPT.encode()).decode()
    assert "-" in urlsafe and "_" in urlsafe
    assert decode_payload(urlsafe, LIMIT) == URLSAFE_SCRIPT
    assert decode_payload(urlsafe.rstrip("="), LIMIT) == URLSAFE_SCRIPT
    assert decode_payload(standard, LIMIT) == URLSAFE_SCRIPT


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: base64.encodebytes(s.encode()).decode(),  # `base64` tool: 76 columns + \n
        lambda s: base64.encodebytes(s.encode()).decode().replace("\n", "\r\n"),
        lambda s: "  " + b64(s)[:10] + " \t" + b64(s)[10:] + "\n\n",
    ],
    ids=["wrapped-76", "wrapped-crlf", "spaces-and-tabs"],
)
def test_whitespace_inside_the_payload_is_ignored(wrap):
    script = SEED_SCRIPT * 3  # longer than one 76-column line
    payload = wrap(script)
    assert any(c in payload for c in " \t\n")
    assert decode_payload(payload, LIMIT) == script


def test_script_exactly_at_the_limit_is_accepted():
    script = "#!/bin/sh\n" + "x" * 90 + "\n"
    assert decode_payload(b64(script), len(script.encode())) == script


def test_utf8_script_is_accepted():
    script = "#!/bin/sh\n#PBS -N caf\u00e9\necho 'h\u00e9llo \u2603'\n"
    assert decode_payload(b64(script), LIMIT) == script


# --- decode_payload: rejections -----------------------------------------------------------


@pytest.mark.parametrize("payload", ["", "   ", "\n\t", None])
def test_empty_payload(payload):
    with pytest.raises(ScriptError) as info:
        decode_payload(payload, LIMIT)
    assert info.value.message == "payload is empty"
    assert info.value.line is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("IyEv$YmluL2Jhc2g", "unexpected character at position 5"),
        ("IyEvYmlu\u00e9L2Jh", "unexpected character at position 9"),
        ("payload=IyEvYmlu", "'=' padding before the end"),
        ("QQ==QQ==", "'=' padding before the end"),
        ("QUJDR", "its length is wrong"),
        ("Q", "its length is wrong"),
    ],
)
def test_not_base64(payload, expected):
    with pytest.raises(ScriptError) as info:
        decode_payload(payload, LIMIT)
    assert info.value.message.startswith("payload is not valid base64")
    assert expected in info.value.message
    assert not isinstance(info.value, ScriptTooLarge)


@pytest.mark.parametrize("script", ["   \n\n\t\n", "\n"])
def test_whitespace_only_script_is_empty(script):
    with pytest.raises(ScriptError, match="^script is empty$"):
        decode_payload(b64(script), LIMIT)


def test_payload_of_only_padding_decodes_to_an_empty_script():
    with pytest.raises(ScriptError, match="^script is empty$"):
        decode_payload("====", LIMIT)


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (b"#!/bin/sh\n\xff\xfe\n", 2),
        (b"\xe9t\xe9\n", 1),  # Latin-1 "ete"
        (b"#!/bin/sh\necho\n\necho \xc3\n", 4),  # truncated UTF-8 sequence
    ],
)
def test_not_utf8(raw, line):
    with pytest.raises(ScriptError) as info:
        decode_payload(b64(raw), LIMIT)
    assert info.value.line == line
    assert info.value.message.startswith(f"Line {line}: script is not UTF-8 text")


@pytest.mark.parametrize(("raw", "line"), [(b"#!/bin/sh\n\x00\n", 2), (b"\x00", 1)])
def test_nul_byte(raw, line):
    with pytest.raises(ScriptError) as info:
        decode_payload(b64(raw), LIMIT)
    assert info.value.line == line
    assert info.value.message == (
        f"Line {line}: script contains a NUL byte; only text scripts can be submitted"
    )


@pytest.mark.parametrize(
    ("script", "line"),
    [
        ("#!/bin/bash\r\n#PBS -N x\r\necho\r\n", 1),
        ("#!/bin/bash\n#PBS -N x\necho hi\r\n", 3),
    ],
)
def test_crlf_line_endings(script, line):
    with pytest.raises(ScriptError) as info:
        decode_payload(b64(script), LIMIT)
    assert info.value.line == line
    assert info.value.message == (
        f"Line {line}: script contains CRLF (Windows) line endings; convert it with dos2unix"
    )


def test_byte_order_mark_is_refused():
    with pytest.raises(ScriptError, match="^Line 1: script starts with a byte order mark"):
        decode_payload(b64("\ufeff#!/bin/bash\n#PBS -N x\necho\n"), LIMIT)


def test_decoded_script_over_the_limit():
    script = "#!/bin/sh\n" + "x" * 91 + "\n"
    with pytest.raises(ScriptTooLarge) as info:
        decode_payload(b64(script), len(script.encode()) - 1)
    assert info.value.message == f"script is larger than the limit of {len(script) - 1} bytes"
    assert info.value.line is None


def test_huge_payload_is_refused_before_it_is_decoded():
    # Not even base64: only the early length check can answer "too large" for it.
    with pytest.raises(ScriptTooLarge):
        decode_payload("!" * 10_000, 1_000)


def test_wrapped_payload_near_the_limit_is_not_refused_early():
    script = "#!/bin/sh\n" + "e" * 4_000 + "\n"
    wrapped = base64.encodebytes(script.encode()).decode().replace("\n", "\r\n")
    assert decode_payload(wrapped, len(script)) == script


# --- parse_script: the seed ----------------------------------------------------------------


def test_seed_script_parses():
    request = parse_script(SEED_SCRIPT, NOW)
    assert request.script == SEED_SCRIPT
    assert request.name == "testjob" and request.name_given
    assert request.export_all is True
    assert request.join == "oe"
    assert request.output_path == "testjob_output.qlog"
    assert request.error_path is None
    assert request.project == "myproject"
    assert request.queue == "normal"
    assert request.resources == {"nodes": "1", "instance_type": "c5.large"}
    assert request.instance_types == ["c5.large"]
    assert (request.ncpus, request.nodes) == (1, 1)
    assert request.walltime_seconds is None and request.mem_bytes is None
    assert request.directives == [
        Directive(2, "-N", "testjob"),
        Directive(3, "-V", None),
        Directive(3, "-j", "oe"),
        Directive(3, "-o", "testjob_output.qlog"),
        Directive(4, "-P", "myproject"),
        Directive(5, "-q", "normal"),
        Directive(6, "-l", "nodes=1,instance_type=c5.large"),
    ]


def test_seed_payload_end_to_end():
    request = parse_script(decode_payload(SEED_B64_UNPADDED, LIMIT), NOW)
    assert resource_list(request) == {
        "instance_type": "c5.large",
        "ncpus": 1,
        "nodect": 1,
        "nodes": "1",
        "place": "scatter",
        "select": "1:ncpus=1",
    }


def test_defaults_without_directives():
    request = parse_script("#!/bin/sh\necho hi\n", NOW)
    assert request.name == "STDIN" and request.name_given is False
    assert request.queue is None
    assert request.resources == {}
    assert (request.ncpus, request.nodes) == (1, 1)
    assert request.join == "n" and request.mail_points == "a" and request.keep_files == "n"
    assert request.rerunable is True and request.hold is False and request.export_all is False
    assert request.directives == []


# --- parse_script: which lines are directives ---------------------------------------------


def test_directives_after_the_first_executable_line_are_ignored():
    request = parse_script(
        "#!/bin/bash\n#PBS -N first\necho start\n#PBS -N second\n#PBS -Z bogus\n", NOW
    )
    assert request.name == "first"
    assert [d.line for d in request.directives] == [2]


def test_blank_lines_and_comments_do_not_end_the_directives():
    request = parse_script(
        "#!/bin/bash\n\n# a comment\n   \n#!/not/a/shebang/but/a/comment\n#PBS -N late\nrun\n", NOW
    )
    assert request.name == "late"
    assert request.directives == [Directive(6, "-N", "late")]


def test_leading_whitespace_before_pbs_is_allowed():
    request = parse_script("#!/bin/sh\n   #PBS -N spaced\n\t#PBS -q normal\nrun\n", NOW)
    assert (request.name, request.queue) == ("spaced", "normal")


@pytest.mark.parametrize("line", ["#pbs -N x", "# PBS -N x", "##PBS -N x", "#  PBS -N x"])
def test_lines_that_are_not_pbs_directives_are_comments(line):
    assert parse(line).name == "STDIN"


def test_a_line_starting_with_a_non_ascii_blank_is_executable():
    request = parse_script("#!/bin/sh\n\u00a0echo\n#PBS -N x\n", NOW)
    assert request.name == "STDIN"


def test_script_without_any_command_is_accepted():
    assert parse_script("#PBS -N only_directives\n", NOW).name == "only_directives"


def test_empty_pbs_line_is_allowed():
    assert parse("#PBS", "#PBS   ").directives == []


# --- parse_script: tokenising --------------------------------------------------------------


def test_several_options_on_one_line():
    request = parse("#PBS -V -j oe -o out.log -e err.log -h -r n")
    assert request.export_all and request.hold
    assert (request.join, request.output_path, request.error_path) == ("oe", "out.log", "err.log")
    assert request.rerunable is False
    assert [d.option for d in request.directives] == ["-V", "-j", "-o", "-e", "-h", "-r"]


def test_grouped_flags_and_attached_values_follow_getopt():
    request = parse("#PBS -hV -Njob1 -lwalltime=10")
    assert request.hold and request.export_all
    assert request.name == "job1"
    assert request.walltime_seconds == 10
    assert request.directives[:3] == [
        Directive(2, "-h", None),
        Directive(2, "-V", None),
        Directive(2, "-N", "job1"),
    ]


@pytest.mark.parametrize(
    ("line", "attribute", "expected"),
    [
        ('#PBS -N "quoted_name"', "name", "quoted_name"),
        ("#PBS -N 'single'", "name", "single"),
        ('#PBS -o "my dir/out file.log"', "output_path", "my dir/out file.log"),
        ("#PBS -o 'it''s'", "output_path", "its"),
        ('#PBS -o "say \\"hi\\""', "output_path", 'say "hi"'),
        ("#PBS -o a\\ b", "output_path", "a b"),
        ('#PBS -e dir/"x y"/z', "error_path", "dir/x y/z"),
        ("#PBS -N job # the job's name", "name", "job"),
        ("#PBS -N job\t# comment", "name", "job"),
        ("#PBS -o a#b", "output_path", "a#b"),  # "#" inside a word is not a comment
        ("#PBS -p -5", "priority", -5),
    ],
)
def test_quoting_and_comments(line, attribute, expected):
    assert getattr(parse(line), attribute) == expected


@pytest.mark.parametrize("line", ['#PBS -N "open', "#PBS -N 'open", '#PBS -o "a\\"'])
def test_unterminated_quote(line):
    exc = rejected(f"#!/bin/sh\n{line}\n")
    assert exc.line == 2
    assert "unterminated" in exc.message and "quote" in exc.message


# --- parse_script: each option ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["testjob", "a", "12345", "1abc", "job.v2_final+x-1", "x" * 230, "A.B"],
)
def test_name(name):
    request = parse(f"#PBS -N {name}")
    assert request.name == name and request.name_given


@pytest.mark.parametrize(
    ("value", "queue"),
    [("normal", "normal"), ("high@pbshost", "high"), ("q-1_x@head.example.com:15001", "q-1_x"),
     ("@pbshost", None), ("a" * 15, "a" * 15)],
)
def test_queue(value, queue):
    assert parse(f"#PBS -q {value}").queue == queue


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("04:00:00", 4 * 3600),
        ("100:00:00", 100 * 3600),
        ("90:00", 90 * 60),
        ("1:2:3", 3723),
        ("3600", 3600),
        ("0:0:1", 1),
        ("00:90:90", 90 * 60 + 90),
    ],
)
def test_walltime(value, seconds):
    request = parse(f"#PBS -l walltime={value}")
    assert request.walltime_seconds == seconds
    assert request.resources["walltime"] == value


@pytest.mark.parametrize(
    ("value", "nbytes"),
    [
        ("8gb", 8 * 2**30),
        ("8GB", 8 * 2**30),
        ("512mb", 512 * 2**20),
        ("100kb", 100 * 1024),
        ("2tb", 2 * 2**40),
        ("1pb", 2**50),
        ("4g", 4 * 2**30),
        ("7b", 7),
        ("1000", 1000),
        ("3w", 24),
        ("2kw", 2 * 1024 * 8),
        ("1Mw", 2**20 * 8),
    ],
)
def test_mem(value, nbytes):
    request = parse(f"#PBS -l mem={value}")
    assert request.mem_bytes == nbytes
    assert request.resources["mem"] == value


def test_several_resources_and_several_l_options_accumulate():
    request = parse(
        "#PBS -l walltime=1:00:00,mem=2gb",
        "#PBS -l ncpus=4 -l instance_type=c5.large+m5.xlarge",
        "#PBS -l spot_price=auto,scratch_size=100",
    )
    assert request.resources == {
        "walltime": "1:00:00",
        "mem": "2gb",
        "ncpus": "4",
        "instance_type": "c5.large+m5.xlarge",
        "spot_price": "auto",
        "scratch_size": "100",
    }
    assert request.instance_types == ["c5.large", "m5.xlarge"]
    assert (request.ncpus, request.nodes, request.mem_bytes) == (4, 1, 2 * 2**30)


def test_a_later_resource_replaces_an_earlier_one():
    request = parse("#PBS -l walltime=1:00:00", "#PBS -l walltime=2:00:00")
    assert request.walltime_seconds == 7200


@pytest.mark.parametrize(
    ("select", "ncpus", "nodes", "mem_bytes"),
    [
        ("1:ncpus=1", 1, 1, None),
        ("2:ncpus=4:mem=8gb", 8, 2, 16 * 2**30),
        ("2:ncpus=4+1:ncpus=2:mem=1gb", 10, 3, 2**30),
        ("3", 3, 3, None),  # ncpus defaults to 1 per chunk
        ("ncpus=16", 16, 1, None),  # count defaults to 1
        ("2:mem=1gb", 2, 2, 2 * 2**30),
        ("1:ncpus=0:ngpus=1+1:ncpus=2", 2, 2, None),
        ("4:ncpus=2:mpiprocs=2:ompthreads=1:host=node01:model=abc", 8, 4, None),
    ],
)
def test_select(select, ncpus, nodes, mem_bytes):
    request = parse(f"#PBS -l select={select}")
    assert (request.ncpus, request.nodes, request.mem_bytes) == (ncpus, nodes, mem_bytes)
    assert request.resources["select"] == select


def test_select_with_place():
    request = parse("#PBS -l select=2:ncpus=2", "#PBS -l place=scatter:excl")
    assert request.resources["place"] == "scatter:excl"


@pytest.mark.parametrize(
    "place", ["free", "pack", "scatter", "vscatter", "excl", "scatter:shared", "pack:group=switch"]
)
def test_place_values(place):
    assert parse(f"#PBS -l select=1:ncpus=1,place={place}").resources["place"] == place


@pytest.mark.parametrize(
    ("lines", "ncpus", "nodes"),
    [
        (["#PBS -l nodes=1"], 1, 1),
        (["#PBS -l nodes=4"], 4, 4),
        (["#PBS -l nodes=2:ppn=8"], 16, 2),
        (["#PBS -l nodes=1:ppn=4:bigmem"], 4, 1),
        (["#PBS -l nodes=2:ppn=2+1:ppn=4"], 8, 3),
        (["#PBS -l nodes=3:green:ncpus=2:ppn=2+2:red"], 14, 5),  # pbs_resources(7B) example
        (["#PBS -l nodes=2#excl"], 2, 2),
        # Job-wide ncpus beside nodes is split evenly over the chunks (pbs_resources(7B)).
        (["#PBS -l nodes=2", "#PBS -l ncpus=8"], 8, 2),
        (["#PBS -l nodes=2:ppn=3,ncpus=4"], 4, 2),
    ],
)
def test_nodes(lines, ncpus, nodes):
    request = parse(*lines)
    assert (request.ncpus, request.nodes) == (ncpus, nodes)


@pytest.mark.parametrize(("value", "ncpus"), [("1", 1), ("4", 4), ("128", 128)])
def test_ncpus_alone(value, ncpus):
    request = parse(f"#PBS -l ncpus={value}")
    assert (request.ncpus, request.nodes) == (ncpus, 1)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("out.log", "out.log"),
        ("/abs/dir/out.log", "/abs/dir/out.log"),
        ("headnode:/data/out.log", "/data/out.log"),
        ("ip-10-0-0-1.ec2.internal:rel/out.log", "rel/out.log"),
        ("../up/out.log", "../up/out.log"),
        ("dir/", "dir/"),
    ],
)
def test_output_and_error_paths(value, path):
    request = parse(f"#PBS -o {value} -e {value}")
    assert request.output_path == path and request.error_path == path


@pytest.mark.parametrize("join", ["oe", "eo", "n"])
def test_join(join):
    assert parse(f"#PBS -j {join}").join == join


def test_export_all():
    assert parse("#PBS -V").export_all is True


@pytest.mark.parametrize(
    ("lines", "variables"),
    [
        (["#PBS -v a=1,b=2"], {"a": "1", "b": "2"}),
        (["#PBS -v HOME_DIR"], {"HOME_DIR": ""}),  # bare name: export its value
        (["#PBS -v A=1", "#PBS -v B=x=y,C="], {"A": "1", "B": "x=y", "C": ""}),
        (['#PBS -v "MSG=hello world"'], {"MSG": "hello world"}),
        (["#PBS -v _X=/a/b:c"], {"_X": "/a/b:c"}),
    ],
)
def test_variables(lines, variables):
    assert parse(*lines).variables == variables


@pytest.mark.parametrize("value", ["myproject", "P-1.2_x+y", "1" * 64])
def test_project_and_account(value):
    request = parse(f"#PBS -P {value} -A {value}")
    assert request.project == value and request.account == value


def test_hold():
    assert parse("#PBS -h").hold is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1330", datetime(2026, 11, 28, 13, 30)),
        ("1330.45", datetime(2026, 11, 28, 13, 30, 45)),
        ("1130", datetime(2026, 11, 29, 11, 30)),  # past today: tomorrow
        ("1200", datetime(2026, 11, 29, 12, 0)),  # now is not in the future
        ("301000", datetime(2026, 11, 30, 10, 0)),
        ("281100", datetime(2026, 12, 28, 11, 0)),  # past this month: next month
        ("311000", datetime(2026, 12, 31, 10, 0)),  # November has no 31st
        ("12251800", datetime(2026, 12, 25, 18, 0)),
        ("01011200", datetime(2027, 1, 1, 12, 0)),  # past this year: next year
        ("02291200", datetime(2028, 2, 29, 12, 0)),  # next Feb 29
        ("2701011200", datetime(2027, 1, 1, 12, 0)),
        ("202501011200", datetime(2025, 1, 1, 12, 0)),  # fully given past time is kept
        ("203012312359.59", datetime(2030, 12, 31, 23, 59, 59)),
    ],
)
def test_start_after(value, expected):
    assert parse(f"#PBS -a {value}").start_after == expected


def test_start_after_defaults_to_the_current_time():
    request = parse_script("#PBS -a 0000\necho\n")
    assert request.start_after is not None and request.start_after > datetime.now()


@pytest.mark.parametrize("points", ["n", "a", "b", "e", "abe", "ea", "be"])
def test_mail_points(points):
    assert parse(f"#PBS -m {points}").mail_points == points


@pytest.mark.parametrize("users", ["alice", "alice@example.com", "alice,bob@host.example"])
def test_mail_users(users):
    assert parse(f"#PBS -M {users}").mail_users == users


@pytest.mark.parametrize(("value", "rerunable"), [("y", True), ("n", False)])
def test_rerunable(value, rerunable):
    assert parse(f"#PBS -r {value}").rerunable is rerunable


@pytest.mark.parametrize(
    ("lines", "dependencies"),
    [
        (["#PBS -W depend=afterok:123"], [Dependency("afterok", ("123",))]),
        (
            ["#PBS -W depend=afterok:12:13.head,afterany:14[]"],
            [Dependency("afterok", ("12", "13.head")), Dependency("afterany", ("14[]",))],
        ),
        (
            ["#PBS -W depend=after:1", "#PBS -W depend=afternotok:2[3].srv.example.com"],
            [Dependency("after", ("1",)), Dependency("afternotok", ("2[3].srv.example.com",))],
        ),
    ],
)
def test_depend(lines, dependencies):
    assert parse(*lines).dependencies == dependencies


@pytest.mark.parametrize("groups", ["hpc", "hpc@head,users@other"])
def test_group_list(groups):
    assert parse(f"#PBS -W group_list={groups}").group_list == groups


@pytest.mark.parametrize("sandbox", ["HOME", "PRIVATE", "private"])
def test_sandbox_is_accepted_and_kept_in_directives(sandbox):
    request = parse(f"#PBS -W sandbox={sandbox}")
    assert request.directives == [Directive(2, "-W", f"sandbox={sandbox}")]


@pytest.mark.parametrize(
    ("value", "array"),
    [
        ("1-3", ArraySpec(1, 3)),
        ("0-100:10", ArraySpec(0, 100, 10)),
        ("1-10%2", ArraySpec(1, 10, 1, 2)),
        ("1-9:2%3", ArraySpec(1, 9, 2, 3)),
        ("5-5", ArraySpec(5, 5)),
        ("1-10000", ArraySpec(1, 10000)),
        ("0-199998:20", ArraySpec(0, 199998, 20)),  # 10000 subjobs
    ],
)
def test_array(value, array):
    request = parse(f"#PBS -J {value}")
    assert request.array == array
    assert str(request.array) == value


@pytest.mark.parametrize("shell", ["/bin/bash", "/usr/bin/env", "/opt/my-shell_2/zsh"])
def test_shell(shell):
    assert parse(f"#PBS -S {shell}").shell == shell


@pytest.mark.parametrize("keep", ["n", "o", "e", "oe", "eo", "d", "od", "oed", "doe"])
def test_keep_files(keep):
    assert parse(f"#PBS -k {keep}").keep_files == keep


@pytest.mark.parametrize(("value", "priority"), [("0", 0), ("-1024", -1024), ("1023", 1023),
                                                  ("+5", 5), ("-7", -7)])
def test_priority(value, priority):
    assert parse(f"#PBS -p {value}").priority == priority


def test_user_list_is_accepted_and_ignored():
    request = parse("#PBS -u alice,bob@host")
    assert request.directives == [Directive(2, "-u", "alice,bob@host")]


def test_later_options_replace_earlier_ones():
    request = parse("#PBS -N first -q normal -j oe", "#PBS -N second -q high -j n")
    assert (request.name, request.queue, request.join) == ("second", "high", "n")


def test_every_option_is_recorded_in_directives():
    request = parse(
        "#PBS -N n -q q -l walltime=1 -o o -e e -j oe -V -v A=1 -P p -A a -h",
        "#PBS -a 1300 -m abe -M u -r y -W depend=afterok:1 -J 1-2 -S /bin/sh -k oe -p 1 -u u",
    )
    assert [d.option for d in request.directives] == [
        "-N", "-q", "-l", "-o", "-e", "-j", "-V", "-v", "-P", "-A", "-h",
        "-a", "-m", "-M", "-r", "-W", "-J", "-S", "-k", "-p", "-u",
    ]  # fmt: skip
    assert {d.line for d in request.directives} == {2, 3}


# --- parse_script: rejections, each naming the line -----------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("#PBS -Z foo", 'unknown option -Z in "#PBS -Z foo"'),
        ("#PBS -x", "unknown option -x"),
        ("#PBS --name=x", "unknown option --"),
        ("#PBS -I", "option -I is not supported"),
        ("#PBS -c n", "option -c is not supported"),
        ("#PBS -C '#MY'", "option -C is not supported"),
        ("#PBS testjob", 'unexpected argument "testjob"'),
        ("#PBS -N job extra", 'unexpected argument "extra"'),
        ("#PBS -", 'unexpected argument "-"'),
        ("#PBS-N x", '"#PBS" must be followed by a space'),
        ("#PBSPRO -N x", '"#PBS" must be followed by a space'),
        # missing and empty values
        ("#PBS -N", "option -N is missing its value"),
        ("#PBS -l", "option -l is missing its value"),
        ("#PBS -N -j oe", "option -N is missing its value"),
        ("#PBS -V -q", "option -q is missing its value"),
        ('#PBS -N ""', "option -N has an empty value"),
        # -N
        ("#PBS -N " + "e" * 231, "job name is too long (231 characters, at most 230)"),
        ("#PBS -N 'a b'", 'job name "a b" contains characters that are not allowed'),
        ("#PBS -N job/1", "contains characters that are not allowed"),
        ("#PBS -N caf\u00e9", "contains characters that are not allowed"),
        ("#PBS -N a;rm", "contains characters that are not allowed"),
        # -q
        ("#PBS -q 1queue", 'queue name "1queue" is not valid'),
        ("#PBS -q " + "q" * 16, "is not valid"),
        ("#PBS -q bad.queue", "is not valid"),
        ("#PBS -q normal@", 'server name "" in -q is not valid'),
        ("#PBS -q normal@bad/host", "in -q is not valid"),
        # -l syntax
        ("#PBS -l walltime", "resource walltime has no value"),
        ("#PBS -l walltime=", "resource walltime has an empty value"),
        ("#PBS -l 1bad=x", '"1bad=x" is not a valid resource'),
        ("#PBS -l =x", '"=x" is not a valid resource'),
        ("#PBS -l nodes=1,,walltime=1", '"" is not a valid resource'),
        ("#PBS -l foo-bar=1", "is not a valid resource"),
        ("#PBS -l instance_type=c5\u00e9", "value of resource instance_type is not valid"),
        ("#PBS -l \"instance_type=a b\"", "value of resource instance_type is not valid"),
        ("#PBS -l \"spot_price='1'\"", "value of resource spot_price is not valid"),
        # walltime
        ("#PBS -l walltime=abc", 'walltime "abc" is not valid'),
        ("#PBS -l walltime=-5", 'walltime "-5" is not valid'),
        ("#PBS -l walltime=1:2:3:4:5", "is not valid"),
        ("#PBS -l walltime=1:00:00.5", "is not valid"),
        ("#PBS -l walltime=1h", "is not valid"),
        ("#PBS -l walltime=:30", "is not valid"),
        ("#PBS -l walltime=0", "walltime must be at least 1 second"),
        ("#PBS -l walltime=00:00:00", "walltime must be at least 1 second"),
        ("#PBS -l walltime=9999999999", "walltime is too long"),
        # mem
        ("#PBS -l mem=8gigs", 'mem "8gigs" is not valid'),
        ("#PBS -l mem=1.5gb", "is not valid"),
        ("#PBS -l mem=gb", "is not valid"),
        ("#PBS -l mem=-1gb", "is not valid"),
        ("#PBS -l mem=8bb", "is not valid"),
        ("#PBS -l mem=0", "mem must be more than 0"),
        ("#PBS -l mem=99999999999pb", "mem is too large"),
        # ncpus
        ("#PBS -l ncpus=0", 'ncpus "0" is not valid'),
        ("#PBS -l ncpus=two", "is not valid"),
        ("#PBS -l ncpus=2000000", "is not valid"),
        # select
        ("#PBS -l select=abc", 'select chunk "abc" is not valid'),
        ("#PBS -l select=", "resource select has an empty value"),
        ("#PBS -l select=2:ncpus", 'select chunk "2:ncpus" is not valid'),
        ("#PBS -l select=1:ncpus=2+", 'select chunk "" is not valid'),
        ("#PBS -l select=1:ncpus=a=b", "is not valid"),
        ("#PBS -l select=0:ncpus=1", "the chunk count in select"),
        ("#PBS -l select=1:ncpus=x", 'ncpus in select "x" is not valid'),
        ("#PBS -l select=1:mem=lots", 'mem in select "lots" is not valid'),
        ("#PBS -l select=1:ncpus=0", "select requests no cpus at all"),
        # nodes
        ("#PBS -l nodes=node01", 'nodes "node01" does not start with a node count'),
        ("#PBS -l nodes=node01:ppn=2", "does not start with a node count"),
        ("#PBS -l nodes=0", 'nodes "0" is not valid'),
        ("#PBS -l nodes=1:ppn=0", 'ppn "0" is not valid'),
        ("#PBS -l nodes=1:ppn=x", 'ppn "x" is not valid'),
        ("#PBS -l nodes=1:gpus=2", '"gpus=2" is not valid in nodes'),
        ("#PBS -l nodes=1#bad-suffix", "nodes suffix"),
        ("#PBS -l nodes=1:ncpus=0", "nodes requests no cpus at all"),
        # place
        ("#PBS -l place=everywhere,select=1", 'place "everywhere" is not valid'),
        ("#PBS -l select=1,place=scatter:group=", "is not valid"),
        ("#PBS -l place=scatter", "place cannot be used without select"),
        # -o / -e
        ("#PBS -o host:", "option -o has an empty path"),
        ("#PBS -e host:", "option -e has an empty path"),
        ("#PBS -o 'a\u0007b'", "path of -o contains control characters"),
        # -j
        ("#PBS -j o", '-j "o" is not valid'),
        ("#PBS -j oe2", "is not valid"),
        # -v
        ("#PBS -v 1A=2", '"1A" is not a valid variable name in -v'),
        ("#PBS -v A=1,", '"" is not a valid variable name'),
        ("#PBS -v 'A-B=1'", "is not a valid variable name"),
        ("#PBS -v 'FOO=a\"b'", "value of variable FOO in -v contains quotes"),
        # -P / -A
        ("#PBS -P 'my project'", 'project (-P) "my project" is not valid'),
        ("#PBS -A " + "a" * 65, "account (-A)"),
        ("#PBS -A acct/1", "account (-A)"),
        # -a
        ("#PBS -a 2400", '-a "2400" is not a valid date and time'),
        ("#PBS -a 1260", "is not a valid date and time"),
        ("#PBS -a 1200.60", "is not a valid date and time"),
        ("#PBS -a 123", "is not a valid date and time"),
        ("#PBS -a 1200.5", "is not a valid date and time"),
        ("#PBS -a 12:00", "is not a valid date and time"),
        ("#PBS -a 13011200", "is not a valid date and time"),
        ("#PBS -a 00011200", "is not a valid date and time"),
        ("#PBS -a 001200", "is not a valid date and time"),
        ("#PBS -a 321200", "is not a valid date and time"),
        ("#PBS -a 02301200", "is not a valid date and time"),
        ("#PBS -a 202502291200", "is not a valid date and time"),
        ("#PBS -a 000001011200", "is not a valid date and time"),
        # -m / -M
        ("#PBS -m x", '-m "x" is not valid'),
        ("#PBS -m an", "is not valid"),
        ("#PBS -m aa", "is not valid"),
        ("#PBS -M 'a b'", 'mail user "a b" in -M is not valid'),
        ("#PBS -M alice,", 'mail user "" in -M is not valid'),
        # -r
        ("#PBS -r yes", '-r "yes" is not valid'),
        # -W
        ("#PBS -W umask=022", '-W attribute "umask" is not supported'),
        ("#PBS -W depend", '-W "depend" is not valid'),
        ("#PBS -W depend=", '-W "depend=" is not valid'),
        ("#PBS -W depend=before:12", 'dependency type "before" is not supported'),
        ("#PBS -W depend=afterok", "dependency afterok names no job"),
        ("#PBS -W depend=afterok:", 'job id "" in depend is not valid'),
        ("#PBS -W depend=afterok:abc", 'job id "abc" in depend is not valid'),
        ("#PBS -W 'depend=afterok:1;reboot'", "in depend is not valid"),
        ("#PBS -W depend=afterok:1,", 'dependency type "" is not supported'),
        ("#PBS -W group_list=bad/group", 'group "bad/group" in group_list is not valid'),
        ("#PBS -W sandbox=ELSEWHERE", 'sandbox "ELSEWHERE" is not valid'),
        # -J
        ("#PBS -J 1", '-J "1" is not valid'),
        ("#PBS -J a-b", "is not valid"),
        ("#PBS -J 5-1", "array start 5 is greater than its end 1"),
        ("#PBS -J 1-10:0", "array step must be at least 1"),
        ("#PBS -J 1-10%0", "array %max_running must be at least 1"),
        ("#PBS -J 1-10001", "array has 10001 subjobs; at most 10000 are allowed"),
        ("#PBS -J 0-999999999", "at most 10000"),
        # -S
        ("#PBS -S bash", 'shell "bash" is not valid'),
        ("#PBS -S '/bin/ba sh'", "is not valid"),
        ("#PBS -S /bin/bash@host", "is not valid"),
        # -k
        ("#PBS -k x", '-k "x" is not valid'),
        ("#PBS -k oo", "is not valid"),
        ("#PBS -k on", "is not valid"),
        # -p
        ("#PBS -p 1024", 'priority "1024" is not valid'),
        ("#PBS -p -1025", "is not valid"),
        ("#PBS -p high", "is not valid"),
        # -u
        ("#PBS -u 'a b'", 'user "a b" in -u is not valid'),
    ],
)
def test_rejected_directive_names_line_problem_and_directive(line, message):
    exc = rejected(f"#!/bin/bash\n#PBS -N ok\n\n{line}\necho done\n")
    assert exc.line == 4
    assert exc.message.startswith("Line 4: ")
    assert message in exc.message
    assert 'in "#PBS' in exc.message  # the offending directive is quoted


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["#PBS -l nodes=1", "#PBS -l select=1:ncpus=2"], 3, "nodes cannot be used with select"),
        (["#PBS -l select=1:ncpus=2", "#PBS -N x", "#PBS -l nodes=1"], 4, "nodes cannot be used"),
        (["#PBS -l nodes=1,place=scatter"], 2, "nodes cannot be used with place"),
        (
            ["#PBS -l select=1:ncpus=2", "#PBS -l ncpus=4"],
            3,
            "ncpus cannot be requested on its own together with select",
        ),
        (
            ["#PBS -l mem=4gb", "#PBS -l select=2:ncpus=1"],
            3,
            "mem cannot be requested on its own together with select",
        ),
        (["#PBS -l nodes=2", "#PBS -l ncpus=5"], 3, "ncpus=5 cannot be split evenly over 2 nodes"),
        (["#PBS -l place=pack", "#PBS -l walltime=1"], 2, "place cannot be used without select"),
    ],
)
def test_conflicting_resources_are_reported_on_the_later_line(lines, line, message):
    exc = rejected("#!/bin/sh\n" + "".join(f"{x}\n" for x in lines) + "run\n")
    assert exc.line == line
    assert exc.message.startswith(f"Line {line}: {message}")


def test_message_quotes_only_the_offending_directive():
    secret = "export DB_PASSWORD=hunter2"
    exc = rejected(f"#!/bin/bash\n#PBS -N fine\n#PBS -Z foo\n{secret}\n")
    assert exc.message == 'Line 3: unknown option -Z in "#PBS -Z foo"'
    assert "hunter2" not in exc.message and "fine" not in exc.message


def test_long_directive_is_truncated_in_the_message():
    exc = rejected("#PBS -N " + "n" * 5000 + "\n")
    assert exc.line == 1
    assert len(exc.message) < 250
    assert '..."' in exc.message


def test_control_characters_in_a_directive_are_escaped_in_the_message():
    exc = rejected("#PBS -Z \x1b[31mred\n")
    assert "\x1b" not in exc.message
    assert "\\x1b" in exc.message


@pytest.mark.parametrize(
    ("script", "line", "message"),
    [
        ("#!/bin/sh\r\necho\r\n", 1, "CRLF"),
        ("#!/bin/sh\n#PBS -N a\x00b\n", 2, "NUL byte"),
        ("\ufeff#PBS -N x\n", 1, "byte order mark"),
    ],
)
def test_parse_script_checks_the_text_itself(script, line, message):
    exc = rejected(script)
    assert exc.line == line and message in exc.message


@pytest.mark.parametrize("script", ["", "  \n\t\n"])
def test_parse_script_rejects_an_empty_script(script):
    assert rejected(script).message == "script is empty"


# --- resource_list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["#PBS -l nodes=1,instance_type=c5.large"],  # the seed, as OpenPBS showed it
            {"instance_type": "c5.large", "ncpus": 1, "nodect": 1, "nodes": "1",
             "place": "scatter", "select": "1:ncpus=1"},
        ),
        (
            ["#PBS -l select=1:ncpus=1"],  # fixture 21: select without place is "free"
            {"ncpus": 1, "nodect": 1, "place": "free", "select": "1:ncpus=1"},
        ),
        (
            ["#PBS -l select=1:ncpus=1,instance_type=c5.large"],  # fixture 23
            {"instance_type": "c5.large", "ncpus": 1, "nodect": 1, "place": "free",
             "select": "1:ncpus=1"},
        ),
        (
            ["#PBS -l select=2:ncpus=4:mem=8gb+1:ncpus=2", "#PBS -l place=scatter:excl",
             "#PBS -l walltime=100:00:00"],
            {"mem": "16gb", "ncpus": 10, "nodect": 3, "place": "scatter:excl",
             "select": "2:ncpus=4:mem=8gb+1:ncpus=2", "walltime": "100:00:00"},
        ),
        (
            ["#PBS -l select=ncpus=16"],  # select is shown as written
            {"ncpus": 16, "nodect": 1, "place": "free", "select": "ncpus=16"},
        ),
        (
            [],  # nothing asked: one chunk of one cpu, placed "pack"
            {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1"},
        ),
        (
            ["#PBS -l ncpus=4,mem=2048mb,walltime=90:00"],
            {"mem": "2gb", "ncpus": 4, "nodect": 1, "place": "pack",
             "select": "1:ncpus=4:mem=2gb", "walltime": "01:30:00"},
        ),
        (
            ["#PBS -l walltime=3600,spot_price=auto"],
            {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1",
             "spot_price": "auto", "walltime": "01:00:00"},
        ),
        (
            ["#PBS -l nodes=2:ppn=4"],
            {"ncpus": 8, "nodect": 2, "nodes": "2:ppn=4", "place": "scatter",
             "select": "2:ncpus=4:mpiprocs=4"},
        ),
        (
            ["#PBS -l mem=16gb -l nodes=4"],  # pbs_resources(7B): mem split over the chunks
            {"mem": "16gb", "ncpus": 4, "nodect": 4, "nodes": "4", "place": "scatter",
             "select": "4:ncpus=1:mem=4gb"},
        ),
        (
            ["#PBS -l nodes=3,mem=1gb"],  # not divisible: rounded up to a kb
            {"mem": "1gb", "ncpus": 3, "nodect": 3, "nodes": "3", "place": "scatter",
             "select": "3:ncpus=1:mem=349526kb"},
        ),
        (
            ["#PBS -l nodes=2,ncpus=8"],
            {"ncpus": 8, "nodect": 2, "nodes": "2", "place": "scatter",
             "select": "2:ncpus=4"},
        ),
        (
            ["#PBS -l nodes=3:green:ncpus=2:ppn=2+2:red"],  # pbs_resources(7B) example
            {"ncpus": 14, "nodect": 5, "nodes": "3:green:ncpus=2:ppn=2+2:red",
             "place": "scatter",
             "select": "3:green=True:ncpus=4:mpiprocs=2+2:red=True:ncpus=1"},
        ),
        (
            ["#PBS -l nodes=2:ppn=2#excl"],
            {"ncpus": 4, "nodect": 2, "nodes": "2:ppn=2#excl", "place": "scatter:excl",
             "select": "2:ncpus=2:mpiprocs=2"},
        ),
        (
            ["#PBS -l nodes=1#shared#bigmem"],
            {"ncpus": 1, "nodect": 1, "nodes": "1#shared#bigmem", "place": "scatter:shared",
             "select": "1:bigmem=True:ncpus=1"},
        ),
    ],
)
def test_resource_list(lines, expected):
    shown = resource_list(parse(*lines))
    assert shown == expected
    assert list(shown) == sorted(shown)  # qstat lists them sorted
    assert all(isinstance(v, int) == (k in ("ncpus", "nodect")) for k, v in shown.items())


def test_resource_list_follows_a_request_changed_by_the_service():
    request = parse("#PBS -l select=1:ncpus=2")
    request.resources["instance_type"] = "m5.large"  # e.g. a queue default
    request.walltime_seconds = 7200
    shown = resource_list(request)
    assert shown["instance_type"] == "m5.large"
    assert shown["walltime"] == "02:00:00"


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"nodes": "1", "select": "1"}, "nodes cannot be used with select"),
        ({"ncpus": "many"}, 'ncpus "many" is not valid'),
        ({"nodes": "2", "ncpus": "x"}, 'ncpus "x" is not valid'),
        ({"walltime": "soon"}, 'walltime "soon" is not valid'),
    ],
)
def test_resource_list_of_an_invalid_request_raises_script_error(resources, message):
    with pytest.raises(ScriptError) as info:
        resource_list(JobRequest(script="", resources=resources))
    assert info.value.line is None
    assert info.value.message.startswith(message)


# --- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "00:00:00"), (1, "00:00:01"), (3723, "01:02:03"), (4 * 3600, "04:00:00"),
     (100 * 3600, "100:00:00"), (359999, "99:59:59"), (1_000_000, "277:46:40")],
)
def test_format_walltime(seconds, text):
    assert format_walltime(seconds) == text


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "0b"),
        (7, "7b"),
        (1023, "1023b"),
        (1024, "1kb"),
        (100 * 1024, "100kb"),
        (1536, "1536b"),
        (512 * 2**20, "512mb"),
        (1536 * 2**20, "1536mb"),
        (8 * 2**30, "8gb"),
        (2**40, "1tb"),
        (3 * 2**50, "3pb"),
        (2**60, "1024pb"),
    ],
)
def test_format_mem(nbytes, text):
    assert format_mem(nbytes) == text


@pytest.mark.parametrize("text", ["8gb", "512mb", "100kb", "7b", "3tb"])
def test_format_mem_round_trips_through_parsing(text):
    assert format_mem(parse(f"#PBS -l mem={text}").mem_bytes) == text


@pytest.mark.parametrize("formatter", [format_walltime, format_mem])
def test_formatters_refuse_negative_numbers(formatter):
    with pytest.raises(ValueError):
        formatter(-1)
