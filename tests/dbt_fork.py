"""dbt's own CLI for the tests, each command in a process forked from one that has imported dbt.

`import dbt.cli.main` takes about 3 s of CPU, half of a small dbt command, and the tests run some
forty dbt commands of their own. A server per test process imports dbt's CLI once, and nothing
else (no engine, no thread), then forks a child per command. The child takes the command's
folder, environment, arguments and output files, and runs what the `dbt` console script runs,
`sys.exit(cli())`: each command is still a process of its own, which sees no state of another.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

# The server's program: one request per line on stdin, then two lines back on stdout, the
# child's pid when it starts and its exit status (negative: the signal) when it ends.
_SERVE = r"""
import json, os, sys
sys.path[0] = os.path.dirname(sys.executable)  # where the console script's own path starts
from dbt.cli.main import cli

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = request["argv"]
        sys.exit(cli())
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class _Server:
    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ECOM_", "DBT_"))}
        self.process = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
        self.pending = b""
        atexit.register(self.process.stdin.close)  # the server ends at the end of its input

    def reply(self, deadline: float | None) -> int:
        # poll, not select: select takes no descriptor from 1024 on, and a test process that opened
        # many warehouses in-process (the engine keeps their files open) starts its server there.
        poller = select.poll()
        poller.register(self.process.stdout, select.POLLIN)
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not poller.poll(None if left is None else left * 1000):
                raise TimeoutError
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"the dbt fork server ended with status {self.process.wait()}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return int(line)


_server: _Server | None = None


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """`subprocess.run([BIN / "dbt", *args], ..., capture_output=True, text=True, timeout=timeout)`."""
    global _server
    if _server is None or _server.process.poll() is not None:
        _server = _Server()
    argv = [str(BIN / "dbt"), *args]
    with tempfile.TemporaryDirectory() as folder:
        stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
        request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(stdout), "stderr": str(stderr)}
        _server.process.stdin.write(json.dumps(request).encode() + b"\n")
        _server.process.stdin.flush()
        deadline = time.monotonic() + timeout
        try:
            pid = _server.reply(None)
            try:
                code = _server.reply(deadline)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                _server.reply(None)
                code = None
        except BaseException:  # an interrupted wait leaves replies unread: a new server next time
            _server.process.kill()
            _server = None
            raise
        out, err = stdout.read_text(errors="replace"), stderr.read_text(errors="replace")
    if code is None:
        raise subprocess.TimeoutExpired(argv, timeout, out, err)
    return subprocess.CompletedProcess(argv, code, out, err)
