"""Lab fixtures: the real Debian proxies (nginx, haproxy, apache2) and php-fpm, started as
ordinary processes on loopback ports picked at run time, each in its own tmp directory
with its own config and logs (never a system service, never port 80).

Factory fixtures (function-scoped; each has a ``module_*`` twin for sharing in a module)::

    def test_x(upstream, nginx_proxy, haproxy_proxy, apache_proxy, php_fpm):
        app = upstream("refused")
        ngx = nginx_proxy(app)                      # proxy_pass http://app.address
        hap = haproxy_proxy(app)                    # one backend server = app
        apa = apache_proxy(app)                     # ProxyPass / http://app.address/
        fpm = php_fpm(max_children=1, terminate_timeout_s=1)
        ngx_php = nginx_proxy(php=fpm)              # fastcgi_pass to the pool
        apa_php = apache_proxy(php=fpm)             # ProxyPass / fcgi://... (proxy_fcgi)

Every factory returns a ``Proxy``: ``url`` ("http://127.0.0.1:PORT/"), ``port``,
``error_log`` (the file the server writes its errors to: nginx/apache error log, haproxy's
request log, php-fpm's error_log), ``access_log`` (or None), ``log_format`` (the
``LogSource.format`` name) and ``wait_for_log(regex)``. ``PhpFpm`` adds ``address``
("unix:/path/fpm.sock" or "127.0.0.1:PORT"), ``php_error_log`` (PHP's own error_log, or
None) and ``docroot`` holding ``ok.php``, ``sleep.php?s=SECONDS``, ``fail.php`` (an app
500), ``warn.php`` (a PHP warning, page fine) and a WordPress-shaped ``index.php`` ("/" on
nginx and Apache) that includes every ``wp-content/plugins/*/*.php`` and the active theme's
``functions.php``.

Options (all keyword): nginx ``connect_timeout_s=1``, ``read_timeout_s=1``,
``buffer_size=None`` (proxy/fastcgi_buffer_size), ``max_fails=1``, ``fail_timeout_s=10``,
``max_conns=0``, ``https=False`` (proxy_pass https://: TLS to the upstream),
``ssl_verify_ca=None`` (a CA file: ``proxy_ssl_verify on`` with it as the trust anchor),
``ssl_name=None`` (``proxy_ssl_name``, sent as SNI too), ``resolver=None`` ("127.0.0.1:PORT":
the upstream is one "name:port" that nginx resolves per request through that DNS server,
``proxy_pass http://$up:PORT``, never through the system resolver),
``resolver_timeout_s=1``, ``access_format=None`` (a ``log_format`` for the access log, e.g.
with ``upstream_addr=$upstream_addr``; None: nginx's ``combined``; a JSON object is
logged with ``escape=json``); haproxy
``connect_timeout_s=1``, ``server_timeout_s=1``, ``retries=0``,
``maxconn=0`` (per server), ``queue_timeout_s=1``; apache ``timeout_s=1``, ``retry_s=0``;
php-fpm ``max_children=2``, ``terminate_timeout_s=0`` (0 = off), ``tcp=False``,
``listen_owner=None``, ``listen_group=None``, ``listen_mode="0666"`` (the pool's socket:
owner root and mode 0660 shut out the proxies' unprivileged workers, nginx's ``nobody`` and
Apache's ``www-data``), ``wordpress_broken=None`` ("plugin": a plugin calling an undefined
function, ``wp-content/plugins/broken-plugin/broken-plugin.php`` line 3; "theme": the same in
the active theme's ``functions.php``), ``php_error_log=False`` (PHP writes its errors to its
own file, ``php_error_log``, instead of to stderr) and ``fastcgi_logging=True`` (PHP's
stderr goes to the proxy's error log too; off, only php-fpm's log has it).
``upstream`` may be an ``Upstream``, a "host:port" string, or a list of them (nginx,
haproxy: several servers in one pool).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import (
    ManagedProcess,
    free_port,
    require_binary,
    wait_for_path,
    wait_for_port,
)

UpstreamSpec = Upstream | str | Sequence[Upstream | str]
# nginx's combined format with $upstream_addr as a named field after it (``access_format``).
NGINX_UPSTREAM_ADDR_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" upstream_addr=$upstream_addr'
)
# The same as a JSON object (``escape=json``), under the key names such formats use.
NGINX_JSON_FORMAT = (
    '{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr","request":"$request",'
    '"status":"$status","http_host":"$http_host","upstream_addr":"$upstream_addr"}'
)
APACHE_MODULES = Path("/usr/lib/apache2/modules")


@dataclass
class Proxy:
    kind: str  # nginx | haproxy | apache | php-fpm
    log_format: str  # LogSource.format for error_log
    directory: Path
    error_log: Path
    process: ManagedProcess
    port: int = 0
    host: str = "127.0.0.1"
    access_log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def read_log(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        """Wait until ``pattern`` (a regex) appears in the error log; return the log text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.read_log()
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not in {self.error_log} after {timeout} s:\n{text[-3000:]}\n"
                    f"process output:\n{self.process.output()[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()


