"""The hook's config cache: used only while it matches the file; otherwise the file is validated again."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from startgate import config
from startgate.errors import ConfigError
from startgate.hooks import settings

TOML = """
cluster = "pve1"
node = "n1"
[[gates]]
name = "linstor"
vmid = 100
check = { kind = "linstor", urls = ["http://10.0.0.1:3370", "https://10.0.0.2:3371"] }
storages = ["drbdstorage"]
[[gates]]
name = "web"
check = { kind = "http", url = "https://svc.example/ready", expect_status = 204, verify_tls = false }
tags = ["web"]
[[gates]]
name = "db"
check = { kind = "tcp", host = "db.example", port = 5432, timeout_s = 0.5 }
vmids = [120]
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment pointing at a config file and a private cache dir."""
    path = tmp_path / "startgate.toml"
    path.write_text(TOML)
    return {settings.CONFIG_ENV: str(path), settings.CACHE_ENV: str(tmp_path / "cache")}


def test_defaults_agree_with_the_config_module() -> None:
    """The hook resolves the config file as startgate.config does (without importing it)."""
    assert str(config.DEFAULT_PATH) == settings.DEFAULT_CONFIG
    assert settings.CONFIG_ENV == config.ENV_VAR


def test_first_load_validates_and_caches_then_the_cache_is_used(env: dict[str, str]) -> None:
    """The first load writes the cache; the next reads it and gets the same settings."""
    path = env[settings.CONFIG_ENV]
    assert settings.read_cached(path, env) is None
    first = settings.load(env)
    cache = Path(settings.cache_file(path, env))
    assert cache.is_file()
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    assert oct(cache.parent.stat().st_mode & 0o777) == "0o700"
    assert settings.read_cached(path, env) == first
    assert first.node_name == "n1"
    lin, web, db = first.gates
    assert lin.check.urls == ("http://10.0.0.1:3370", "https://10.0.0.2:3371")
    assert (lin.vmid, lin.storages, lin.check.node_ready) == (100, ("drbdstorage",), True)
    assert (web.check.urls, web.check.expect_status, web.check.verify_tls) == (
        ("https://svc.example/ready",),
        204,
        False,
    )
    assert (db.check.host, db.check.port, db.check.timeout_s, db.vmids) == ("db.example", 5432, 0.5, (120,))
    assert (first.max_seconds, first.spool_dir, first.state_dir) == (
        3.0,
        "/var/spool/startgate",
        "/var/lib/startgate",
    )


def test_a_changed_file_invalidates_the_cache(env: dict[str, str]) -> None:
    """Editing the config (size/mtime change) makes the cache stale; load validates the new text."""
    path = Path(env[settings.CONFIG_ENV])
    settings.load(env)
    path.write_text(TOML.replace('node = "n1"', 'node = "n2"'))
    assert settings.read_cached(str(path), env) is None
    assert settings.load(env).node == "n2"


def test_same_size_edit_within_the_same_second_is_seen(env: dict[str, str]) -> None:
    """The key has mtime in nanoseconds and the inode: a same-size rewrite is not missed."""
    path = Path(env[settings.CONFIG_ENV])
    settings.load(env)
    stat = path.stat()
    path.write_text(TOML.replace('node = "n1"', 'node = "n9"'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert settings.load(env).node == "n9"


def test_a_damaged_or_foreign_cache_is_not_trusted(env: dict[str, str]) -> None:
    """Garbage, or a cache of another version, is ignored and rewritten."""
    path = env[settings.CONFIG_ENV]
    settings.load(env)
    cache = Path(settings.cache_file(path, env))
    cache.write_text("{not marshal")
    assert settings.read_cached(path, env) is None
    settings.load(env)
    data = marshal.loads(cache.read_bytes())
    data["key"]["version"] = "0.0.0-other"
    cache.write_bytes(marshal.dumps(data))
    assert settings.read_cached(path, env) is None


def test_invalid_or_missing_config_raises_config_error(env: dict[str, str], tmp_path: Path) -> None:
    """A bad file is never cached; a missing one names the path."""
    path = Path(env[settings.CONFIG_ENV])
    path.write_text(TOML + "\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        settings.load(env)
    assert not Path(settings.cache_file(str(path), env)).exists()
    with pytest.raises(ConfigError, match="file not found"):
        settings.load({settings.CONFIG_ENV: str(tmp_path / "nope.toml")})


def test_cache_dir_that_cannot_be_written_is_not_fatal(env: dict[str, str], tmp_path: Path) -> None:
    """If the cache cannot be written, load still returns the validated settings."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    env[settings.CACHE_ENV] = str(blocker / "sub")
    assert settings.load(env).cluster == "pve1"


def test_a_cache_others_could_write_is_not_loaded(env: dict[str, str]) -> None:
    """marshal is not for untrusted data: a group/world-writable cache file is ignored."""
    path = env[settings.CONFIG_ENV]
    settings.load(env)
    cache = Path(settings.cache_file(path, env))
    cache.chmod(0o666)
    assert settings.read_cached(path, env) is None
    cache.chmod(0o600)
    assert settings.read_cached(path, env) is not None
