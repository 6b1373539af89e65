"""covnet's Python test API, NixOS-test style.

A covnet test script in Python runs in the host's ``python3`` with this
module on its path; covnet starts it and serves every call over a private
unix socket (``COVNET_SOCKET``), one JSON request per line, each answered
by one JSON line. Every operation is carried out by the runner, by the same
code as the Rhai API: timeouts, errors (naming the machine, the command and
the script line), subtests, JUnit and coverage are the same.

The script sees every machine as a global named after it, plus
``machines``, ``start_all()``, ``subtest(name)`` (a context manager),
``sleep(secs)``, ``collect_coverage(phase)``, ``partition(groups)``,
``heal()`` and ``machine(name)``. Only the standard library is used.
"""

import builtins
import contextlib
import io
import json
import keyword
import os
import socket
import sys
import traceback

__all__ = [
    "Machine",
    "StepFailure",
    "collect_coverage",
    "heal",
    "machine",
    "machines",
    "partition",
    "sleep",
    "start_all",
    "subtest",
]

# The script's file name, as compiled: frames in it give the caller's line.
_SCRIPT = None
_conn = None
machines = []


class StepFailure(Exception):
    """A failed step; its message names the machine, the step and why."""

    def __init__(self, failure_id, summary):
        super().__init__(summary)
        self.failure_id = failure_id
        self.summary = summary


class ProtocolError(RuntimeError):
    """The runner refused a request (a bug in this module or the runner)."""


class _Connection:
    def __init__(self, path):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._file = self._sock.makefile("rwb")

    def call(self, op, **args):
        line, column = _caller_position()
        request = {"op": op, "args": args, "line": line, "column": column}
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        reply = self._file.readline()
        if not reply:
            # The runner is gone (the run was interrupted): stop here.
            os._exit(3)
        reply = json.loads(reply)
        if "ok" in reply:
            return reply["ok"]
        if "fail" in reply:
            f = reply["fail"]
            raise StepFailure(f["id"], f["summary"])
        raise ProtocolError(reply.get("error", "malformed reply"))


def _caller_position():
    """The line and column of the innermost frame of the test script."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == _SCRIPT:
            column = 1
            try:
                positions = list(frame.f_code.co_positions())
                pos = positions[frame.f_lasti // 2]
                if pos[2] is not None:
                    column = pos[2] + 1
            except (AttributeError, IndexError):
                pass
            return frame.f_lineno, column
        frame = frame.f_back
    return None, None


def _call(op, **args):
    return _conn.call(op, **args)


class _Printer(io.TextIOBase):
    """``sys.stdout`` of the script: whole lines go to the run's log and
    the current subtest's output."""

    def __init__(self):
        self._pending = ""

    def writable(self):
        return True

    def write(self, text):
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            _call("print", text=line)
        return len(text)

    def flush(self):
        if self._pending:
            line, self._pending = self._pending, ""
            _call("print", text=line)


def _unsupported(name):
    def call(self, *args, **kwargs):
        return _call("unsupported", machine=self.name, call=name)

    call.__name__ = name
    call.__doc__ = f"Not supported on covnet machines: fails, saying why ({name})."
    return call


class Machine:
    """One machine of the test network; NixOS driver names."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<Machine {self.name}>"

    def _m(self, op, **args):
        return _call(op, machine=self.name, **args)

    # Commands
    def succeed(self, *commands, timeout=None):
        """Runs each command; fails unless it exits 0. Returns the stdouts."""
        return "".join(self._m("succeed", command=c, timeout=timeout) for c in commands)

    def fail(self, *commands, timeout=None):
        """Runs each command; fails if it exits 0. Returns the stderrs."""
        return "".join(self._m("fail", command=c, timeout=timeout) for c in commands)

    def execute(self, command, check_return=True, check_output=True, timeout=None):
        """Runs command; returns ``(status, stdout)`` (``stdout`` is ``""``
        with ``check_output=False``). ``check_return`` is accepted for
        NixOS compatibility: the status is always known."""
        r = self._m("execute", command=command, timeout=timeout)
        return r["status"], (r["stdout"] if check_output else "")

    def wait_until_succeeds(self, command, timeout=None):
        return self._m("wait_until_succeeds", command=command, timeout=timeout)

    def wait_until_fails(self, command, timeout=None):
        return self._m("wait_until_fails", command=command, timeout=timeout)

    # Waits
    def wait_for_unit(self, unit, user=None, timeout=None):
        """Waits for the spec's service ``unit`` (``name`` or ``name.service``)."""
        if user is not None:
            return _call("unsupported", machine=self.name, call="wait_for_unit(user=...)")
        return self._m("wait_for_service", name=unit, timeout=timeout)

    def wait_for_service(self, name, timeout=None):
        return self._m("wait_for_service", name=name, timeout=timeout)

    def wait_for_open_port(self, port, addr="localhost", timeout=None):
        return self._m("wait_for_open_port", port=port, timeout=timeout)

    def wait_for_closed_port(self, port, addr="localhost", timeout=None):
        return self._m("wait_for_closed_port", port=port, timeout=timeout)

    def wait_for_open_unix_socket(self, addr, is_datagram=False, timeout=None):
        return self._m(
            "wait_for_open_unix_socket", path=addr, datagram=is_datagram, timeout=timeout
        )

    def wait_for_file(self, filename, timeout=None):
        return self._m("wait_for_file", path=filename, timeout=timeout)

    def wait_for_console_text(self, regex, timeout=None):
        return self._m("wait_for_console_text", pattern=regex, timeout=timeout)

    def wait_until_tty_matches(self, tty, regexp, timeout=None):
        return self._m("wait_until_tty_matches", tty=str(tty), pattern=regexp, timeout=timeout)

    # Services
    def systemctl(self, q, user=None):
        """``systemctl("restart web")``: start, stop, restart or status of a
        spec service; returns ``(status, output)``."""
        r = self._m("systemctl", query=q)
        return r["status"], r["stdout"]

    def start_job(self, jobname, user=None):
        return self.systemctl(f"start {jobname}")

    def stop_job(self, jobname, user=None):
        return self.systemctl(f"stop {jobname}")

    # Console
    def send_console(self, chars):
        """Types ``chars`` on the serial console (``/dev/console``)."""
        return self._m("send_console", text=chars)

    def send_chars(self, chars, delay=None):
        return self.send_console(chars)

    def get_console_text(self):
        return self._m("console_text")

    # Files
    def copy_from_host(self, source, target):
        """Copies host file ``source`` (relative: to the spec's directory)
        to guest path ``target``."""
        return self._m("copy_to_vm", host=str(source), guest=str(target))

    copy_to_vm = copy_from_host

    def copy_from_vm(self, source, target_dir=""):
        """Copies guest file ``source`` into ``target_dir`` (relative to the
        run's output directory); returns the host path."""
        return self._m("copy_from_vm", guest=str(source), target_dir=str(target_dir))

    # Power
    def start(self, allow_reboot=False):
        return self._m("start")

    def shutdown(self):
        return self._m("shutdown")

    def crash(self):
        return self._m("crash")

    def reboot(self):
        """Shuts down (collecting coverage first, with coverage on) and boots
        again: services start as at the first boot."""
        return self._m("reboot")

    def is_up(self):
        return self._m("is_running")

    # Network
    def block(self):
        return self._m("block")

    def unblock(self):
        return self._m("unblock")

    def set_link(self, **settings):
        return self._m("set_link", settings=settings)

    def clear_link(self):
        return self._m("clear_link")

    def forward_port(self, host_port=8080, guest_port=80):
        return self._m("forward_port", host_port=host_port, guest_port=guest_port)

    # Coverage
    def reset_coverage(self):
        return self._m("reset_coverage")

    def sleep(self, secs):
        return sleep(secs)

    def log(self, msg):
        print(msg)

    screenshot = _unsupported("screenshot")
    send_key = _unsupported("send_key")
    wait_for_x = _unsupported("wait_for_x")
    wait_for_text = _unsupported("wait_for_text")
    get_screen_text = _unsupported("get_screen_text")
    get_screen_text_variants = _unsupported("get_screen_text_variants")
    wait_for_window = _unsupported("wait_for_window")
    send_monitor_command = _unsupported("send_monitor_command")


