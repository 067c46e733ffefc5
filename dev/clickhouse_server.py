"""Serve a real ClickHouse (chdb-core) over HTTP and the native protocol until SIGTERM.

Usage: clickhouse_server.py DATA_DIR HTTP_PORT TCP_PORT

chdb embeds the ClickHouse server; `SYSTEM START LISTEN QUERIES ALL` opens the ports configured
in config.xml (read from the working directory), and the endless sleepEachRow query keeps the
process serving. SIGINT is ignored by chdb, so callers stop it with SIGTERM.

Users: `adtrack_admin` (every right, for migrations) and the services' and analysts' users from
deploy/clickhouse/users.d/adtrack.xml, each with the password its variable below holds.
chdb's own session logs in as `default` with no password and from loopback, so `default`
cannot be given one; it may only open the ports, and reads and changes nothing.
"""

import os
import shutil
import sys
import threading
import time

CONFIG = """<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <users_config>{data_dir}/users.xml</users_config>
</clickhouse>
"""

USERS = """<clickhouse>
    <profiles><default/></profiles>
    <quotas><default/></quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <grants>
                <query>GRANT SYSTEM LISTEN ON *.*</query>
                <query>GRANT SELECT ON system.numbers</query>
            </grants>
        </default>
        <adtrack_admin>
            <password from_env="CLICKHOUSE_ADMIN_PASSWORD"/>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <grants><query>GRANT ALL ON *.* WITH GRANT OPTION</query></grants>
        </adtrack_admin>
    </users>
</clickhouse>
"""

# Every user's password; an unset one would leave its user open.
PASSWORD_VARIABLES = [
    "CLICKHOUSE_ADMIN_PASSWORD",
    "CLICKHOUSE_INGEST_PASSWORD",
    "CLICKHOUSE_AGGREGATOR_PASSWORD",
    "CLICKHOUSE_QUERY_PASSWORD",
    "CLICKHOUSE_ANALYST_PASSWORD",
]
SERVICE_USERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "clickhouse", "users.d", "adtrack.xml")


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: clickhouse_server.py DATA_DIR HTTP_PORT TCP_PORT")
    data_dir, http_port, tcp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    unset = [name for name in PASSWORD_VARIABLES if not os.environ.get(name)]
    if unset:
        sys.exit(f"set {', '.join(unset)}: ClickHouse would let that user in with no password")
    data_dir = os.path.abspath(data_dir)
    os.makedirs(os.path.join(data_dir, "users.d"), exist_ok=True)
    with open(os.path.join(data_dir, "config.xml"), "w") as config:
        config.write(CONFIG.format(http_port=http_port, tcp_port=tcp_port, data_dir=data_dir))
    with open(os.path.join(data_dir, "users.xml"), "w") as users:
        users.write(USERS)
    shutil.copyfile(SERVICE_USERS, os.path.join(data_dir, "users.d", "adtrack.xml"))
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
