"""Schemathesis hooks for scripts/api-schema-test.sh: the two places where
a request the document allows cannot be sent as generated.

1. A logs request that follows streams until the client leaves, so a
   generated `follow` that the router reads as true ("true", "1", "yes",
   "") is sent as "false". The stream itself is tested in tests/exec_logs.rs.
2. A valid exec body names a program, a user and a directory that must
   exist on this machine, which no schema can say: in a body generated as
   valid, the program becomes `echo` (the generated arguments, env and
   stdin stay), a named user `root` and a named directory `/`. Invalid
   bodies are sent as generated (the server must refuse them with 400).

Every phase sends through `before_call`, so every phase is covered.
"""

import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

FOLLOWS = {"true", "1", "yes", ""}


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
            cmd[0] = "echo"
        if body.get("user"):
            body["user"] = "root"
        if body.get("working_dir"):
            body["working_dir"] = "/"