def start_all():
    """Boots every machine at once and waits for all."""
    return _call("start_all")


def machine(name):
    """The machine called ``name`` (for names that are not identifiers)."""
    for m in machines:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in machines)
    raise KeyError(f"no machine `{name}` in the spec (machines: {known})")


def sleep(secs):
    """Sleeps ``secs`` (seconds or a duration string); ends early, failing,
    when the run is interrupted."""
    return _call("sleep", timeout=secs)


def collect_coverage(phase):
    """Collects every machine's coverage so far as the phase ``phase``."""
    return _call("collect_coverage", phase=phase)


def partition(groups):
    """Splits the network: ``partition([[a, b], [c]])``."""
    names = [[m.name if isinstance(m, Machine) else str(m) for m in g] for g in groups]
    return _call("partition", groups=names)


def heal():
    """Ends a partition."""
    return _call("heal")


def _describe(exc):
    """What the runner needs of an exception leaving a subtest or the script."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _SCRIPT:
            line = tb.tb_lineno
        tb = tb.tb_next
    return {
        "id": exc.failure_id if isinstance(exc, StepFailure) else None,
        "message": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "line": line,
    }


@contextlib.contextmanager
def subtest(name):
    """``with subtest("name"):`` — a JUnit case (and, with per-subtest
    coverage, a capture) of its own."""
    _call("subtest_start", name=name)
    try:
        yield
    except BaseException as e:  # noqa: B902 - every failure is reported
        if isinstance(e, (KeyboardInterrupt, GeneratorExit)):
            raise
        verdict = _call("subtest_end", name=name, failure=_describe(e))
        if verdict == "continue":
            return
        raise
    _call("subtest_end", name=name, failure=None)


def _main(path, display):
    """Runs the test script at ``path`` (compiled as ``display``)."""
    global _SCRIPT, _conn, machines
    _SCRIPT = display
    _conn = _Connection(os.environ["COVNET_SOCKET"])
    names = _call("hello")
    machines[:] = [Machine(n) for n in names]
    with open(path, encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, display, "exec")
    except SyntaxError as e:
        _call(
            "parse_error",
            message=f"{e.msg}",
            line=e.lineno,
            column=e.offset,
        )
        return
    env = {"__name__": "__main__", "__file__": display, "__builtins__": builtins}
    env.update({n: globals()[n] for n in __all__})
    usable = lambda var: var.isidentifier() and not keyword.iskeyword(var)
    for m in machines:
        if usable(m.name):
            env[m.name] = m
    # As NixOS's driver names them: `server-lazy` is `server_lazy` (unless
    # that is another machine's or the API's name).
    for m in machines:
        alias = m.name.replace("-", "_")
        if alias != m.name and usable(alias) and alias not in env:
            env[alias] = m
    sys.stdout = _Printer()
    try:
        exec(code, env)
        sys.stdout.flush()
    except SystemExit as e:
        sys.stdout.flush()
        if e.code not in (None, 0):
            _call("script_failed", failure=_describe(e))
            return
    except BaseException as e:  # noqa: B902 - every failure is reported
        sys.stdout.flush()
        _call("script_failed", failure=_describe(e))
        return
    _call("done")
