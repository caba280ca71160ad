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
