"""What a serving process does once, before its first request (clubos.warmup)."""

import gc

import pytest

from clubos.warmup import warm_up


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.django_db
def test_warm_up_takes_the_start_up_objects_out_of_the_garbage_collectors_rounds(unfrozen):
    assert gc.get_freeze_count() == 0
    warm_up()
    # Django, the trained router and the clients stay for the process's life: a full
    # collection no longer walks them (each walk stopped every stream for ~100 ms).
    assert gc.get_freeze_count() > 50_000


@pytest.mark.django_db(transaction=True)
def test_the_servers_start_up_warms_up_even_on_its_event_loop(unfrozen, monkeypatch):
    # uvicorn --reload (make run) imports the application on its running loop: the start-up's
    # database work must not run there.
    import asyncio

    from clubos.asgi import application
    from routing import classifier

    monkeypatch.setattr(classifier, "local_router_model", classifier.LocalRouterModel())
    from routing.strategies import local

    monkeypatch.setattr(local, "local_router_model", classifier.local_router_model)
    sent: list[dict] = []

    async def start_then_stop() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            sent.append(message)

        await application({"type": "lifespan"}, receive, send)

    asyncio.run(start_then_stop())
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert classifier.local_router_model.trained_at is not None
    assert gc.get_freeze_count() > 50_000
