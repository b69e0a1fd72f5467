"""Schemathesis hooks for scripts/api-schema-test.sh: the two places where
a request the document allows cannot be sent as generated.

1. A logs request that follows streams until the client leaves, so a
   generated `follow` that the router reads as true ("true", "1", "yes",
   "") is sent as "false". The stream itself is tested in tests/exec_logs.rs.
2. A valid exec body names a program, a user and a directory that must
   exist on this machine, which no schema can say: in a body generated as
   valid, the program becomes `/usr/bin/printf '%s\n'` (the generated
   arguments, env and stdin stay), a named user `root` and a named
   directory `/`. Invalid bodies are sent as generated (the server must
   refuse them with 400). The check `exec_prints_its_arguments` then asks
   that such a command's answer is what it printed: each argument on a
   line and exit 0, or, killed at its deadline, a part of that.

Every phase sends through `before_call`, so every phase is covered.
"""

import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

FOLLOWS = {"true", "1", "yes", ""}
PRINTF = ["/usr/bin/printf", "%s\\n"]


def _follows(value):
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(v is True or str(v).lower() in FOLLOWS for v in values)


def _body_is_valid(case):
    meta = case.meta
    if meta is None:
        return False
    body = meta.components.get(ParameterLocation.BODY)
    return body is not None and body.mode == GenerationMode.POSITIVE


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path.endswith("/logs") and case.query and "follow" in case.query:
        if _follows(case.query["follow"]):
            case.query["follow"] = "false"
    if case.method.upper() == "POST" and case.path.endswith("/exec"):
        body = case.body
        if not isinstance(body, dict) or not _body_is_valid(case):
            return
        cmd = body.get("cmd")
        if isinstance(cmd, list) and cmd:
            body["cmd"] = PRINTF + cmd[1:]
        if body.get("user"):
            body["user"] = "root"
        if body.get("working_dir"):
            body["working_dir"] = "/"


@schemathesis.check
def exec_prints_its_arguments(ctx, response, case):
    """A command sent as `printf '%s\\n' ARGS...` answers what it printed."""
    body = case.body
    if not (case.method.upper() == "POST" and case.path.endswith("/exec")):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("cmd"), list):
        return None
    if body["cmd"][:2] != PRINTF:
        return None
    if response.status_code != 200:
        return None
    answer = response.json()
    want = "".join(arg + "\n" for arg in body["cmd"][2:]) or "\n"
    # A deadline of a millisecond or two may pass before printf exits: then
    # it was killed, and what it printed until then is a prefix.
    killed = answer.get("timed_out") and answer.get("signal") == 9
    done = answer.get("exit_code") == 0 and not answer.get("timed_out")
    out = answer.get("stdout", "")
    if not ((done and out == want) or (killed and want.startswith(out))):
        raise AssertionError(f"printf printed {want!r} but the answer says {answer!r}")
    return None
