"""engines.torchrun: torchrun stopped by a signal ends without a traceback, the stop line last (the
path of a GPU run started with recipes/launch/torchrun.sh, exercised here with a CPU worker)."""

import signal
import subprocess
import sys

GUARD = 120  # seconds: a hang guard only
WORKER = "import time; print('ready', flush=True); time.sleep(600)"


def test_a_stopped_torchrun_prints_the_stop_line_last_and_no_traceback(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen([sys.executable, "-m", "nemo_beyond_nll.engines.torchrun", "--stop-line", "--standalone",
                             "--nproc_per_node=1", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        while not lines or lines[-1].strip() != "ready":
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=GUARD)
    finally:
        proc.kill()
    log = "".join(lines) + rest
    assert proc.returncode == 128 + signal.SIGTERM, log
    assert log.rstrip().splitlines()[-1] == ("nemo-beyond-nll: stopped by SIGTERM: run the same command to resume "
                                             "from the run's last saved checkpoint")
    assert "Traceback" not in log and "SignalException" not in log, log
