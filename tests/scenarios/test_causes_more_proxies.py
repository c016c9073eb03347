"""End to end on a quiet site: a whole diagnosis (``checks.runner.diagnose``) of a real
nginx, Apache or HAProxy in front of php-fpm or an upstream that fails for real, where the
diagnosis's own requests are the only traffic (nobody hit the site before the bot was
asked), names the cause the proxy's and php-fpm's logs give: a socket the proxy may not
open, php-fpm stopped or killing a slow request, a connect that times out, a PHP fatal
error in a WordPress plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from badgateway.checks.model import Cause
from tests.lab.diagnosis import diagnose_lab, explain
from tests.lab.fixtures_proxies import PhpFpm, Proxy


async def test_nginx_socket_permission_denied(
    php_fpm: Callable[..., PhpFpm], nginx_proxy: Callable[..., Proxy]
) -> None:
    # The pool's socket is root's, mode 0660; nginx's workers run as nobody.
    fpm = php_fpm(listen_owner="root", listen_group="root", listen_mode="0660")
    proxy = nginx_proxy(php=fpm)
    diagnosis = await diagnose_lab(proxy.url + "ok.php", [proxy.error_log], (fpm.address,))
    assert diagnosis.verdict.cause is Cause.UPSTREAM_PERMISSION, explain(diagnosis)


async def test_apache_php_fpm_stopped(
    php_fpm: Callable[..., PhpFpm], apache_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm()
    proxy = apache_proxy(php=fpm)
    fpm.stop()  # the socket goes with it: AH02454 (2)No such file or directory
    diagnosis = await diagnose_lab(
        proxy.url + "ok.php", [proxy.error_log, fpm.error_log], (fpm.address,)
    )
    assert diagnosis.verdict.cause is Cause.UPSTREAM_REFUSED, explain(diagnosis)


async def test_apache_php_fpm_terminate_timeout_is_app_timeout(
    php_fpm: Callable[..., PhpFpm], apache_proxy: Callable[..., Proxy]
) -> None:
    # php-fpm kills the request after 1 s; Apache would have waited 4 s. Apache's log says
    # only that the backend hung up (AH01067); php-fpm's log says why.
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    proxy = apache_proxy(php=fpm, timeout_s=4)
    diagnosis = await diagnose_lab(
        proxy.url + "sleep.php?s=3", [proxy.error_log, fpm.error_log], (fpm.address,)
    )
    assert diagnosis.verdict.cause is Cause.APP_TIMEOUT, explain(diagnosis)


async def test_haproxy_connect_timeout(
    upstream: Callable[..., Any], haproxy_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("blackhole")
    proxy = haproxy_proxy(app, connect_timeout_s=1)
    diagnosis = await diagnose_lab(proxy.url, [proxy.error_log], (app.address,))
    assert diagnosis.verdict.cause is Cause.UPSTREAM_TIMEOUT, explain(diagnosis)
    assert any("(sC)" in f.message for f in diagnosis.verdict.evidence), explain(diagnosis)


async def test_php_fatal_error_in_plugin(
    php_fpm: Callable[..., PhpFpm], nginx_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(wordpress_broken="plugin")
    proxy = nginx_proxy(php=fpm)
    diagnosis = await diagnose_lab(proxy.url, [proxy.error_log, fpm.error_log], (fpm.address,))
    assert diagnosis.verdict.cause is Cause.SERVER_ERROR, explain(diagnosis)
    logged = [f for f in diagnosis.verdict.evidence if f.code == "log_server_error"]
    assert logged, explain(diagnosis)
    assert any("in plugin broken-plugin" in f.message for f in logged)
    plugin = "wp-content/plugins/broken-plugin/broken-plugin.php:3"
    assert any(plugin in sample for f in logged for sample in f.data["samples"])
    # The runbook's next step, for that plugin, comes first.
    assert diagnosis.verdict.next_steps[0].startswith("Deactivate the plugin broken-plugin")
    assert "wp-content/plugins/broken-plugin" in diagnosis.verdict.next_steps[0]
