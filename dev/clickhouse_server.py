"""Serve a real ClickHouse (chdb-core) over HTTP and the native protocol until SIGTERM.

Usage: clickhouse_server.py DATA_DIR HTTP_PORT TCP_PORT

chdb embeds the ClickHouse server; `SYSTEM START LISTEN QUERIES ALL` opens the ports configured
in config.xml (read from the working directory), and the endless sleepEachRow query keeps the
process serving. SIGINT is ignored by chdb, so callers stop it with SIGTERM.
"""

import os
import sys
import threading
import time

CONFIG = """<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
</clickhouse>
"""


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: clickhouse_server.py DATA_DIR HTTP_PORT TCP_PORT")
    data_dir, http_port, tcp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "config.xml"), "w") as config:
        config.write(CONFIG.format(http_port=http_port, tcp_port=tcp_port))
    os.chdir(data_dir)
    if os.environ.get("EXIT_WITH_PARENT") == "1":
        # Test harnesses set this so that a crashed test run leaves no server behind.
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()

    from chdb import _chdb

    _chdb.query(
        "SYSTEM START LISTEN QUERIES ALL; "
        "SELECT sleepEachRow(1) FROM system.numbers SETTINGS max_block_size = 1 FORMAT Null",
        "TabSeparated",
        path=os.path.join(data_dir, "db"),
    )


if __name__ == "__main__":
    main()
