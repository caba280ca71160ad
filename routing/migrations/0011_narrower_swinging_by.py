"""Replace the Emergency keyword "swinging by" with what it was for.

It was written for a fixture hanging loose ("light swinging by its wires over bay 1"), and it
also matched "can you swing by the Elm Street location" and "Swing by, ya turkeys!" (a
newsletter's tone check, forced to Emergency on blind set 28; README, "Eighth pass"). It
becomes "swinging by a wire / a cable / a cord / a thread", as in
``routing/data/safety_taxonomy.json``, which a new database is built from.

Only where the keyword is still there: one an admin removed stays removed. Reversing it
puts "swinging by" back in place of the narrower ones.
"""

from django.db import migrations

OLD = "swinging by"
# The rules allow a filler between a phrase's words: "swinging by a wire" also matches
# "swinging by its wires" and "swinging by the wire".
NEW = ("swinging by a wire", "swinging by a cable", "swinging by a cord", "swinging by a thread")


def _replace(apps, remove: tuple[str, ...], add: tuple[str, ...]) -> None:
    Route = apps.get_model("routing", "Route")
    gone = {line.casefold() for line in remove}
    for route in Route.objects.filter(is_emergency=True):
        lines = [line.strip() for line in route.keywords.splitlines() if line.strip()]
        if not any(line.casefold() in gone for line in lines):
            continue
        kept = [line for line in lines if line.casefold() not in gone]
        present = {line.casefold() for line in kept}
        route.keywords = "\n".join(kept + [line for line in add if line.casefold() not in present])
        route.save(update_fields=["keywords", "updated_at"])
    # Running servers hold the route catalog (shared through the cache): drop it, so the
    # rules are rebuilt from the new keywords.
    from routing.services import route_catalog_invalidate

    route_catalog_invalidate()


def narrow(apps, schema_editor):
    _replace(apps, (OLD,), NEW)


def widen(apps, schema_editor):
    _replace(apps, NEW, (OLD,))


class Migration(migrations.Migration):
    dependencies = [("routing", "0010_learned_eighth_pass")]

    operations = [migrations.RunPython(narrow, widen)]
