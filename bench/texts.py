"""Request texts for the benchmark: realistic, varied, never an emergency.

Emergency requests get a safety preamble as their first delta (and a Slack alert), which would
distort "time to the first answer text", so none of these may match an emergency keyword; the
bench checks the route of every answer anyway. Each request is made unique with a reference
(``ref <tag>``) so nothing is served from the response cache unless a scenario wants it, and so
the bench can find the request's own calls in the fake upstream's call list.
"""

import re
from collections.abc import Sequence

TECH = (
    "TrackMan frozen in bay 3",
    "Projector in bay 2 shows no image",
    "The simulator in bay 5 is not tracking any shots",
    "Ball data is missing on the bay 1 screen",
    "Performance Studio crashed and will not restart",
    "Bay 4 PC is stuck on a blue screen",
    "Impact screen image is blurry and flickering in bay 6",
    "Kiosk touchscreen in the lobby is not responding to taps",
    "No sound from the speakers in bay 2",
    "The TV in the lounge says no signal",
    "Wifi keeps dropping for guests in the lobby",
    "Bay tablet will not load the session screen",
    "TrackMan says the license has expired on the bay 7 PC",
    "Club data shows zeros for every swing in bay 3",
    "Projector lamp warning light is on in bay 8",
    "Windows update is stuck at 30 percent on the bay 2 computer",
    "Camera calibration looks off, shots land left of the target",
    "The bay 1 monitor shows an error code 0x54 at start-up",
    "Bluetooth speaker in bay 4 will not pair",
    "TPS login screen rejects the venue password",
)

BOOKING = (
    "Customer locked out, door code not working",
    "Need to extend the current session in bay 3 by 30 minutes",
    "Customer was charged twice for one booking",
    "Cancel the 7pm booking for tomorrow and refund the deposit",
    "Key card for the side entrance is not opening the door",
    "Customer never got a confirmation email for Saturday",
    "Can we move a booking from Friday to Sunday afternoon",
    "Booked under the wrong email address, please fix it",
    "Payment was declined but the customer says the card is fine",
    "Grant building access to the new evening staff member",
    "Remote unlock the front door for the 9pm booking",
    "Customer asks for a receipt for last week's booking",
    "Double booked bay 5 at 6pm, who keeps it",
    "Walk in customer wants a bay right now, what is available",
    "Reschedule a corporate booking to next Thursday",
)

BRAND = (
    "How much is a monthly membership",
    "What are the opening hours on public holidays",
    "Write a friendly reply to a 3-star Google review about slow check-in",
    "Draft an Instagram caption for the winter league launch",
    "Do gift cards expire",
    "What discount do members get on lessons",
    "Rewrite this promo email so it sounds less pushy",
    "Is there parking at the Halifax location",
    "Plan a newsletter announcement for the spring tournament",
    "What are the prices for a birthday party package",
    "How do loyalty points work for regular customers",
    "Suggest a tagline for the new Truro location",
    "Customer asks whether we offer coaching for juniors",
    "Reply to a Facebook message asking about corporate event rates",
    "What is the brand colour hex code for the new posters",
)

TEXTS: tuple[str, ...] = TECH + BOOKING + BRAND

REF_RE = re.compile(r"\(ref ([a-z0-9-]+)\)")


def unique_text(tag: str, index: int, pool: Sequence[str] = TEXTS) -> str:
    """The index-th text of ``pool`` (cycling), made unique by a reference the fake upstream's
    call log shows."""
    return f"{pool[index % len(pool)]} (ref {tag})"


def ref_of(text: str) -> str | None:
    match = REF_RE.search(text)
    return match.group(1) if match else None
