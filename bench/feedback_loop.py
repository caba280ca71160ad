"""The feedback loop, proven: an admin's re-labels teach every serving process, no restart.

1. Recreates the PostgreSQL database named by ``--database-url`` (it is dropped!), migrates
   it, flushes the Redis db of ``--redis-url``; the routes are the shipped ones.
2. Measures the router on the *other* evaluation set, in this process (the servers' code).
3. Starts two uvicorn processes on ``clubos.asgi`` (A and B), both on that database and
   Redis, offline assistant backend, default config (hybrid, emergency policy "switch").
4. Sends every line of the *relabel* set to A through the API, as staff would (Auto).
5. Re-labels each misrouted request through ``request_log_relabel`` - the service behind the
   admin's "Re-label..." action - with the line's label, as an admin would.
6. Sends the re-labelled texts and close paraphrases (written for them, below) to A and to
   B, round after round, until each routes them all as labelled (or ``--timeout``): the
   seconds after the last re-label, per process, with the processes' ids unchanged.
7. Measures the other set again: what the re-labels changed on requests they never saw.

    .venv/bin/python bench/feedback_loop.py --database-url postgres://postgres@127.0.0.1:5432/NAME \
        --redis-url redis://127.0.0.1:6379/N [--relabel FILE] [--other FILE] [--json]

The re-labelled lines become training examples in that throwaway database only; the shipped
data never trains on a set still used for evaluation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import psycopg  # noqa: E402

from bench.procs import Processes, log, wait_until  # noqa: E402

# Close paraphrases of requests the shipped router misrouted on the held-out set (found
# with ``evaluate_router routing/data/eval_heldout.jsonl --show-errors``; the routing-safety
# second pass fixed all but the door-codes one, so only that one is re-labelled now, the
# others stay for a router that misroutes them), written by hand: the re-label must teach
# the meaning, not only the exact string.
PARAPHRASES: dict[str, list[str]] = {
    "ice machine line snapped, water pooling under the bar where all the cooler plugs are": [
        "the ice maker line broke and water is spreading under the bar toward the cooler plugs",
        "ice machine hose split, water collecting by the cooler plugs behind the bar",
    ],
    "remote monitoring: side door held-open alert and the camera shows a person carrying the "
    "TrackMan unit out to a van": [
        "monitoring alert: side door held open, camera shows someone carrying a TrackMan out "
        "to a van",
        "remote monitoring: camera shows a person taking the TrackMan unit out the side door "
        "to a van",
    ],
    "guy tailgated a member through the code door and now hes going through the lockers": [
        "someone tailgated a member through the code door and is going through the lockers",
        "a guy followed a member in through the code door and now hes going through lockers",
    ],
    "CAMERA 4 SOMEONE ON THE ROOF": [
        "camera 4 shows someone on the roof",
        "CAMERA 2 SOMEBODY ON THE ROOF",
    ],
    "security system: door forced, lobby, 03:14": [
        "security system says door forced in the lobby at 03:20",
        "security system: lobby door forced, 02:50",
    ],
    "side exit door won't open from the inside, totally jammed, and we've got the tournament "
    "tonight": [
        "the side exit door won't open from inside, jammed solid, and the tournament is tonight",
        "side exit door totally jammed from the inside and we've got a tournament tonight",
    ],
    "overnight: panic bar on the main exit broke off, door only opens with a key now": [
        "panic bar on the main exit broke off overnight, the door only opens with a key",
        "overnight the main exit's panic bar broke off, now it only opens with a key",
    ],
    "after last weekend's break-in (police + insurance done) we need to issue new door codes "
    "to all members, how?": [
        "after last weekend's break-in (police and insurance done) how do we issue new door "
        "codes to every member?",
    ],
    "make our holiday closing hours announcement sound warm and not corporate": [
        "make the holiday closing hours announcement sound warmer and less corporate",
        "make our holiday closing hours post sound warm, not corporate",
    ],
    # Misroutes of routing/data/eval_blind4.jsonl after the third pass.
    "back door alarm keeps going off and the cam shows the door propped open with a rock, "
    "no bookings": [
        "back door alarm keeps going off, camera shows the door propped open with a rock and "
        "there are no bookings",
    ],
    "motion alert in bay 6 at 4am, no booking, someone in there with a flashlight": [
        "motion alert in bay 5 at 3am, no booking, somebody in there with a flashlight",
    ],
    "big crack just showed up in the wall behind bay 2 after that rumble, and the door wont "
    "close now": [
        "a big crack just showed up in the wall behind bay 4 after that rumble and the door "
        "won't close now",
    ],
    "netting rail came loose and the whole net is sagging over the tee box, metal bar "
    "swinging around": [
        "the netting rail came loose, whole net sagging over the tee box and the metal bar is "
        "swinging around",
    ],
    "is there a smoke/haze setting on the projector? image looks foggy and washed out in bay 1": [
        "is there a smoke or haze setting on the projector? the image looks foggy and washed "
        "out in bay 3",
    ],
    "UPS in the server closet is beeping and says on battery, but power is on everywhere "
    "else in the building": [
        "the UPS in the server closet beeps and says on battery but the power is on everywhere "
        "else",
    ],
    "a customer asked if there was a fight here last night, he saw a video on tiktok. what "
    "do staff say": [
        "a customer asked whether there was a fight here last night, he saw a tiktok video. "
        "what should staff say",
    ],
    # Misroutes of routing/data/eval_blind7.jsonl after the fourth pass.
    "pwr gone. dark. ppl using phone flashlights": [
        "power gone, all dark, people using their phone flashlights",
    ],
    "group booked a halloween party and wants to bring a smoke machine, will the haze mess "
    "with the trackman ball reading?": [
        "a halloween party group wants to bring a smoke machine, will the haze affect the "
        "trackman ball reading?",
    ],
    "the flood of bookings after the promo froze the kiosk, its stuck on the payment page": [
        "the flood of bookings from the promo froze the kiosk, it is stuck on the payment screen",
    ],
    "the hitting mat in bay 2 is bleeding green dye onto peoples shoes, where do we get a new "
    "one": [
        "the bay 5 hitting mat is bleeding green dye onto people's shoes, where do we get a "
        "new one",
    ],
    "the gas station next door wants a cross promo, 10% off bay time with their receipt, need "
    "a flyer blurb": [
        "the gas station next door wants a cross promo, 10% off bay time with their receipt, "
        "write a flyer blurb",
    ],
    "announcement that bay 3 is back open after last week's leak repairs": [
        "announcement that bay 3 is open again after last week's leak repairs",
        "announcement: bay 3 back open after the leak repairs last week",
    ],
    # Misroutes of routing/data/eval_blind11.jsonl after the fifth pass.
    "staff door card reader is stuck on solid red and the access controller shows offline in "
    "the dashboard, keypad codes still work": [
        "the staff door card reader shows solid red and the access controller is offline on "
        "the dashboard, keypad codes still work",
    ],
    "Bay 2 cam: guy went down after slipping on the edge of the hitting mat, he's holding his "
    "ankle and hasn't gotten up in like 5 min": [
        "Bay 4 cam: a guy went down after slipping on the edge of the mat, holding his ankle "
        "and hasn't gotten up for 5 min",
    ],
    "Power went out for 20 min during yesterday's storm, everything's back to normal. A member "
    "wants credit for the session that got cut off - can we add an hour to his account?": [
        "Power was out 20 min in yesterday's storm, everything's back to normal. A member wants "
        "credit for his cut-off session - can we add an hour to his account?",
    ],
    "URGENT pls - what do we charge for a 3 hour block on a Saturday night? customer waiting on "
    "the phone": [
        "URGENT - what do we charge for a 3 hour block on Saturday night? customer on the phone",
    ],
    "Punch this up for twitter: 'Come murder the ball at our long drive comp'": [
        "Punch this up for twitter please: 'Come murder the ball at the long drive comp'",
    ],
    "Is this caption ok? 'Our happy hour prices will give you a heart attack 💀'": [
        "Is this caption ok? 'Our happy hour prices will give you a heart attack'",
    ],
    "Fire alarm went off at 2pm from burnt popcorn, fire dept came and cleared it, all good "
    "now. Bays 4 and 5 lost 30 min - can we extend their bookings?": [
        "Fire alarm went off at 2pm from burnt popcorn, the fire dept came and cleared it, all "
        "good now. Bays 4 and 5 lost half an hour - can we extend their bookings?",
    ],
    "text blast for Father's Day: 20% off bays all day Sunday": [
        "text blast for Father's Day: 20% off all bays on Sunday",
    ],
    "the lady who twisted her ankle here in the spring came back fully healed - what gift card "
    "amounts do we offer? want to give her one as a goodwill gesture": [
        "the lady who twisted her ankle here in the spring is back fully healed - what gift "
        "card amounts do we offer? want to give her one as goodwill",
    ],
    "Hurricane is expected Thursday night. We're closing Thursday 6pm and reopening Friday "
    "noon - write the text to customers who have bookings in that window": [
        "Hurricane expected Thursday night. We close Thursday 6pm and reopen Friday noon - "
        "write the text to customers booked in that window",
    ],
    "text to customers booked Tuesday 8-9am: there'll be a short evacuation drill at 8:15, "
    "we'll add 15 minutes to their session": [
        "text to customers booked Tuesday 8-9am: a short evacuation drill at 8:15, we'll add "
        "15 minutes to their session",
    ],
    "🔥🔥🔥 bar microwave": ["🔥🔥🔥 the bar microwave"],
    "Halloween party post: spooky smoke-filled bays (it's a fog machine), costume contest, "
    "Oct 31 from 8pm": [
        "Halloween party post: spooky smoke-filled bays (a fog machine), costume contest, "
        "Oct 31 from 8pm",
    ],
    "post congratulating Mia for shattering the course record on our St Andrews sim": [
        "post congratulating Mia on shattering the course record on our St Andrews sim",
    ],
    "remote: every camera went offline at once and the alarm panel says running on battery, "
    "there are still people booked inside": [
        "remote: all the cameras went offline at once and the alarm panel says on battery, "
        "people are still booked inside",
    ],
    "watching bay 6 on the remote cam, a ball bounced back off the screen frame and the woman "
    "is holding her eye, her friend is waving at the camera": [
        "watching bay 6 on the remote cam, a ball bounced off the screen frame and the woman is "
        "holding her eye, her friend waving at the camera",
    ],
    # Misroutes of routing/data/eval_blind18.jsonl after the seventh pass.
    "was gonna ask about the new price sheet but a player in 8 just went white as a sheet, "
    "doubled over clutching his stomach, says its 10/10 pain": [
        "was going to ask about the price sheet but a player in 8 went white as a sheet, "
        "doubled over holding his stomach, says the pain is 10/10",
    ],
    "cctv: hooded guy in the office at 4am, no overnight bookings on the calendar": [
        "cctv shows a hooded guy in the office at 4am and there are no overnight bookings",
    ],
    "that guy we banned last month is back, pacing by the entrance saying hes going to make "
    "us pay": [
        "the guy we banned last month is back pacing by the entrance, saying he'll make us pay",
    ],
    "thank you note to the corporate group from last week pls": [
        "thank you note for the corporate group from last week please",
    ],
    "kitchen smoke thing last night is over, fire dept cleared us. do we comp the party that "
    "got evacuated?": [
        "the kitchen smoke thing from last night is over, fire dept cleared us. do we comp the "
        "evacuated party?",
    ],
    "ambulance was here earlier for a guy who felt faint, hes fine and went home, his buddies "
    "want their bay time credited": [
        "ambulance came earlier for a guy who felt faint, he's fine and went home, his buddies "
        "want their bay time credited",
    ],
    "impact screen in 6 has a big gash from a topped shot, bay is closed off, needs replacing": [
        "impact screen in bay 6 has a big gash from a topped shot, bay closed off, needs replacing",
    ],
    "bay 3 screen looks like its bleeding, red streaks down the whole image": [
        "the bay 3 screen looks like it's bleeding, red streaks down the whole picture",
    ],
    "trackman is on FIRE today lol everyone hitting bombs, can we post the leaderboard": [
        "trackman is on FIRE today lol everybody hitting bombs, can we post the leaderboard",
    ],
    "new cocktail is called Fire in the Hole, ok to put that on the menu flyer?": [
        "the new cocktail is called Fire in the Hole, ok to put it on the menu flyer?",
    ],
    "BAY 8 MAT SWAPPED BACK TO RIGHTY FOR LEAGUE": [
        "BAY 8 MAT SWAPPED BACK TO RIGHTY FOR LEAGUE NIGHT"
    ],
    "lady sat in the lounge 2 hrs watching her son hit, he had the 5-7 in bay 6": [
        "a lady sat in the lounge 2 hrs watching her son hit, he had the 5-7 in bay 6",
    ],
    # Misroutes of routing/data/eval_blind28.jsonl after the eighth pass.
    "Power lost at 02:30, UPS on battery, bays 1-8 dark, two groups still inside on camera.": [
        "Power lost at 03:10, UPS running on battery, bays 1-8 are dark and two groups are "
        "still inside on camera.",
        "power lost at 2:30, ups on battery, all bays dark, 2 groups still inside per camera",
    ],
    "Door forced-open alert at 04:10 was the cleaner; her key card expired. Verified on "
    "camera, all fine. Please renew her card.": [
        "Door forced-open alert at 05:20 was the cleaner, her key card had expired. Checked on "
        "camera, all fine. Please renew her card.",
    ],
    "Intruder alarm disarmed at 23:50 with the Lee booking's code, legit on camera. Confirm "
    "their code expires at 2am as booked?": [
        "Intruder alarm was disarmed at 23:40 with the Lee booking's code, legit on camera. Can "
        "you confirm their code expires at 2am as booked?",
    ],
    # Misroutes of routing/data/eval.jsonl after the eighth pass.
    "im at the door and it wont let me in": [
        "i'm at the door and it won't let me in",
        "at the front door and it wont let me in",
    ],
    "need a copy of the invoice for ABC Corp's team event": [
        "need a copy of the invoice for the XYZ Ltd team event",
    ],
    "customer keeps getting a payment error at the last step": [
        "a customer keeps hitting a payment error on the last step",
    ],
    "what do we do about someone who never showed for a 3 hour booking": [
        "what do we do about a no-show on a 3 hour booking",
    ],
    "one of the side nets came unhooked from the ceiling": [
        "one of the side nets has come unhooked from the ceiling",
    ],
    "switch bay 8 to metric please": ["please switch bay 3 to metric"],
    "the lights over bay 5 keep buzzing": ["the lights above bay 2 keep buzzing"],
    "can members book further ahead than everyone else": [
        "can members book further in advance than everyone else",
    ],
    "how do I make a spreadsheet add up a column": [
        "how do I get a spreadsheet to add up a column",
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL; DROPPED and created")
    parser.add_argument("--redis-url", required=True, help="its db is flushed")
    parser.add_argument("--relabel", type=Path, default=ROOT / "routing/data/eval_heldout.jsonl")
    parser.add_argument("--other", type=Path, default=ROOT / "routing/data/eval.jsonl")
    parser.add_argument("--timeout", type=float, default=60.0, help="per serving process")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "OPENAI_", "DJANGO_", "SLACK_", "ASSISTANT_"))
    }
    env.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DATABASE_POOL_MAX="4",
        DATABASE_ASYNC_POOL_MAX="2",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    _recreate_database(args.database_url)
    log("migrating")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")
    import django

    django.setup()
    from django.core.cache import cache

    from config.services import system_config_update

    cache.clear()
    # The submit throttle stays on, at a rate the bench never reaches.
    system_config_update(throttle_submit_rate="100000/min")

    relabel_set, other_set = _load(args.relabel), _load(args.other)
    other_before = _measure(other_set)
    log(f"other set before: {_describe(other_before)}")

    token = _token()
    processes = Processes(ROOT)
    try:
        servers = {name: _start_server(processes, env, name) for name in ("A", "B")}
        pids = {name: proc.pid for name, (proc, _) in servers.items()}
        url_a = servers["A"][1]
        with httpx2.Client(headers={"Authorization": f"Token {token}"}, timeout=30) as client:
            log(f"sending the {len(relabel_set)} lines of {args.relabel.name} to A")
            sent = [(_submit(client, url_a, text), text, label) for text, label in relabel_set]
            misroutes = [
                (rid, text, label, got) for (rid, got), text, label in sent if got != label
            ]
            relabel_accuracy_before = 1 - len(misroutes) / len(sent)
            log(f"{len(misroutes)} misrouted; re-labelling them through the admin's service")
            relabel_s = _relabel(misroutes)
            settled = time.monotonic()
            probes = [(text, label) for _, text, label, _ in misroutes]
            paraphrases = [(p, label) for text, label in probes for p in PARAPHRASES.get(text, [])]
            # Both processes at once, each from its own client: neither waits on the other.
            with ThreadPoolExecutor(len(servers)) as pool:
                futures = {
                    name: pool.submit(
                        _until_right, token, url, probes, paraphrases, settled, args.timeout
                    )
                    for name, (_, url) in servers.items()
                }
                results = {name: future.result() for name, future in futures.items()}
        restarted = [name for name, (proc, _) in servers.items() if proc.poll() is not None]
        same_pids = {name: proc.pid for name, (proc, _) in servers.items()} == pids
    finally:
        processes.stop_all()

    other_after = _measure(other_set)
    relabel_after = _measure(relabel_set)
    report = {
        "relabel_set": args.relabel.name,
        "other_set": args.other.name,
        "relabel_set_accuracy_before": round(relabel_accuracy_before, 4),
        "relabel_set_accuracy_after": relabel_after["accuracy"],
        "relabelled": len(misroutes),
        "relabel_seconds": round(relabel_s, 3),
        "paraphrases": len(paraphrases),
        "servers": results,
        "no_restart": not restarted and same_pids,
        "other_before": other_before,
        "other_after": other_after,
    }
    _print(report)
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    every = all(
        r["originals_right"] and r["paraphrases_right"] == len(paraphrases)
        for r in results.values()
    )
    return 0 if every and report["no_restart"] else 1


def _recreate_database(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    log(f"recreating database {name!r}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _load(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(row["text"], row["route"]) for row in map(json.loads, filter(str.strip, lines))]


def _measure(examples: list[tuple[str, str]]) -> dict[str, Any]:
    """The configured router on ``examples``, as a serving process would route them."""
    from config.selectors import system_config_get
    from routing.router import route_decide
    from routing.selectors import route_catalog_get

    config, catalog = system_config_get(), route_catalog_get()

    async def routed() -> list[str]:
        return [
            (
                await route_decide(text=t, requested="auto", catalog=catalog, config=config)
            ).route.slug
            for t, _ in examples
        ]

    got = asyncio.run(routed())
    emergencies = [g for g, (_, label) in zip(got, examples, strict=True) if label == "emergency"]
    others = [g for g, (_, label) in zip(got, examples, strict=True) if label != "emergency"]
    right = sum(g == label for g, (_, label) in zip(got, examples, strict=True))
    return {
        "n": len(examples),
        "accuracy": round(right / len(examples), 4),
        "emergency_recall": round(emergencies.count("emergency") / len(emergencies), 4)
        if emergencies
        else None,
        "false_emergencies": others.count("emergency"),
    }


def _describe(m: dict[str, Any]) -> str:
    return (
        f"accuracy {m['accuracy']:.2%}, emergency recall {m['emergency_recall']:.1%}, "
        f"false emergencies {m['false_emergencies']} (n={m['n']})"
    )


def _token() -> str:
    from django.contrib.auth import get_user_model

    from accounts.services import api_token_create

    user, _ = get_user_model().objects.get_or_create(username="feedback-bench")
    return api_token_create(user=user)[1]


def _start_server(processes: Processes, env: dict[str, str], name: str) -> tuple[Any, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    argv = [sys.executable, "-m", "uvicorn", "clubos.asgi:application", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--lifespan", "on", "--no-access-log", "--log-level", "warning"]
    proc = processes.start(f"server {name}", argv, env=env)
    url = f"http://127.0.0.1:{port}"
    log(f"server {name}: pid {proc.pid}, {url}")
    wait_until(lambda: _healthy(url), timeout=120, what=f"server {name}")
    return proc, url


def _healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/api/v1/health/", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def _submit(client: httpx2.Client, url: str, text: str) -> tuple[str, str]:
    response = client.post(f"{url}/api/v1/requests/", json={"text": text, "route": "auto"})
    response.raise_for_status()
    body = response.json()
    return body["id"], body["route"]["slug"]


def _relabel(misroutes: list[tuple[str, str, str, str]]) -> float:
    from requestlogs.models import RequestLog
    from requestlogs.services import request_log_relabel
    from routing.models import Route

    started = time.monotonic()
    routes = {r.slug: r for r in Route.objects.all()}
    for request_id, _, label, _ in misroutes:
        request_log_relabel(log=RequestLog.objects.get(pk=request_id), route=routes[label])
    return time.monotonic() - started


def _until_right(
    token: str,
    url: str,
    probes: list[tuple[str, str]],
    paraphrases: list[tuple[str, str]],
    settled: float,
    timeout: float,
) -> dict[str, Any]:
    """Rounds of the re-labelled texts until all route as labelled; then the paraphrases."""
    rounds = 0
    with httpx2.Client(headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        while True:
            rounds += 1
            right = sum(_submit(client, url, text)[1] == label for text, label in probes)
            if right == len(probes) or time.monotonic() - settled > timeout:
                break
        seconds = time.monotonic() - settled
        wrong = [text for text, label in paraphrases if _submit(client, url, text)[1] != label]
    return {
        "originals_right": right == len(probes),
        "originals_right_count": right,
        "seconds_after_last_relabel": round(seconds, 2),
        "rounds": rounds,
        "paraphrases_right": len(paraphrases) - len(wrong),
        "paraphrases_wrong": wrong,
    }


def _print(report: dict[str, Any]) -> None:
    print(f"re-labelled set: {report['relabel_set']}   other set: {report['other_set']}")
    print(
        f"misrouted on the re-labelled set: {report['relabelled']} "
        f"(accuracy {report['relabel_set_accuracy_before']:.2%} -> "
        f"{report['relabel_set_accuracy_after']:.2%}); re-labelled in "
        f"{report['relabel_seconds']:.2f} s"
    )
    for name, r in report["servers"].items():
        print(
            f"server {name}: all {report['relabelled']} texts right: {r['originals_right']} "
            f"({r['originals_right_count']}), {r['seconds_after_last_relabel']:.1f} s after the "
            f"last re-label ({r['rounds']} rounds); paraphrases right "
            f"{r['paraphrases_right']}/{report['paraphrases']}"
        )
        for text in r["paraphrases_wrong"]:
            print(f"    paraphrase still misrouted: {text}")
    print(f"no restart (same process ids, both alive): {report['no_restart']}")
    print(f"other set before: {_describe(report['other_before'])}")
    print(f"other set after:  {_describe(report['other_after'])}")


if __name__ == "__main__":
    sys.exit(main())