@dataclass
class PhpFpm(Proxy):
    socket_path: Path | None = None
    docroot: Path = Path()
    # PHP's own error log (php_admin_value[error_log]), when the pool was given one.
    php_error_log: Path | None = None

    def stop(self) -> None:
        super().stop()
        if self.socket_path is not None:
            shutil.rmtree(self.socket_path.parent, ignore_errors=True)

    @property
    def address(self) -> str:
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"{self.host}:{self.port}"


def _addresses(spec: UpstreamSpec) -> list[str]:
    items = [spec] if isinstance(spec, Upstream | str) else list(spec)
    return [item.address if isinstance(item, Upstream) else item for item in items]


def _ms(seconds: float) -> str:
    """A duration in the milliseconds nginx and haproxy accept: 1.5 -> "1500ms"."""
    return f"{int(seconds * 1000)}ms"


def _wait_ready(proxy: Proxy) -> None:
    try:
        wait_for_port(proxy.port, proxy.host, timeout=10)
    except TimeoutError:
        output = proxy.process.output()
        proxy.stop()
        raise RuntimeError(
            f"{proxy.kind} did not start:\n{output}\n{proxy.read_log()[-3000:]}"
        ) from None


# --- php-fpm --------------------------------------------------------------------------------

_PHP_SCRIPTS = {
    "ok.php": '<?php echo "ok from php\\n";\n',
    "sleep.php": (
        '<?php $s = isset($_GET["s"]) ? (float)$_GET["s"] : 3.0;\n'
        'usleep((int)($s * 1000000)); echo "slept $s\\n";\n'
    ),
    "fail.php": '<?php http_response_code(500); echo "app failed\\n";\n',
    # A PHP warning the app survives: PHP logs it the way it logs a fatal error (the
    # proxies rate it [error] too), but the page works.
    "warn.php": '<?php trigger_error("lab warning", E_USER_WARNING); echo "ok with warning\\n";\n',
}

# A WordPress-shaped site: index.php loads the active plugins and the active theme's
# functions.php (as wp-settings.php does); a broken plugin or theme calls a function that
# does not exist, the PHP fatal error WordPress sites meet after an update.
_WP_INDEX = """<?php
foreach (glob(__DIR__ . '/wp-content/plugins/*/*.php') as $plugin) {
    include_once $plugin;
}
include_once __DIR__ . '/wp-content/themes/' . trim(file_get_contents(__DIR__ . '/theme.txt'))
    . '/functions.php';
echo "ok from wordpress\\n";
"""
_WP_FILES = {
    "wp-content/plugins/hello/hello.php": "<?php\nfunction hello_dolly() { return 'hello'; }\n",
    "wp-content/themes/fine-theme/functions.php": "<?php\nfunction fine_setup() {}\n",
}
WordPressBreakage = Literal["plugin", "theme"]
_WP_BROKEN: dict[WordPressBreakage, tuple[str, str]] = {
    "plugin": (
        "wp-content/plugins/broken-plugin/broken-plugin.php",
        "<?php\n// Plugin Name: Broken Plugin\nbroken_plugin_missing_helper();\n",
    ),
    "theme": (
        "wp-content/themes/broken-theme/functions.php",
        "<?php\n// Theme functions\nbroken_theme_missing_helper();\n",
    ),
}


def _write_wordpress(docroot: Path, broken: WordPressBreakage | None) -> None:
    files = dict(_WP_FILES)
    theme = "fine-theme"
    if broken is not None:
        path, text = _WP_BROKEN[broken]
        files[path] = text
        if broken == "theme":
            theme = "broken-theme"
    for name, text in files.items():
        (docroot / name).parent.mkdir(parents=True, exist_ok=True)
        (docroot / name).write_text(text)
    (docroot / "index.php").write_text(_WP_INDEX)
    (docroot / "theme.txt").write_text(theme + "\n")


