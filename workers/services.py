"""Connecting a CLI process to kubeboot's services: settings, Redis (embedded or given), the run
store, the Celery app. Everything here is imported lazily by the commands that need it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from kubeboot.config.settings import Settings
    from kubeboot.tasks.state import RunStore


@dataclass
class Services:
    settings: Settings
    redis_url: str

    @classmethod
    def connect(cls, *, start_embedded: bool = True) -> Services:
        """Settings from the environment; the Redis URL from KUBEBOOT_REDIS_URL or the embedded
        server (started if needed and ``start_embedded``)."""
        from kubeboot.config.settings import Settings
        from kubeboot.workers.redis_server import EmbeddedRedis

        settings = Settings.from_env()
        if settings.redis_url:
            return cls(settings, settings.redis_url)
        embedded = EmbeddedRedis(settings.state_dir)
        url = embedded.ensure() if start_embedded else embedded.url
        return cls(settings, url)

    @cached_property
    def redis(self) -> redis.Redis:
        import redis as redis_lib

        return redis_lib.Redis.from_url(self.redis_url, **self.settings.redis_ssl(self.redis_url))

    @cached_property
    def store(self) -> RunStore:
        from kubeboot.tasks.state import RunStore
        from kubeboot.tasks.trust.keyring import keyring_for

        # The CLI is the control side: it signs what it sends and holds the master key.
        return RunStore(self.redis, keyring_for(self.settings, "client"), secret_ttl=self.settings.secret_ttl,
                        lock_ttl=self.settings.lock_ttl, task_ttl=self.settings.task_ttl)

    def app(self, extra_queues: list[str] | None = None, *, role: str = "client") -> Celery:
        from kubeboot.workers.celery_app import make_app

        return make_app(self.redis_url, self.settings, extra_queues, role=role)

    def flower_url(self, run_id: str | None = None) -> str:
        base = self.settings.flower_base_url
        return f"{base}/tasks?search={run_id}" if run_id else base
