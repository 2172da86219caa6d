"""Drives `moldau sql` in a pseudo-terminal: a multi-line CREATE STREAM, a windowless CTAS, a
push query with a LIMIT fed by `moldau produce`, a pull query, a push query cancelled with Ctrl-C (the shell
stays), error messages, and exit. Usage: sql_shell.py <moldau binary>. Exits non-zero with
what it was waiting for and what the shell printed."""

import os
import pty
import re
import select
import subprocess
import sys
import time

MOLDAU = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = os.environ.get("TMPDIR", "/tmp")
    os.execv(MOLDAU, [MOLDAU, "sql"])

seen = ""


def expect(pattern, timeout=60):
    """Reads until `pattern` (a regex) appears after what was matched before."""
    global seen
    deadline = time.time() + timeout
    while True:
        m = re.search(pattern, seen)
        if m:
            out = seen[: m.end()]
            seen = seen[m.end():]
            return m, out
        left = deadline - time.time()
        if left <= 0:
            sys.exit(f"timed out waiting for {pattern!r}; the shell printed:\n{seen}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                sys.exit(f"the shell ended while waiting for {pattern!r}:\n{seen}")
            seen += data.decode("utf-8", "replace").replace("\r", "")


def send(line):
    os.write(fd, line.encode())


m, _ = expect(r"embedded broker-sim at (\S+)")
bootstrap = m.group(1)
expect(r"moldau> ")
send("CREATE STREAM clicks (userid STRING KEY, url STRING)\n")
expect(r"-> ")
send("  WITH (kafka_topic='clicks', value_format='JSON', partitions=1);\n")
expect(r"stream clicks created")
send("SET 'auto.offset.reset'='earliest';\n")
expect(r"property 'auto.offset.reset' set")
send("CREATE TABLE counts AS SELECT userid, COUNT(*) AS n FROM clicks GROUP BY userid;\n")
expect(r"table counts created; query CTAS_COUNTS_\d+ running")
lines = "".join(f'u{i % 2}:{{"url":"/p{i}"}}\n' for i in range(4))
subprocess.run([MOLDAU, "produce", "-b", bootstrap, "--topic", "clicks", "--parse-key", "--key-separator", ":"],
               input=lines.encode(), check=True, timeout=60)
send("SELECT userid, upper(url) AS url FROM clicks EMIT CHANGES LIMIT 3;\n")
_, out = expect(r"\(3 rows; limit reached\)")
for row in ["u0           | /P0", "u1           | /P1", "u0           | /P2"]:
    if row not in out:
        sys.exit(f"missing push row {row!r} in:\n{out}")
# A pull query: the table's row, once its query committed it (asked again until then).
for attempt in range(120):
    send("SELECT userid, n FROM counts WHERE userid = 'u0';\n")
    m, out = expect(r"\((\d+) rows?\)|error: [^\n]*not ready[^\n]*\n")
    if m.group(1) == "1" and re.search(r"u0 +2\b", out):
        break
    time.sleep(0.5)
else:
    sys.exit(f"the pull query never answered u0's count of 2; last:\n{out}")
send("SELECT userid FROM clicks WHERE url = '/none' EMIT CHANGES;\n")
expect(r"-+-")
send("\x03")
expect(r"rows?; cancelled\)")
send("SELEC 1;\n")
expect(r"error: syntax error at line 1, column 1")
send("SELECT nope FROM clicks EMIT CHANGES;\n")
expect(r"error: .*nope")
send("SHOW QUERIES;\n")
expect(r"CTAS_COUNTS_\d+ +RUNNING")
send("exit\n")
_, status = os.waitpid(pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"the shell exited with {status}:\n{seen}")
print("ok")