def start_php_fpm(
    directory: Path,
    *,
    max_children: int = 2,
    terminate_timeout_s: float = 0,
    tcp: bool = False,
    listen_owner: str | None = None,
    listen_group: str | None = None,
    listen_mode: str = "0666",
    wordpress_broken: WordPressBreakage | None = None,
    php_error_log: bool = False,
    fastcgi_logging: bool = True,
) -> PhpFpm:
    binary = require_binary("php-fpm8.2", "php-fpm", "/usr/sbin/php-fpm8.2")
    directory.mkdir(parents=True, exist_ok=True)
    docroot = directory / "www"
    docroot.mkdir(exist_ok=True)
    docroot.chmod(0o755)
    for name, text in _PHP_SCRIPTS.items():
        (docroot / name).write_text(text)
    _write_wordpress(docroot, wordpress_broken)
    error_log = directory / "php-fpm.log"
    php_errors = directory / "php-errors.log" if php_error_log else None
    socket_path = None
    if not tcp:
        # Short path (sun_path is 108 bytes) in a directory the proxies' unprivileged
        # workers can traverse; pytest's own tmp dirs are private to root.
        socket_dir = Path(tempfile.mkdtemp(prefix="bg-fpm-"))
        socket_dir.chmod(0o755)
        socket_path = socket_dir / "fpm.sock"
    port = free_port() if tcp else 0
    listen = f"127.0.0.1:{port}" if tcp else str(socket_path)
    owner = "".join(
        f"listen.{key} = {value}\n"
        for key, value in (("owner", listen_owner), ("group", listen_group))
        if value is not None
    )
    app_log = f"php_admin_value[error_log] = {php_errors}\n" if php_errors else ""
    # pm = dynamic: it is the mode that logs "server reached pm.max_children".
    conf = f"""[global]
pid = {directory}/php-fpm.pid
error_log = {error_log}
log_level = notice
daemonize = no

[www]
listen = {listen}
{owner}listen.mode = {listen_mode}
pm = dynamic
pm.max_children = {max_children}
pm.start_servers = 1
pm.min_spare_servers = 1
pm.max_spare_servers = 1
request_terminate_timeout = {int(terminate_timeout_s) if terminate_timeout_s else 0}
catch_workers_output = yes
php_admin_value[display_errors] = off
php_admin_flag[log_errors] = on
php_admin_flag[fastcgi.logging] = {"on" if fastcgi_logging else "off"}
{app_log}"""
    (directory / "php-fpm.conf").write_text(conf)
    # -R: the lab runs as root; the pool has no user to switch to.
    process = ManagedProcess(
        [binary, "-R", "-F", "-y", str(directory / "php-fpm.conf")], directory / "stdout.log"
    )
    fpm = PhpFpm(
        kind="php-fpm",
        log_format="php-fpm",
        directory=directory,
        error_log=error_log,
        process=process,
        port=port,
        socket_path=socket_path,
        docroot=docroot,
        php_error_log=php_errors,
    )
    try:
        if socket_path is not None:
            wait_for_path(socket_path)
        else:
            wait_for_port(port)
    except TimeoutError:
        output = process.output()
        fpm.stop()
        raise RuntimeError(f"php-fpm did not start:\n{output}\n{fpm.read_log()}") from None
    return fpm


# --- nginx ----------------------------------------------------------------------------------


