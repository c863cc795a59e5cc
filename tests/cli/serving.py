"""``openbell serve`` as a real process for tests: output to files, wait for a line, stop with
a signal; ``stop_all`` kills whatever is still running (call it at teardown)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GATEWAY_LINE = re.compile(r"openbell gateway: http://127\.0\.0\.1:(\d+) ")
NODE_LINE = re.compile(r"openbell node: seq (\d+) .*listening on (\S+)")
STOPPED_LINE = re.compile(r"stopped at seq (\d+)")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Serve:
    def __init__(
        self, log_dir: Path, *args: str | Path, name: str = "serve", ignore_sigint: bool = False
    ) -> None:
        """``ignore_sigint``: start it the way a shell script starts a background job (SIGINT
        ignored, which the new process inherits)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        argv = [sys.executable, "-m", "openbell.cli", "serve", *map(str, args)]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO,
                preexec_fn=_ignore_sigint if ignore_sigint else None,
            )  # fmt: skip

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = pattern.search(self.out())
            if match is not None:
                return match
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited {self.process.returncode} before {pattern.pattern!r}:\n"
                    f"{self.out()}\n{self.err()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {pattern.pattern!r} after {timeout_s} s:\n{self.out()}")

    def port(self) -> int:
        return int(self.wait_for(GATEWAY_LINE).group(1))

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