def start_nginx(
    directory: Path,
    upstream: UpstreamSpec | None = None,
    *,
    php: PhpFpm | None = None,
    connect_timeout_s: float = 1,
    read_timeout_s: float = 1,
    buffer_size: str | None = None,
    max_fails: int = 1,
    fail_timeout_s: float = 10,
    max_conns: int = 0,
    https: bool = False,
    ssl_verify_ca: Path | None = None,
    ssl_name: str | None = None,
    resolver: str | None = None,
    resolver_timeout_s: float = 1,
    access_format: str | None = None,
) -> Proxy:
    binary = require_binary("nginx", "/usr/sbin/nginx")
    escape = "escape=json " if access_format and access_format.startswith("{") else ""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    error_log = directory / "error.log"
    access_log = directory / "access.log"
    temp = " ".join(
        f"{name}_temp_path {directory}/tmp_{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    if php is not None:
        buffer = f"fastcgi_buffer_size {buffer_size};" if buffer_size else ""
        location = f"""
        root {php.docroot};
        location / {{
            fastcgi_pass {php.address};
            fastcgi_index index.php;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_connect_timeout {_ms(connect_timeout_s)};
            fastcgi_read_timeout {_ms(read_timeout_s)};
            {buffer}
        }}"""
        pool = ""
    else:
        if upstream is None:
            raise ValueError("nginx_proxy needs an upstream or php=")
        scheme = "https" if https else "http"
        if resolver is not None:
            # A variable in proxy_pass: nginx resolves the name per request through
            # `resolver` (a literal name would be resolved once at start, by the system).
            [address] = _addresses(upstream)
            name, _, name_port = address.rpartition(":")
            pool = ""
            target = (
                f"resolver {resolver} valid=1s;\n"
                f"            resolver_timeout {_ms(resolver_timeout_s)};\n"
                f"            set $up {name};\n"
                f"            proxy_pass {scheme}://$up:{name_port};"
            )
        else:
            fail_timeout = f"{max(1, round(fail_timeout_s))}s"  # whole seconds only
            servers = "\n".join(
                f"        server {address} max_fails={max_fails} fail_timeout={fail_timeout}"
                + (f" max_conns={max_conns}" if max_conns else "")
                + ";"
                for address in _addresses(upstream)
            )
            pool = f"    upstream app {{\n{servers}\n    }}"
            target = f"proxy_pass {scheme}://app;"
        tls = ""
        if ssl_verify_ca is not None:
            tls += (
                f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {ssl_verify_ca}; "
                "proxy_ssl_verify_depth 2;"
            )
        if ssl_name is not None:
            tls += f" proxy_ssl_name {ssl_name}; proxy_ssl_server_name on;"
        buffer = f"proxy_buffer_size {buffer_size};" if buffer_size else ""
        location = f"""
        location / {{
            {target}
            {tls}
            proxy_connect_timeout {_ms(connect_timeout_s)};
            proxy_read_timeout {_ms(read_timeout_s)};
            proxy_send_timeout {_ms(read_timeout_s)};
            proxy_next_upstream error timeout;
            {buffer}
        }}"""
    # Workers as an unprivileged user, as in production (and as Debian's build defaults to
    # when the master is root): the user whose access to a php-fpm socket is checked.
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = f"""worker_processes 1;
{user}
error_log {error_log} warn;
pid {directory}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    {f"log_format lab {escape}'{access_format}';" if access_format else ""}
    access_log {access_log}{" lab" if access_format else ""};
    {temp}
{pool}
    server {{
        listen 127.0.0.1:{port};
        server_name lab;
        {location}
    }}
}}
"""
    (directory / "nginx.conf").write_text(conf)
    process = ManagedProcess(
        [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        directory / "stdout.log",
    )
    proxy = Proxy("nginx", "nginx", directory, error_log, process, port, access_log=access_log)
    _wait_ready(proxy)
    return proxy


# --- haproxy --------------------------------------------------------------------------------


def start_haproxy(
    directory: Path,
    upstream: UpstreamSpec,
    *,
    connect_timeout_s: float = 1,
    server_timeout_s: float = 1,
    retries: int = 0,
    maxconn: int = 0,
    queue_timeout_s: float = 1,
) -> Proxy:
    binary = require_binary("haproxy", "/usr/sbin/haproxy")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = directory / "haproxy.log"
    # HAProxy logs to syslog only; "fd@N" makes it write syslog-framed lines (as rsyslog
    # would store them) to a file descriptor we hand it, so the test reads its own log.
    log_file = open(log_path, "ab", buffering=0)  # closed below; the fd is inherited
    fd = log_file.fileno()
    servers = "\n".join(
        f"    server app{i + 1} {address}" + (f" maxconn {maxconn}" if maxconn else "")
        for i, address in enumerate(_addresses(upstream))
    )
    conf = f"""global
    log fd@{fd} format rfc3164 local0
    pidfile {directory}/haproxy.pid

defaults
    mode http
    log global
    option httplog
    retries {retries}
    timeout connect {_ms(connect_timeout_s)}
    timeout client 10s
    timeout server {_ms(server_timeout_s)}
    timeout queue {_ms(queue_timeout_s)}

frontend web
    bind 127.0.0.1:{port}
    default_backend app

backend app
{servers}
"""
    (directory / "haproxy.cfg").write_text(conf)
    try:
        process = ManagedProcess(
            [binary, "-f", str(directory / "haproxy.cfg"), "-db"],
            directory / "stdout.log",
            pass_fds=(fd,),
        )
    finally:
        log_file.close()
    proxy = Proxy("haproxy", "haproxy", directory, log_path, process, port)
    _wait_ready(proxy)
    return proxy


# --- apache2 --------------------------------------------------------------------------------


def start_apache(
    directory: Path,
    upstream: Upstream | str | None = None,
    *,
    php: PhpFpm | None = None,
    timeout_s: float = 1,
    retry_s: int = 0,
) -> Proxy:
    binary = require_binary("apache2", "/usr/sbin/apache2")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    error_log = directory / "error.log"
    access_log = directory / "access.log"
    timeout = max(1, round(timeout_s))
    params = f"retry={retry_s} timeout={timeout} connectiontimeout={timeout}"
    if php is not None:
        if php.socket_path is not None:
            backend = f"unix:{php.socket_path}|fcgi://localhost{php.docroot}/"
        else:
            backend = f"fcgi://{php.host}:{php.port}{php.docroot}/"
        # "/" is the site's index.php, as DirectoryIndex would make it on a PHP site.
        index = f'ProxyPassMatch "^/$" "{backend}index.php" {params}\n'
    else:
        if upstream is None:
            raise ValueError("apache_proxy needs an upstream or php=")
        backend = f"http://{_addresses(upstream)[0]}/"
        index = ""
    modules = ["mpm_event", "authz_core", "proxy", "proxy_http", "proxy_fcgi"]
    load = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
    # Self-contained: Debian's own apache2.conf needs the APACHE_* environment variables.
    conf = f"""ServerRoot "{directory}"
ServerName lab
Listen 127.0.0.1:{port}
PidFile {directory}/httpd.pid
DefaultRuntimeDir {directory}
Mutex file:{directory} default
{load}
User www-data
Group www-data
ErrorLog {error_log}
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog {access_log} common
StartServers 1
ServerLimit 1
ThreadsPerChild 25
MaxRequestWorkers 25
MinSpareThreads 1
MaxSpareThreads 25
ProxyTimeout {timeout}
{index}ProxyPass "/" "{backend}" {params}
"""
    (directory / "httpd.conf").write_text(conf)
    process = ManagedProcess(
        [binary, "-f", str(directory / "httpd.conf"), "-DFOREGROUND"], directory / "stdout.log"
    )
    proxy = Proxy("apache", "apache", directory, error_log, process, port, access_log=access_log)
    _wait_ready(proxy)
    return proxy


# --- fixtures -------------------------------------------------------------------------------


def proxy_factory(
    tmp: Callable[[], Path], start: Callable[..., Proxy]
) -> Iterator[Callable[..., Any]]:
    """A fixture's factory: ``start(tmp(), ...)`` per call, every one stopped at teardown."""
    started: list[Proxy] = []

    def make(*args: Any, **opts: Any) -> Proxy:
        proxy = start(tmp(), *args, **opts)
        started.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in reversed(started):
            proxy.stop()


def tmp_dirs(factory: pytest.TempPathFactory, name: str) -> Callable[[], Path]:
    return lambda: factory.mktemp(name)


@pytest.fixture
def php_fpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PhpFpm]]:
    """``php_fpm(max_children=2, terminate_timeout_s=0, tcp=False) -> PhpFpm``."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "php-fpm"), start_php_fpm)  # type: ignore[misc]


@pytest.fixture
def nginx_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """``nginx_proxy(upstream=None, *, php=None, **opts) -> Proxy``."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "nginx"), start_nginx)


@pytest.fixture
def haproxy_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """``haproxy_proxy(upstream, **opts) -> Proxy``."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "haproxy"), start_haproxy)


@pytest.fixture
def apache_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """``apache_proxy(upstream=None, *, php=None, **opts) -> Proxy``."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "apache"), start_apache)


@pytest.fixture(scope="module")
def module_php_fpm(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PhpFpm]]:
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "php-fpm"), start_php_fpm)  # type: ignore[misc]


@pytest.fixture(scope="module")
def module_nginx_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Proxy]]:
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "nginx"), start_nginx)


@pytest.fixture(scope="module")
def module_haproxy_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Proxy]]:
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "haproxy"), start_haproxy)


@pytest.fixture(scope="module")
def module_apache_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Proxy]]:
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "apache"), start_apache)
