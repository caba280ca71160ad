"""Keyword rules: the cheapest strategy, and the safety net every other strategy can call first.

How matching works
------------------
Text and keywords go through the same normalisation: casefold, accents dropped,
apostrophes removed ("can't" -> "cant"), everything else that is not a letter or a digit
is a separator. Each word is reduced by a small, deliberately crude stemmer (``stem``) so
that inflections meet: "spark/sparks/sparked/sparking/sparky" -> "spark", "bleeding" ->
"bleed", "flooded/flooding" -> "flood", "fainted" -> "faint", "smoke/smoky/smoking" ->
"smok", "injury/injured/injuries" -> "injur", "chest pains" -> "chest pain". The stemmer
is not linguistics; it only has to send both sides of a comparison to the same place.

A keyword phrase matches when its stems occur in order; up to two *filler* words ("is",
"the", "a", "all"...) may sit between two of its words, and fillers inside a keyword are
ignored, so "power out" matches "the power is out" and "hit by a ball" matches "hit by
the ball".

Emergency routes: safety first, recall over precision
-----------------------------------------------------
On a route with ``is_emergency`` ANY keyword match forces the route with confidence 1.0.
A few cheap guards remove the commonest false alarms; each errs towards keeping the match:

* Negation: a match right after "no", "not", "nobody", "no one", "without", "never",
  "wasn't"... (at most three filler words between, same clause) is ignored: "nobody was
  hurt", "no smoke", "no smell or smoke", "not an emergency". Clauses end at punctuation
  and at "but", so "no fire, but a burning smell" still matches "burning smell". Only true
  negators count: "can't stop the bleeding" is NOT a negation, and "not breathing" is
  itself a keyword. "oh no, fire!" is not a negation either.
* Idioms: matches inside a fixed list of harmless phrases are ignored: "fire up the
  projector", "fire off an email", "Fire TV stick", "memory leak", "by accident", "smoke
  break", "won't hurt to restart". We do NOT try to catch "TrackMan is on fire today" or
  "he got fired": they are rare at a venue desk and a wrong emergency costs less than a
  missed one.
* Device context: a handful of words are emergencies about people but routine about
  equipment ("fell", "collapsed", "unresponsive", "not responding", "won't wake up",
  "blacked out", "went dark", "lights went out", "smashed", "shattered"; "faint" next to
  "image"/"sound"; "leak" next to "code"/"memory"/"data"; "tripped" next to "golf"/"team").
  They are ignored when such a word sits just before them (three words, not counting "in
  bay 3") or just after them (two words), unless a person comes first: "the projector
  fell, nobody hurt" and "kiosk unresponsive" are tech, while "a customer fell", "a man
  collapsed at the kiosk" and "projector fell and hit a customer" stay emergencies.
  Hazards are never context-suppressed: "projector sparking", "smoking outlet".
* Wording requests: a text that opens with "write", "draft", "rewrite", "post",
  "apology"... (or "reply to"/"respond to" a review, comment or message) asks for words
  about something, which is BrandTone's job: "write an apology for last night's power
  outage". "How do I respond to a fire alarm" and anything about an "incident" still match.
  Asked for later ("... can you punch it up", "write a flyer for 'Smoke and Swing'"), only
  the keywords of that sentence are about the words, and never a symptom: "Fire in the
  kitchen, everyone out. can you reword this for the group chat" is a fire.
* Typos: emergency words of seven or more letters also match one dropped, added or swapped
  letter, or one wrong vowel ("unconcious", "ambulence", "emergancy"); common misspellings
  of shorter words are listed as keywords ("siezure").

Other routes: the score of a route is the sum of its matched phrases' weights (a phrase
of n content words weighs n, so longer phrases count more); the best score wins, lower
``priority`` breaks ties; confidence grows from 0.5 (a tie) towards 0.95 with the margin
over the runner-up. No match at all returns None.

Everything the text is compared with is compiled once per catalog (``fingerprint`` plus
which routes are emergencies, which the fingerprint does not cover), cached on the
instance behind a lock, so ``decide`` costs tens of microseconds.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from config.selectors import ConfigSnapshot
from routing.selectors import RouteCatalog, RouteSnapshot
from routing.strategies.base import RouteDecision, RoutingStrategy
from routing.text import has_separators, unconfused, visible

# --------------------------------------------------------------------------- text handling

# fmt: off
_TOKEN_RE = re.compile(r"[a-z0-9]+|[.!?;,:()\n]")
_BREAK_PUNCT = frozenset(".!?;,:()\n")
# Words that end a clause as punctuation does (for the negation scope).
_BREAK_WORDS = frozenset({"but", "though", "although", "however", "yet", "except"})

# Words skipped inside phrases, on both sides (dropped from keywords, skipped in the text).
FILLERS = frozenset(
    {
        "a", "an", "the", "is", "are", "was", "were", "be", "been", "its", "all", "just",
        "really", "very", "so", "this", "that", "some", "still", "now", "totally", "completely",
        "badly", "s", "of", "has", "have",
    }
)
# Skipped in the text between two words of a phrase, but kept when written in a keyword:
# "rolled ankle" matches "rolled his ankle", while "hit her" stays two words.
POSSESSIVES = frozenset({"my", "his", "her", "their", "our", "your", "its"})
_MAX_GAP = 2  # filler words allowed between two words of a phrase

_NEGATORS = frozenset(
    {
        "no", "not", "nobody", "nobodys", "noone", "none", "never", "without", "nothing", "isnt",
        "wasnt", "arent", "werent", "aint", "neither", "nor",
    }
)
# Words that may sit between a negator and what it negates ("no one was hurt").
_NEGATION_FILLERS = frozenset(
    {
        "one", "ones", "is", "was", "were", "are", "be", "been", "being", "got", "get", "gets",
        "getting", "has", "have", "had", "seems", "seem", "seemed", "appears", "appear", "looks",
        "look", "actually", "really", "seriously", "badly", "any", "anyone", "anybody", "a", "an",
        "the", "visible", "obvious", "real", "sign", "signs", "of", "on", "in", "it", "its",
        "them", "us", "that", "like", "actual", "more", "else",
    }
)
_NEGATION_WINDOW = 3
# Words of the item a negated list holds before its "or" ("no burning smell or smoke").
_LIST_ITEM_MAX = 2
_LISTED_HAZARDS = frozenset(
    {
        "smok", "smell", "fire", "flam", "spark", "water", "leak", "blood", "burn", "fum",
        "gas", "flood",
    }
)
# "oh no, fire!": "no" after these is an exclamation, not a negation.
_EXCLAMATIONS = frozenset({"oh", "uh", "omg", "ohh", "ahh"})

# Harmless phrases: an emergency keyword match lying wholly inside one of these is ignored
# ("customer was hit by accident" still matches "hit by"). Never list a phrase that can
# also describe a real incident ("cut off", "fire back", "hurt our ...staff").
IDIOMS: tuple[str, ...] = (
    "fire up", "fired up", "firing up", "fire it up", "fire them up", "fire that up", "fire off",
    "fired off", "fire away", "fire tv", "fire stick", "fire sale", "fire an email", "fire me",
    "got fired", "get fired", "getting fired", "been fired", "fire code", "fire inspection",
    "broke into the top", "break into the top", "breaking into the top",
    "broke into the leaderboard", "emergency stop", "fire drill", "fire marshal", "fire marshall",
    "fire inspector", "memory leak", "by accident", "smoke break", "smoking area",
    "smoking policy", "smoke free", "for a smoke", "out for a smoke", "allowed to smoke", "can customers smoke",
    "can people smoke", "can guests smoke", "wont hurt", "wouldnt hurt", "doesnt hurt",
    "cant hurt", "couldnt hurt", "never hurts", "hurt to ask", "hurt our business",
    "hurt our sales", "hurt our reviews", "hurt our numbers", "hurting our business",
    "hurting our sales", "hurting our reviews", "hurting our numbers", "hurt the business",
    "hurt business", "hurt sales", "family emergency", "personal emergency",
    "emergency at home", "emergency contact", "cut short", "got cut short", "cut out",
    "cuts out", "cutting out", "burnt out", "burned out", "burns out",
    # Emergency as a business adjective, and show effects and marketing heat.
    "emergency booking", "emergency bookings", "emergency refund", "emergency meeting",
    "emergency shift", "emergency cover", "emergency order", "emergency restock",
    "emergency fix", "emergency fixes", "emergency repair", "emergency repairs",
    "emergency ticket", "emergency callout", "emergency call out", "emergency maintenance",
    "emergency alert banner", "smoke machine", "fog machine", "smoke effect", "fire emoji",
    "fire emojis", "flame emoji", "flame emojis", "flames emoji", "smoking hot", "blazing hot", "fire pit", "fire pits", "fire table",
    "fire tables",
    # Golf and questions about safety rather than an incident.
    "water hazard", "water hazards", "hurting his score", "hurting her score",
    "hurting my score", "hurting their score", "hurt his score", "hurt my score", "snow melted",
    "ice melted", "say about injuries", "whether we have an aed", "have an aed on site",
    # Training and certificates: a question about staff, not a person in trouble.
    "cpr trained", "cpr certified", "cpr certification", "cpr certificate", "cpr training",
    "cpr course", "cpr class", "cpr refresher", "first aid trained", "first aid training",
    "first aid certified", "first aid certificate", "first aid course", "first aid refresher",
    "restock the first aid", "restock first aid", "first aid kit restock",
    # Giving blood, and a display's burn-in cycle.
    "blood drive", "blood drives", "blood donation", "blood donations", "donate blood",
    "donating blood", "blood donor", "blood donors",
    "burn in mode", "burn in test", "burn in period", "burn in cycle", "screen burn in",
    # Golf's choke.
    "choke of the week", "choking under pressure", "choked under pressure",
    # Loyalty cards, a to-do list, and "great" in British English.
    "punch card", "punch cards", "punch list", "look smashing", "looks smashing",
    # Halloween props, handing things out, and a fright at a bill.
    "fake blood", "stage blood", "passed out flyers", "passed out leaflets", "passed out the flyers",
    "passed out vouchers", "passed out coupons", "passed out samples", "passed out menus",
    "nearly had a heart attack", "almost had a heart attack", "gave me a heart attack",
    "give me a heart attack", "giving me a heart attack", "nearly passed out when",
    "give you a heart attack", "gave him a heart attack", "gave her a heart attack",
    "gave them a heart attack", "give him a heart attack", "give her a heart attack",
    "give them a heart attack", "give people a heart attack", "giving people heart attacks",
    "have a heart attack if", "heart attack burger", "heart attack burgers",
    "passed out the scorecards", "passed out the wristbands", "passed out the prizes",
    "passed out the pencils", "passed out the cards", "run on oxygen", "runs on oxygen",
    "running on oxygen", "oxygen tank prop",
    # Golf slang: a hit, a hot streak, taking up the game.
    "smoked a drive", "smoked the drive", "smoked his drive", "smoked her drive",
    "smoked that drive", "smoking drives", "straight fire", "break into golf",
    "breaking into golf", "broke into golf", "hitting bombs", "hit bombs", "hits bombs",
    "bombing drives", "bomb drives",
    # What else gets trapped: air, heat, a ball, a wasp, a person's feelings about a contract.
    "wasp trapped", "bee trapped", "bird trapped", "pigeon trapped", "bat trapped",
    "fly trapped", "moth trapped",
    "air bubble trapped", "bubble trapped", "air trapped", "heat trapped", "heat getting trapped",
    "heat gets trapped", "ball trapped", "ball got trapped", "balls trapped", "balls get trapped",
    "feels trapped", "feel trapped", "feeling trapped", "trapped in his contract",
    "trapped in her contract", "trapped in their contract", "trapped in the contract",
    "trapped in a contract",
    # A trap that holds nobody, and flames drawn on a screen. Not "on fire tonight": a
    # bartender can be, with his shirt caught on a candle.
    "death trap", "fire trap", "firetrap", "tourist trap", "sand trap", "sand traps", "speed trap",
    "thirst trap", "flame animation", "flame animations", "flame effect", "flame effects",
    "flame graphic", "flame graphics", "flame icon", "flame decal", "flame decals",
)

# A scheduled check of safety equipment ("fire alarm test thursday", "the sprinkler
# inspection") is not an incident: a match with one of these words right after it (or
# "test"/"testing" right before it) is ignored.
_ROUTINE_CHECK = frozenset(
    {
        "test", "tests", "tested", "testing", "inspection", "inspections", "inspector", "drill",
        "drills", "certification", "recertification", "maintenance",
    }
)
_ROUTINE_AFTER = 2
# ... or one of these right before it: "testing the sprinklers", "the planned power shutdown".
_ROUTINE_BEFORE = frozenset({"test", "testing", "inspect", "inspecting", "planned", "scheduled"})
# ... or a scheduled check anywhere in its clause.
_SCHEDULED_CHECKS = tuple(
    (when, check)
    for when in ("scheduled", "planned", "annual", "monthly", "weekly")
    for check in ("test", "testing", "inspection", "drill")
)

# Emergencies happen right now. A match with a day or more ago beside it in its clause
# ("refund for last week's power cut", "the fight back in june") is history; so is one
# with "last night" / "this morning" when the text says it is over ("after the flood last
# night (cleanup done)"). "Someone broke in last night" alone stays an emergency: it is
# being discovered now.
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)
# It happened somewhere else: "broke his arm skiing, wants to move his lessons".
_ELSEWHERE = frozenset(
    {
        ("skiing",), ("snowboarding",), ("on", "holiday"), ("on", "vacation"), ("at", "home"),
        ("playing", "football"), ("playing", "soccer"), ("playing", "hockey"),
        ("playing", "rugby"), ("playing", "basketball"), ("at", "the", "gym"),
    }
)
_LONG_AGO = _ELSEWHERE | frozenset(
    {
        ("last", "week"), ("last", "weeks"), ("last", "month"), ("last", "months"),
        ("last", "weekend"), ("last", "weekends"), ("last", "year"), ("last", "years"),
        ("last", "season"), ("last", "time"), ("yesterday",), ("yesterdays",), ("days", "ago"),
        ("weeks", "ago"), ("months", "ago"), ("years", "ago"), ("week", "ago"),
        ("month", "ago"), ("year", "ago"), ("last", "nights"), ("this", "mornings"),
        *(("last", day) for day in _WEEKDAYS), *(("last", f"{day}s") for day in _WEEKDAYS),
        *(("back", "in", month) for month in _MONTHS), *(("in", month) for month in _MONTHS),
    }
)
_RECENTLY = frozenset({("last", "night"), ("this", "morning"), ("earlier", "today")})
_OVER = (
    ("fixed", "since"), ("since", "fixed"), ("all", "handled"), ("been", "handled"),
    ("all", "good", "now"), ("fine", "now"), ("totally", "fine"), ("back", "since"),
    ("been", "back"), ("back", "open"), ("cleanup", "done"), ("cleaned", "up"),
    ("repaired",), ("repairs",), ("resolved",), ("insurance", "done"), ("already", "checked"),
    ("checked", "him", "out"), ("checked", "her", "out"), ("checked", "them", "out"),
    ("got", "checked"), ("been", "checked"), ("all", "clear"), ("taken", "care", "of"),
    ("cleanup", "finished"), ("cleanup", "complete"), ("was", "fixed"), ("got", "fixed"),
    ("been", "fixed"), ("is", "fixed"), ("now", "fixed"), ("turned", "out", "fine"),
    ("false", "alarm"), ("already", "handled"), ("signed", "off"), ("fully", "out"),
    ("is", "over"), ("cleared", "us"), ("cleared", "him"), ("cleared", "her"),
    ("cleared", "them"),
)
# Words far apart in one clause still share it: "flood cleanup in bay 9 finished last month".
_PAST_WINDOW = 10
# ...unless the words beside it say it is happening again or now: "the pipe that burst last week is
# leaking again" is a live leak.
_HAPPENING_NOW = (("again",), ("right", "now"), ("currently",), ("at", "the", "moment"))
_NOW_WINDOW = 4
# "after the flood", "after last night's power cut": what follows is its aftermath.
_AFTERMATH_WINDOW = 3

# Asking for words anywhere in the text ("... can you punch it up", "help me reply"), not
# only at its start: BrandTone's job, as the opening wording verbs above.
_WORDING_PHRASES = (
    ("punch", "it", "up"), ("help", "me", "reply"), ("help", "me", "respond"),
    ("help", "me", "word"), ("how", "should", "we", "answer"), ("how", "should", "we", "reply"),
    ("how", "should", "we", "respond"), ("how", "should", "i", "answer"),
    ("how", "should", "i", "reply"), ("how", "should", "i", "respond"), ("on", "brand"),
    ("banner", "text"), ("reminder", "post"), ("announcement", "that"), ("halloween", "copy"),
    ("caption", "for"), ("review", "reply"), ("polite", "response"), ("polite", "reply"),
    ("promo", "line"), ("promo", "copy"), ("sms", "blast"), ("email", "blast"),
    ("friendly", "tone"), ("new", "wording"), ("wording", "for"),
)

# Requests for *wording* about an incident ("write an apology for last night's power
# outage", "reply to this review about the fire alarm") are BrandTone work, not an incident
# in progress: when the text opens with one of these verbs, emergency keywords don't force.
# "reply"/"respond" only count when a review, comment, post or message follows ("how do I
# respond to a fire alarm" is still an emergency), and nothing mentioning an "incident"
# (incident reports are the emergency route's job) is ever treated as wording.
_WORDING_VERBS = frozenset(
    {
        "write", "draft", "rewrite", "reword", "compose", "caption", "tweet", "translate",
        "proofread", "polish", "edit", "summarize", "summarise", "announce", "apology",
        "apologize", "apologise", "post",
    }
)
_REPLY_VERBS = frozenset({"reply", "respond", "answer"})
# Verbs that ask for words about something wherever they stand: "...the 'emergency golf
# fix' ad is insensitive, can you rewrite it".
_EDITING_VERBS = frozenset({"rewrite", "reword", "rephrase", "proofread", "redraft"})
# "write a flyer", "draft a sign" anywhere in the text asks for words too.
_WRITING_VERBS = frozenset({"write", "draft", "compose"})
_DOCUMENTS = frozenset(
    {
        "flyer", "flyers", "sign", "signs", "poster", "notice", "blurb", "caption", "newsletter",
        "announcement", "banner", "leaflet", "menu",
    }
)
_REPLY_OBJECTS = frozenset(
    {
        "review", "reviews", "comment", "comments", "post", "email", "message", "dm", "tweet",
        "feedback", "complaint",
    }
)
_POLITE = frozenset(
    {
        "please", "pls", "plz", "can", "could", "would", "will", "you", "u", "help", "me", "us",
        "hey", "hi", "quick", "quickly", "i", "need", "needs", "to", "we", "want", "ok", "okay",
        "so", "just", "a", "an", "the", "lets", "let", "should", "how", "do", "go", "ahead",
        "and",
    }
)

# Equipment words: context that makes some person-words routine (see module docstring).
DEVICE_WORDS = frozenset(
    {
        "projector", "screen", "screens", "tv", "tvs", "monitor", "pc", "computer", "kiosk",
        "tablet", "touchscreen", "trackman", "sim", "simulator", "software", "program", "app",
        "system", "display", "mat", "net", "netting", "mount", "bracket", "speaker", "speakers",
        "remote", "keypad", "unit", "camera", "printer", "router", "modem", "laptop", "ipad",
        "phone", "website", "site", "page", "server", "game", "radar", "lamp", "shelf", "sign",
        "frame", "enclosure", "curtain", "wifi", "network", "internet", "windows", "device",
        "machine", "terminal", "reader", "pos", "bulb", "hdmi", "cable", "box", "stand", "rack",
        "tee", "club", "clubs", "mouse", "keyboard", "controller", "projectors", "monitors",
        "computers", "kiosks",
    }
)
_DATA_WORDS = frozenset(
    {
        "code", "codes", "memory", "data", "info", "password", "pin", "details", "email", "list",
        "numbers", "address",
    }
)
_FAINT_WORDS = DEVICE_WORDS | {
    "image", "picture", "line", "lines", "sound", "audio", "noise", "buzz", "buzzing", "hum",
    "glow", "outline", "text", "mark", "marks", "beep", "signal", "colour", "color", "print",
}
_TRIP_WORDS = frozenset(
    {
        "golf", "team", "road", "business", "group", "weekend", "company", "field", "school",
        "planning", "plan", "ski", "fishing", "day",
        # A trip of a device, not of a person: "door alarm tripped", "the exit trips it".
        "it", "alarm", "alarms", "sensor", "sensors", "breaker", "breakers", "fuse", "circuit",
    }
)
# A chair has legs and a sofa arms: "chair in bay 8 has a broken leg, it's just wobbly". Only
# the furniture's own, said just before ("a broken leg from a stool fall" is a person's).
_FURNITURE_WORDS = frozenset(
    {
        "chair", "chairs", "stool", "stools", "barstool", "barstools", "table", "tables", "bench",
        "benches", "sofa", "sofas", "couch", "couches", "armchair", "tripod", "desk", "ottoman",
        "recliner", "lamp",
    }
)
# A person is trapped in a lift or an enclosure; a customer "trapped in the booking flow" is
# stuck in software: these words, as written (not stemmed: "flowing" water is no page), right
# after the keyword.
_FLOW_WORDS = frozenset(
    {"flow", "loop", "login", "menu", "portal", "form", "app", "website", "webpage", "page"}
)
# keyword -> context words that make it routine. Keys are compared by stems, so "fell"
# also covers the keywords "leaking" and "leaked", and "faint" covers "fainted".
CONTEXT_SENSITIVE: dict[str, frozenset[str]] = {
    "fell": DEVICE_WORDS,
    "collapsed": DEVICE_WORDS,
    "unresponsive": DEVICE_WORDS,
    "not responding": DEVICE_WORDS,
    "blacked out": DEVICE_WORDS,
    "went dark": DEVICE_WORDS,
    "lights went out": DEVICE_WORDS,
    "wont respond": DEVICE_WORDS,
    "wont wake up": DEVICE_WORDS,
    "not waking up": DEVICE_WORDS,
    "isnt waking up": DEVICE_WORDS,
    "smashed": DEVICE_WORDS,
    "no power": DEVICE_WORDS,
    "shattered": DEVICE_WORDS,
    "screaming": DEVICE_WORDS | {"fan", "fans", "audio", "feedback", "motor"},
    "leak": _DATA_WORDS,
    "faint": _FAINT_WORDS,
    "tripped": _TRIP_WORDS,
    "trapped": _FLOW_WORDS,
}
# A person just before the word wins over equipment: "a man collapsed at the kiosk".
PERSON_WORDS = frozenset(
    {
        "man", "woman", "guy", "lady", "customer", "guest", "kid", "child", "someone", "somebody",
        "person", "he", "she", "they", "staff", "employee", "coworker", "player", "golfer",
        "girl", "boy", "member", "attendant", "dad", "mom", "father", "mother", "son", "daughter",
        "friend", "teen", "teenager", "senior", "gentleman", "men", "women", "people", "hes",
        "shes", "theyre", "him", "her", "them", "someones", "somebodys",
    }
)
_CONTEXT_BEFORE = 3
_CONTEXT_AFTER = 2
# Only a device before these says what they are about: "the fan is screaming", while
# "screaming from bay 4" is a person.
_CONTEXT_BEFORE_ONLY = frozenset({"scream"})
# Not counted in the context window: "the mouse in bay 3 is not responding".
_CONTEXT_SKIP = frozenset(
    {
        "bay", "in", "at", "on", "the", "a", "an", "is", "was", "are", "were", "and", "s", "its",
        "just", "still", "now", "totally", "completely", "has", "have", "got", "keeps", "kept",
    }
)

# Typo tolerance on emergency words of this many characters (stemmed) or more.
_FUZZY_MIN_LEN = 7
_VOWELS = frozenset("aeiouy")
# Real words one edit away from an emergency word.
_FUZZY_SAFE = frozenset({"concession", "concessions", "emergent", "conscious"})


# fmt: on

# Words the suffix rules would send onto an emergency word's stem ("policy" -> "polic").
_STEM_EXCEPTIONS = {
    "policy": "policy",
    "policies": "policy",
    "here": "here",
}


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A crude suffix stripper: inflections of one word meet on the same stem."""
    w = word
    if len(w) <= 3 or not w.isalpha():
        return w
    if w in _STEM_EXCEPTIONS:
        return _STEM_EXCEPTIONS[w]
    if w.endswith(("ies", "ied")) and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ings") and len(w) > 6:
        w = w[:-4]
    elif w.endswith("ing") and len(w) > 5:
        w = w[:-3]
    elif w.endswith("eed"):
        pass  # bleed, need, speed
    elif w.endswith("ed") and len(w) > 4:
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    if w.endswith("y") and len(w) > 4:
        w = w[:-1]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in _VOWELS:
        w = w[:-1]
    return w


_FILLER_STEMS = frozenset(stem(w) for w in FILLERS | POSSESSIVES)
# Numbers are skipped between a keyword's words too: "camera 4 shows a guy", "camera shows
# two people climbing".
_COUNT_STEMS = frozenset(
    stem(w) for w in ("two", "three", "four", "five", "six", "several", "couple", "few")
)


def _fold(text: str) -> str:
    text = text.casefold()
    if not text.isascii():
        # Invisible characters and look-alike letters first (routing/text.py), then accents.
        text = unicodedata.normalize("NFKD", unconfused(visible(text)))
        text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("'", "").replace("\u2019", "").replace("`", "")


_SENTENCE_PUNCT = frozenset(".!?\n")


@dataclass(slots=True)
class _Text:
    words: list[str]  # normalised words, punctuation removed
    stems: list[str]
    clauses: list[int]  # clause number of each word
    sentences: list[int]  # sentence number of each word (commas do not end one)
    questions: frozenset[int]  # the sentences that end with "?"


def _analyse(text: str) -> _Text:
    words: list[str] = []
    clauses: list[int] = []
    sentences: list[int] = []
    clause = sentence = 0
    questions: set[int] = set()
    for tok in _TOKEN_RE.findall(_fold(text)):
        if tok in _BREAK_PUNCT:
            clause += 1
            if tok == "?":
                questions.add(sentence)
            sentence += tok in _SENTENCE_PUNCT
            continue
        if tok in _BREAK_WORDS:
            clause += 1
        words.append(tok)
        clauses.append(clause)
        sentences.append(sentence)
    return _Text(
        words=words,
        stems=[stem(w) for w in words],
        clauses=clauses,
        sentences=sentences,
        questions=frozenset(questions),
    )


def _phrase_stems(phrase: str) -> tuple[str, ...]:
    words = [w for w in _TOKEN_RE.findall(_fold(phrase)) if w not in _BREAK_PUNCT]
    content = [w for w in words if w not in FILLERS]
    return tuple(stem(w) for w in (content or words))


def _find(
    stems: list[str], phrase: tuple[str, ...], start: int, *, numbers: bool = False
) -> int | None:
    """End index (exclusive) if ``phrase`` matches at ``start`` (fillers may sit between,
    and numbers too when ``numbers``: a keyword, never a harmless phrase, since "FIRE - two
    tables away" must not read as "fire table")."""
    if stems[start] != phrase[0]:
        return None
    i = start + 1
    for part in phrase[1:]:
        gap = 0
        while (
            i < len(stems)
            and stems[i] != part
            and (
                stems[i] in _FILLER_STEMS
                or (numbers and (stems[i] in _COUNT_STEMS or stems[i].isdigit()))
            )
            and gap < _MAX_GAP
        ):
            i += 1
            gap += 1
        if i >= len(stems) or stems[i] != part:
            return None
        i += 1
    return i


def _near_typo(a: str, b: str) -> bool:
    """One dropped, added or swapped letter, or one vowel for another."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return a[diff[0]] in _VOWELS and b[diff[0]] in _VOWELS
        if len(diff) == 2:
            i, j = diff
            return j == i + 1 and a[i] == b[j] and a[j] == b[i]
        return False
    short, long_ = (a, b) if la < lb else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _deletes(word: str) -> set[str]:
    return {word} | {word[:i] + word[i + 1 :] for i in range(len(word))}


# --------------------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str  # the keyword as written
    stems: tuple[str, ...]
    slug: str
    emergency: bool
    weight: float
    context: frozenset[str]  # context stems that void an emergency match (may be empty)
    about_equipment: bool  # its context is DEVICE_WORDS: "bay 2 won't wake up" is too
    # Its context is where it happens, and decides before a person does ("she's trapped in
    # the booking flow").
    place_first: bool = False


@dataclass(frozen=True, slots=True)
class _Compiled:
    key: str
    by_first: dict[str, tuple[_Phrase, ...]]
    idioms_by_first: dict[str, tuple[tuple[str, ...], ...]]
    fuzzy_index: dict[str, tuple[str, ...]]  # delete-variant -> emergency stems
    vocabulary: frozenset[str]
    priority: dict[str, int]
    has_emergency: bool


def _catalog_key(catalog: RouteCatalog) -> str:
    # The fingerprint covers every field the rules read (keywords, enabled, is_emergency).
    return catalog.fingerprint


def _compile(catalog: RouteCatalog) -> _Compiled:
    by_first: dict[str, list[_Phrase]] = {}
    fuzzy: dict[str, set[str]] = {}
    priority: dict[str, int] = {}
    has_emergency = False
    contexts = {_phrase_stems(k): v for k, v in CONTEXT_SENSITIVE.items()}
    for route in catalog.enabled:
        priority[route.slug] = route.priority
        has_emergency |= route.is_emergency
        seen: set[tuple[str, ...]] = set()
        for keyword in route.keywords:
            stems = _phrase_stems(keyword)
            if not stems or stems in seen:
                continue
            seen.add(stems)
            context = contexts.get(stems) if route.is_emergency else None
            phrase = _Phrase(
                text=keyword,
                stems=stems,
                slug=route.slug,
                emergency=route.is_emergency,
                weight=float(len(stems)),
                context=frozenset(stem(w) for w in context) if context else frozenset(),
                about_equipment=context is DEVICE_WORDS,
                place_first=context is _FLOW_WORDS,
            )
            by_first.setdefault(stems[0], []).append(phrase)
            if route.is_emergency and len(stems) == 1 and len(stems[0]) >= _FUZZY_MIN_LEN:
                for variant in _deletes(stems[0]):
                    fuzzy.setdefault(variant, set()).add(stems[0])
    idioms: dict[str, list[tuple[str, ...]]] = {}
    for idiom in IDIOMS:
        words = tuple(stem(w) for w in idiom.split())
        idioms.setdefault(words[0], []).append(words)
    return _Compiled(
        key=_catalog_key(catalog),
        by_first={k: tuple(v) for k, v in by_first.items()},
        idioms_by_first={k: tuple(v) for k, v in idioms.items()},
        fuzzy_index={k: tuple(sorted(v)) for k, v in fuzzy.items()},
        vocabulary=frozenset(s for group in by_first.values() for p in group for s in p.stems),
        priority=priority,
        has_emergency=has_emergency,
    )


def _correct_typos(stems: list[str], compiled: _Compiled) -> list[str]:
    """Replace a long unknown word that is one typo from an emergency word by that word."""
    if not compiled.fuzzy_index:
        return stems
    out = stems
    for i, s in enumerate(stems):
        if s.endswith("in") and len(s) > 4 and s not in compiled.vocabulary:
            # A dropped g: "bleedin", "burnin", "smokin".
            dropped = stem(s + "g")
            if dropped in compiled.vocabulary:
                if out is stems:
                    out = list(stems)
                out[i] = dropped
                continue
        if len(s) < _FUZZY_MIN_LEN - 1 or s in compiled.vocabulary or s in _FUZZY_SAFE:
            continue
        for variant in _deletes(s):
            hit = next((t for t in compiled.fuzzy_index.get(variant, ()) if _near_typo(s, t)), None)
            if hit is not None:
                if out is stems:
                    out = list(stems)
                out[i] = hit
                break
    return out


def _idiom_spans(stems: list[str], compiled: _Compiled) -> list[tuple[int, int]]:
    spans = []
    for i, s in enumerate(stems):
        for idiom in compiled.idioms_by_first.get(s, ()):
            end = _find(stems, idiom, i)
            if end is not None:
                spans.append((i, end))
    return spans


def _negated(text: _Text, start: int) -> bool:
    clause = text.clauses[start]
    i = start - 1
    skipped = 0
    listed = False
    while i >= 0 and text.clauses[i] == clause:
        word = text.words[i]
        if word in _NEGATORS:
            return not (word == "no" and i > 0 and text.words[i - 1] in _EXCLAMATIONS)
        if word == "or" and not listed and text.stems[start] in _LISTED_HAZARDS:
            # "no smell or smoke": the negator reaches over the list item before the "or",
            # for things that are there or not; never for a symptom ("no pulse or barely
            # breathing" is two alarms, not one denial).
            listed = True
            i -= 1
            item = 0
            while (
                i >= 0
                and text.clauses[i] == clause
                and text.words[i] not in _NEGATORS
                and item < _LIST_ITEM_MAX
            ):
                item += 1
                i -= 1
            continue
        # "no one": "one" is a filler after the negator "no"
        if word not in _NEGATION_FILLERS or skipped >= _NEGATION_WINDOW:
            return False
        skipped += 1
        i -= 1
    return False


def _in_context(text: _Text, start: int, end: int, phrase: _Phrase) -> bool:
    """An equipment (or other context) word just before or just after the match.

    Scans outwards; a person word met first before the match settles it the other way.
    """
    clause, context = text.clauses[start], phrase.context
    if phrase.about_equipment and _bay_is_subject(text, start, end):
        return True
    if phrase.place_first:
        return _in_software(text, end)
    after = 0 if text.stems[start] in _CONTEXT_BEFORE_ONLY else _CONTEXT_AFTER
    for step, limit, i in ((-1, _CONTEXT_BEFORE, start - 1), (1, after, end)):
        counted = 0
        while 0 <= i < len(text.words) and text.clauses[i] == clause and counted < limit:
            word = text.words[i]
            if text.stems[i] in context or word in context:
                return True
            if step < 0 and word in PERSON_WORDS:
                return False
            if word not in _CONTEXT_SKIP and not word.isdigit():
                counted += 1
            i += step
    return False


def _in_software(text: _Text, end: int) -> bool:
    """A software word closely after the match, in its clause: "trapped in the booking flow"."""
    counted, i, clause = 0, end, text.clauses[end - 1]
    while i < len(text.words) and text.clauses[i] == clause and counted < _CONTEXT_AFTER:
        word = text.words[i]
        if word in _FLOW_WORDS:
            return True
        if word not in _CONTEXT_SKIP and not word.isdigit():
            counted += 1
        i += 1
    return False


_BROKEN_LIMB = frozenset(_phrase_stems(p) for p in ("broken leg", "broken arm"))
# Between a piece of furniture and its broken leg: "chair in bay 8 has a broken leg".
_FURNITURE_GAP = frozenset(
    {"in", "at", "on", "bay", "the", "a", "has", "have", "had", "with", "got", "s", "its", "now"}
)


def _furniture_part(text: _Text, start: int, phrase: _Phrase) -> bool:
    """A broken leg or arm of a chair, a stool, a table... named just before it."""
    if phrase.stems not in _BROKEN_LIMB:
        return False
    i, clause = start - 1, text.clauses[start]
    while i >= 0 and text.clauses[i] == clause and start - i <= 6:
        word = text.words[i]
        if word in _FURNITURE_WORDS or (word.endswith("s") and word[:-1] in _FURNITURE_WORDS):
            return True
        if word not in _FURNITURE_GAP and not word.isdigit():
            return False
        i -= 1
    return False


# "bay 2 still won't wake up": the bay (its simulator) is what does not respond. "The guy in
# bay 2 won't wake up" is a person: after "in"/"at"... the bay is only where it happens.
_BAY_WORDS = frozenset({"bay", "bays", "sim", "sims"})
_PLACE_PREPOSITIONS = frozenset(
    {"in", "at", "from", "by", "near", "outside", "behind", "to", "into", "on", "inside", "next"}
)
# fmt: off
_SUBJECT_SKIP = frozenset(
    {
        "is", "was", "are", "were", "s", "just", "still", "now", "totally", "completely", "has",
        "have", "got", "keeps", "kept", "and", "the", "a", "its", "again", "also",
    }
)
# fmt: on


def _bay_is_subject(text: _Text, start: int, end: int) -> bool:
    """The match's subject is a bay or a sim, not a person in one."""
    clause, words = text.clauses[start], text.words
    if any(
        w in PERSON_WORDS
        for i, w in enumerate(words[end : end + _CONTEXT_AFTER], end)
        if text.clauses[i] == clause
    ):
        return False
    i = start - 1
    while (
        i >= 0 and text.clauses[i] == clause and (words[i] in _SUBJECT_SKIP or words[i].isdigit())
    ):
        i -= 1
    if i < 0 or text.clauses[i] != clause or words[i] not in _BAY_WORDS:
        return False
    return i == 0 or text.clauses[i - 1] != clause or words[i - 1] not in _PLACE_PREPOSITIONS


# Keywords that mean something else when one of these words follows them closely: a
# customer "threatening a chargeback" or "a bad review", a screen "bleeding colour".
# fmt: off
_BUSINESS_THREATS = frozenset(
    {
        "chargeback", "chargebacks", "review", "reviews", "sue", "lawyer", "legal", "cancel",
        "dispute", "refund", "complain", "complaint", "report", "yelp", "google", "bbb",
        "unsubscribe",
    }
)
# fmt: on
_AFTER_ONLY_CONTEXT: dict[str, frozenset[str]] = {
    "threat": _BUSINESS_THREATS,
    "threaten": _BUSINESS_THREATS,
    "bleed": frozenset({"colour", "color", "colours", "colors", "pixels", "light", "dye", "ink"}),
    # A projector's or a show's "smoke/haze setting", "smoke effect".
    "smok": frozenset({"setting", "settings", "effect", "effects", "mode", "haze"}),
}
_AFTER_ONLY_WINDOW = 4


# "inbox flooded with emails", "a flood of bookings": a flood of messages or people.
# fmt: off
_FLOOD_OF = frozenset(
    {
        "email", "emails", "calls", "bookings", "requests", "messages", "texts", "dms",
        "complaints", "inquiries", "enquiries", "applications", "questions", "signups",
        "reservations", "reviews", "comments", "likes", "notifications", "spam", "voicemails",
    }
)
_FLOODED_PLACES = frozenset({"inbox", "inboxes", "phones", "dms", "mentions"})
# Between such a place and "flooded": "our phones have been flooded".
_FLOODED_BETWEEN = frozenset(
    {"is", "are", "was", "were", "got", "get", "been", "have", "has", "getting", "being", "just"}
)
# fmt: on


def _flood_of_things(text: _Text, start: int, end: int) -> bool:
    words, clause = text.words, text.clauses[start]
    i = start - 1
    while i >= 0 and text.clauses[i] == clause and words[i] in _FLOODED_BETWEEN:
        i -= 1
    if i >= 0 and text.clauses[i] == clause and words[i] in _FLOODED_PLACES:
        return True  # "our phones have been flooded"
    return words[end : end + 1] in (["with"], ["of"]) and any(
        w in _FLOOD_OF
        for j, w in enumerate(words[end + 1 : end + 4], end + 1)
        if text.clauses[j] == clause
    )


def _followed_by(text: _Text, start: int, end: int) -> bool:
    """A word that gives the match another sense follows it closely in its clause."""
    if end - start != 1:
        return False
    if text.stems[start] == "flood":
        return _flood_of_things(text, start, end)
    context = _AFTER_ONLY_CONTEXT.get(text.stems[start])
    if context is None:
        return False
    clause = text.clauses[start]
    return any(
        w in context
        for i, w in enumerate(text.words[end : end + _AFTER_ONLY_WINDOW], end)
        if text.clauses[i] == clause
    )


_Markers = dict[str, tuple[tuple[str, ...], ...]]
# Before a marker, these say it is not so, or only asked: "not a false alarm", "cant tell if
# its a false alarm", "nobody has handled it".
_MARKER_DOUBT = _NEGATORS | {
    "if",
    "whether",
    "dont",
    "didnt",
    "doesnt",
    "hasnt",
    "havent",
    "hadnt",
    "cant",
    "wont",
    "cannot",
}


def _by_first_word(markers: Iterable[tuple[str, ...]]) -> _Markers:
    """Markers (word sequences) indexed by their first word, so a text is scanned once: a
    request without any of them costs one dict probe a word."""
    index: dict[str, list[tuple[str, ...]]] = {}
    for marker in markers:
        index.setdefault(marker[0], []).append(marker)
    return {first: tuple(found) for first, found in index.items()}


def _has_marker(
    words: list[str],
    index: _Markers,
    lo: int = 0,
    hi: int | None = None,
    *,
    negatable: bool = False,
    doubt_window: int = 3,
) -> bool:
    """A marker of ``index`` (exact words, in a row) lying in ``words[lo:hi]``; with
    ``negatable``, not one a negator stands just before ("not a test", "it isnt fixed"),
    within ``doubt_window`` words."""
    hi = len(words) if hi is None else hi
    for i in range(max(lo, 0), hi):
        for marker in index.get(words[i], ()):
            if i + len(marker) > hi or tuple(words[i : i + len(marker)]) != marker:
                continue
            if negatable and any(w in _MARKER_DOUBT for w in words[max(i - doubt_window, 0) : i]):
                continue
            return True
    return False


_NOW_MARKERS = _by_first_word(_HAPPENING_NOW)
_LONG_AGO_MARKERS = _by_first_word(_LONG_AGO)
_OVER_MARKERS = _by_first_word(_OVER)
_RECENTLY_MARKERS = _by_first_word(_RECENTLY)
_WORDING_MARKERS = _by_first_word(_WORDING_PHRASES)
_SCHEDULED_CHECK_MARKERS = _by_first_word(_SCHEDULED_CHECKS)


# An alarm, a sensor, a breaker or a responder reports what it found, and the report can
# say what it was: "door forced-open alert at 3:12, checked CCTV, it was the cleaner, all
# fine", "leak sensor in bay 2 says WET but the floor is bone dry", "CO detector chirping,
# it's the low battery chirp", "the police cleared it". A battery alone explains nothing:
# "CO alarm beeping even after the new battery" is an alarm. A match about one of these (its word
# in the phrase or right beside it, same clause) is set aside when a later word of the
# message says so, and nothing says it is going on now ("reset it but it keeps going off",
# "no smoke at all" is not smoke). Set aside, not dropped: a literal keyword still raises the
# switch, and the classifier still reads the text.
_ALARM_DEVICES = frozenset(
    stem(w)
    for w in (
        "alarm",
        "alarms",
        "alert",
        "alerts",
        "detector",
        "detectors",
        "sensor",
        "sensors",
        "panel",
        "siren",
        "sirens",
        "beeper",
        "breaker",
        "breakers",
        "fuse",
        "police",
        "cops",
        "dept",
        "department",
        "brigade",
    )
)
_ALARM_BESIDE = 3
# fmt: off
_ALARM_EXPLAINED = _by_first_word(
    [
        *(m for m in _OVER if m not in {("repairs",), ("repaired",)}),
        ("all", "fine"), ("all", "good"), ("all", "ok"), ("all", "okay"), ("all", "reset"),
        ("all", "cleared"), ("false", "alert"), ("false", "alarms"), ("false", "positive"),
        ("it", "was", "just"), ("was", "just", "the"), ("turned", "out", "to", "be", "nothing"),
        ("nothing", "there"), ("nothing", "wrong"), ("no", "one", "there"), ("nobody", "there"),
        ("bone", "dry"), ("signed", "off"), ("stood", "down"), ("battery", "chirp"),
        ("reset", "it"), ("been", "reset"), ("its", "reset"), ("reset", "now"),
        ("cleared", "it"), ("turned", "out", "it", "was", "a"), ("turned", "out", "it", "was", "the"),
        ("turned", "out", "to", "be"),
    ]
)
# ...and what says it is going on now, whatever explained the alarm: the words of danger a
# cause can come with ("it was the projector, it's glowing and crackling").
_ALARM_LIVE = _by_first_word(
    [
        ("right", "now"), ("currently",), ("at", "the", "moment"), ("keeps", "going", "off"),
        ("still", "going", "off"), ("wont", "stop"), ("going", "off", "again"),
        ("still", "sounding"), ("still", "beeping"), ("but", "now"), ("smell",),
        ("smells",), ("smoke",), ("smoky",), ("haze",), ("flames",), ("on", "fire"),
        ("a", "fire"), ("real", "fire"), ("caught", "fire"), ("burning",),
        ("glowing",), ("sparks",), ("sparking",), ("crackling",), ("popping",), ("alight",),
        ("water", "coming"), ("water", "pouring"), ("water", "running"), ("rising",),
        ("someone", "inside"), ("still", "inside"), ("is", "inside"), ("mask",), ("masked",),
        ("knife",), ("gun",), ("weapon",), ("pinned",), ("hurt",), ("injured",), ("bleeding",),
        ("blood",), ("unconscious",), ("breathing",), ("trapped",), ("stuck",), ("coughing",),
        ("dizzy",), ("headache",), ("headaches",), ("sleepy",), ("wont", "wake"),
        ("not", "moving"), ("collapsed",), ("gas",), ("leak",), ("leaking",), ("flood",),
        ("flooding",), ("broke",), ("break",), ("intruder",), ("fight",), ("attacked",),
        ("armed",),
    ]
)
# fmt: on


def _alarm_explained(text: _Text, start: int, end: int) -> bool:
    """The match is a device's report that the message then explains away."""
    clause, stems = text.clauses[start], text.stems
    near = range(max(start - _ALARM_BESIDE, 0), min(end + _ALARM_BESIDE, len(stems)))
    if not any(stems[i] in _ALARM_DEVICES and text.clauses[i] == clause for i in near):
        return False
    return _explained_after(text.words, end)


def _explained_after(words: list[str], start: int) -> bool:
    # Doubt reaches further back here: "I don't think it's a false alarm".
    return _has_marker(
        words, _ALARM_EXPLAINED, start, negatable=True, doubt_window=5
    ) and not _has_marker(words, _ALARM_LIVE, start, negatable=True)


def _report_explained(text: _Text) -> bool:
    """The message reports what a device or a responder found, then explains it away
    ("set off the alarm, its reset now")."""
    return any(
        s in _ALARM_DEVICES and _explained_after(text.words, i + 1)
        for i, s in enumerate(text.stems)
    )


def _routine_check(text: _Text, start: int, end: int) -> bool:
    """A test or inspection of the thing matched ("fire alarm test", "testing the sprinklers"),
    or a scheduled one in its clause ("went off during the building's scheduled test")."""
    words, clause = text.words, text.clauses[start]
    after = [
        w for i, w in enumerate(words[end : end + _ROUTINE_AFTER], end) if text.clauses[i] == clause
    ]
    before = [
        w
        for i, w in enumerate(words[max(start - 2, 0) : start], max(start - 2, 0))
        if text.clauses[i] == clause
    ]
    if any(w in _ROUTINE_CHECK for w in after) or any(w in _ROUTINE_BEFORE for w in before):
        return True
    lo, hi = start, end
    while lo > max(start - _PAST_WINDOW, 0) and text.clauses[lo - 1] == clause:
        lo -= 1
    while hi < min(end + _PAST_WINDOW, len(words)) and text.clauses[hi] == clause:
        hi += 1
    return _has_marker(words, _SCHEDULED_CHECK_MARKERS, lo, hi, negatable=True)


def _in_the_past(text: _Text, start: int, end: int) -> bool:
    """The match is history: a day or more ago in its clause, or last night and over."""
    words, clause = text.words, text.clauses[start]
    lo, hi = start - _PAST_WINDOW, end + _PAST_WINDOW
    while lo < start and (lo < 0 or text.clauses[lo] != clause):
        lo += 1
    while hi > end and (hi > len(words) or text.clauses[hi - 1] != clause):
        hi -= 1
    near_lo = max(lo, start - _NOW_WINDOW)
    near_hi = min(hi, end + _NOW_WINDOW)
    if _has_marker(words, _NOW_MARKERS, near_lo, near_hi):
        return False
    if _has_marker(words, _LONG_AGO_MARKERS, lo, hi):
        return True
    if "after" in words[max(lo, start - _AFTERMATH_WINDOW) : start]:
        return True  # "after last night's power cut the sims can't find the server"
    if _has_marker(words, _OVER_MARKERS, lo, hi, negatable=True):
        return True  # "(police + insurance done)"
    return _has_marker(words, _RECENTLY_MARKERS, lo, hi) and _has_marker(
        words, _OVER_MARKERS, negatable=True
    )


@dataclass(frozen=True, slots=True)
class _Wording:
    opens: bool  # the text opens by asking for words: its keywords are what they are about
    sentences: frozenset[int]  # the sentences that ask for words later in the text


_NO_WORDING = _Wording(False, frozenset())


def _wording_request(text: _Text) -> _Wording:
    """Whether the text asks for words about something: it opens with the request ("write
    an apology for the outage"), or a later sentence asks ("... can you punch it up")."""
    words = text.words
    if "incident" in words or "incidents" in words:
        return _NO_WORDING
    for i, word in enumerate(words[:8]):
        if word in _POLITE:
            continue
        if word in _WORDING_VERBS and words[i + 1 : i + 2] != ["down"]:
            return _Wording(True, frozenset())  # "write down the time: ..." is a note
        if word in _REPLY_VERBS and any(w in _REPLY_OBJECTS for w in words[i + 1 : i + 8]):
            return _Wording(True, frozenset())
        break
    asking = set()
    for i, word in enumerate(words):
        if (
            word in _EDITING_VERBS
            or (word in _WRITING_VERBS and any(o in _DOCUMENTS for o in words[i + 1 : i + 4]))
            or any(tuple(words[i : i + len(m)]) == m for m in _WORDING_MARKERS.get(word, ()))
        ):
            asking.add(text.sentences[i])  # "... we rented a fog machine. Write a flyer for"
    return _Wording(False, frozenset(asking)) if asking else _NO_WORDING


def _is_wording_request(text: _Text) -> bool:
    """The text asks for words about something ("write an apology for the outage")."""
    wording = _wording_request(text)
    return wording.opens or bool(wording.sentences)


# For ``hedged``: when it was, or that it is over or planned. Not where it happened, nor
# words that also name a person or a job ("our maintenance guy is lying on the floor",
# "this is not a drill").
_NOT_LIVE_MARKERS = _by_first_word(
    [
        *(m for m in _LONG_AGO if m not in _ELSEWHERE and m != ("last", "time")),
        *(m for m in _OVER if m not in {("repaired",), ("repairs",), ("already", "handled")}),
        ("planned",),
        ("scheduled",),
        ("inspection",),
        ("test",),
        ("testing",),
    ]
)


# "wifi is on fire today lol": laughter in the clause of a word that is often figurative says
# it is not meant literally, unless the text insists it is ("lol not lol the popcorn machine is
# literally on fire"). Never for a word about a person ("lol a guy collapsed" is nerves), and
# such a match is simply not one: the classifier still reads the text and may route it.
_LAUGHTER = frozenset({"lol", "lmao", "lmfao", "rofl", "haha", "hahaha", "hehe"})
_FIGURATIVE = frozenset(
    _phrase_stems(p)
    for p in ("fire", "on fire", "smoke", "smoking", "blew up", "exploded", "explosion", "flames")
)
# fmt: off
_IN_EARNEST = _by_first_word(
    [
        ("literally",), ("seriously",), ("srsly",), ("for", "real"), ("no", "joke"),
        ("not", "joking"), ("not", "kidding"), ("not", "lol"), ("actually",), ("real", "fire"),
        ("panicking",), ("help",),
    ]
)
# fmt: on


# "bay 4 is on fire tonight, everyone's hitting bombs": on fire at golf is a hot streak when
# its sentence talks of play, and nothing in it burns ("our bartender is on fire tonight,
# his shirt caught the candle").
# fmt: off
_PLAY_WORDS = frozenset(
    {
        "hitting", "bombs", "bombing", "streak", "birdie", "birdies", "eagle", "eagles", "shots",
        "drives", "driving", "scores", "scoring", "putting", "putts", "putter", "swinging",
        "leaderboard", "round", "handicap", "winning", "pins", "closest", "hole", "holes",
    }
)
_BURNING_WORDS = frozenset(
    {
        "shirt", "sleeve", "hair", "jacket", "clothes", "caught", "candle", "kitchen", "smoke",
        "smoking", "flames", "extinguisher", "burning", "burn", "burns", "burnt", "alarm",
        "literally", "help", "real", "alight", "ablaze", "blaze", "set", "inside", "trapped",
        "out", "evacuate", "evacuating", "net", "screen", "ceiling", "wall",
    }
)
# fmt: on
_ON_FIRE = _phrase_stems("on fire")


_STREAK_SUBJECTS = PERSON_WORDS | {
    "bay",
    "bays",
    "everyone",
    "everybody",
    "group",
    "team",
    "league",
    "crowd",
    "lads",
    "guys",
    "we",
    "weve",
    "i",
    "ive",
    "you",
    "youre",
    "youve",
}
_STREAK_SKIP = frozenset({"is", "are", "was", "were", "been", "s", "just", "totally", "so", "re"})


def _hot_streak(text: _Text, start: int, end: int) -> bool:
    """The match is "on fire" (or its "fire") said of players or a bay at play: a hot
    streak. "the net is on fire" burns, whatever the sentence says of hitting."""
    words = text.words
    on = start if words[start] == "on" else start - 1
    if on < 0 or tuple(text.stems[on : on + 2]) != _ON_FIRE:
        return False
    i = on - 1
    while i >= 0 and (words[i] in _STREAK_SKIP or words[i].isdigit()):
        i -= 1
    if i < 0 or words[i] not in _STREAK_SUBJECTS:
        return False
    sentence = [w for w, n in zip(words, text.sentences, strict=True) if n == text.sentences[on]]
    return not _PLAY_WORDS.isdisjoint(sentence) and _BURNING_WORDS.isdisjoint(sentence)


def _laughing_clauses(text: _Text) -> frozenset[int]:
    """The clauses that laugh; none when the text says it is in earnest."""
    laughing = frozenset(c for w, c in zip(text.words, text.clauses, strict=True) if w in _LAUGHTER)
    if laughing and _has_marker(text.words, _IN_EARNEST):
        return frozenset()
    return laughing


def hedged(text: str) -> bool:
    """The text says what it is about is not live: history, a plan or a check, an
    aftermath, a device's report explained away, or a request for words ("the planned power
    shutdown sunday", "last week's storm", "set off the alarm, its reset now", "reply to
    this review"), and nothing says it is happening again or now.

    A classifier reads words, not tenses: on such a text it may doubt, not decide, that
    this is an emergency."""
    analysed = _analyse(text)
    words = analysed.words
    if _has_marker(words, _NOW_MARKERS):
        return False
    return (
        _has_marker(words, _NOT_LIVE_MARKERS, negatable=True)
        or _report_explained(analysed)
        or _is_wording_request(analysed)
    )


# The writer judges there is no danger ("Not dangerous, just annoying", "he's just loud,
# nobody's in danger"): a person who knows what is going on has said it, so a classifier
# alone may doubt the request but not page a manager over it. Only words about danger:
# "not urgent" and "not an emergency" open understated real ones ("not urgent maybe, but
# the floor is soaked and the water's reaching the outlet").
# fmt: off
_REASSURED_MARKERS = _by_first_word(
    [
        ("not", "dangerous"), ("isnt", "dangerous"), ("nothing", "dangerous"),
        ("no", "danger"), ("not", "a", "safety"), ("no", "safety", "issue"),
        ("not", "a", "hazard"), ("not", "unsafe"), ("nobody", "in", "danger"),
        ("nobodys", "in", "danger"), ("no", "one", "in", "danger"), ("no", "ones", "in", "danger"),
        ("nobody", "is", "in", "danger"), ("no", "one", "is", "in", "danger"),
    ]
)
# fmt: on


# The reassurance stops counting when it is asked ("Not dangerous?"), reported ("nobody is
# in danger he says, while he's waving a machete") or followed by a turn ("nobody in danger
# from the projector, but the old man in bay 3 is grey").
_REASSURANCE_UNDONE = _BREAK_WORDS | {"while", "apart", "says", "said", "claims", "insists"}


def reassured(text: str) -> bool:
    """The text says nobody is in danger ("not dangerous, just annoying"), and nothing
    after it takes that back."""
    analysed = _analyse(text)
    words = analysed.words
    for i, word in enumerate(words):
        for marker in _REASSURED_MARKERS.get(word, ()):
            if tuple(words[i : i + len(marker)]) != marker:
                continue
            sentence, after = analysed.sentences[i], i + len(marker)
            if sentence in analysed.questions and (
                after == len(words) or analysed.sentences[after] != sentence
            ):
                continue  # asked: "Not dangerous? a man is pointing a rifle at the building"
            # Only what closes the message, or comes before its questions ("nobody's in
            # danger. How do I fix his reservation?"): not "No danger to customers. A staff
            # member is lying in the walk-in freezer".
            if any(n > sentence and n not in analysed.questions for n in analysed.sentences[i:]):
                continue
            if _REASSURANCE_UNDONE.isdisjoint(words[max(i - 3, 0) :]):
                return True
    return False


# Words for what a body does (stemmed as keywords are): a keyword holding one is read
# literally, whatever a classifier makes of a terse "no reaction or wheezing hard".
_SYMPTOM_STEMS = frozenset(
    stem(w)
    for w in (
        "gasping",
        "wheezing",
        "slurring",
        "slurred",
        "cardiac",
        "breathing",
        "breathe",
        "breath",
        "unconscious",
        "unconcious",
        "choking",
        "seizure",
        "siezure",
        "seizing",
        "convulsing",
        "convulsions",
        "fainted",
        "unresponsive",
        "overdose",
        "anaphylaxis",
        "anaphylactic",
        "epipen",
        "pulse",
        "clammy",
        "limp",
        "stroke",
        "chest",
        "collapsed",
        "blue",
        "vomiting",
        "drooping",
        "insulin",
    )
)


# Keywords read literally like a symptom: a person's threat to the writer ("HE WILL HURT
# ME IF I DONT GIVE REFUND"), fire seen or fought ("the projector screen is burning, flames
# on the bottom corner"), carbon monoxide and gas, gunfire, a bomb threat, an armed
# robbery, a heart attack, someone passed out, on oxygen or trapped (in a place: trapped
# in software is context, ``_FLOW_WORDS``). A classifier that sees "refund" or "projector"
# or "new battery" or "cops haven't cleared it" must not talk them down.
# fmt: off
_LITERAL = frozenset(
    _phrase_stems(p)
    for p in (
        "he will hurt me", "she will hurt me", "they will hurt me", "hes going to hurt me",
        "hes gonna hurt me", "said hell hurt", "threatened to hurt me", "threatening to hurt me",
        "flames", "get the extinguisher", "grab the extinguisher", "need the extinguisher",
        "need an extinguisher", "used the extinguisher", "emptied the extinguisher",
        "carbon monoxide", "co alarm", "co detector", "co monitor", "gas smell", "smell gas",
        "smells like gas", "smell of gas", "gas leak", "gas odor", "gas odour",
        "shots fired", "bomb threat", "armed robbery", "heart attack", "passed out",
        "oxygen concentrator", "on oxygen", "oxygen tank", "oxygen bottle", "oxygen mask",
        "trapped",
    )
)
# fmt: on


def _literal(phrase: _Phrase) -> bool:
    return not _SYMPTOM_STEMS.isdisjoint(phrase.stems) or phrase.stems in _LITERAL


@dataclass(frozen=True, slots=True)
class EmergencyAssessment:
    route: RouteSnapshot | None  # the emergency route a keyword forces, if any
    dismissed: tuple[str, ...]  # emergency keywords present but set aside by a guard
    # A forcing keyword is a symptom of a person's body ("gasping", "slurring", "cardiac")
    # or read as literally (``_LITERAL``: a threat, flames, gas): it has no other sense at
    # a venue desk, so no classifier may overrule it.
    symptom: bool = False
    # A keyword the guards set aside is such a one ("can you post that we're closed
    # tonight, we smell gas near the furnace"): the request is doubted whatever the
    # classifier says. Not when it was part of a harmless phrase ("a death trap for your
    # wallet"): that is another word, not the same one about another time.
    dismissed_symptom: bool = False
    kept: tuple[str, ...] = ()  # the emergency keywords that stand (the route's reason)
    # The text as read, when it is not the text given: with its zero-width spaces joined.
    reading: str | None = None


@dataclass(frozen=True, slots=True)
class _Match:
    phrase: _Phrase
    start: int
    end: int
    # Set aside as part of a harmless phrase ("a death trap for your wallet", "a flame
    # animation"): another word, not another time or a request about it.
    idiom: bool = False


# Enough emergency keyword matches weighed to settle a text: a paste repeating "fire" 800
# times would otherwise run every guard 800 times (~0.3 s of CPU).
_EMERGENCY_MATCHES_MAX = 24


def _matches(
    text: _Text,
    compiled: _Compiled,
    *,
    emergency_only: bool,
    dismissed: list[_Match] | None = None,
) -> list[_Match]:
    """The keyword matches that count. An emergency keyword used in another sense or about
    another time (an idiom, a wording request, a test, the past, "a chargeback threat")
    goes to ``dismissed`` instead; a negated one or one about equipment is simply not a
    match ("nobody is smoking", "the kiosk is unresponsive")."""
    stems = _correct_typos(text.stems, compiled)
    found: list[_Match] = []
    idioms: list[tuple[int, int]] | None = None
    wording: _Wording | None = None
    laughing: frozenset[int] | None = None
    weighed = 0
    for i, s in enumerate(stems):
        if emergency_only and weighed >= _EMERGENCY_MATCHES_MAX:
            break
        for phrase in compiled.by_first.get(s, ()):
            if emergency_only and not phrase.emergency:
                continue
            end = _find(stems, phrase.stems, i, numbers=True)
            if end is None:
                continue
            if phrase.emergency:
                if wording is None:
                    wording = _wording_request(text)
                if idioms is None:
                    idioms = _idiom_spans(stems, compiled)
                weighed += 1
                if (
                    _negated(text, i)
                    or (phrase.context and _in_context(text, i, end, phrase))
                    or _furniture_part(text, i, phrase)
                ):
                    continue  # not this thing ("nobody hurt", "the kiosk is unresponsive")
                if phrase.stems in _FIGURATIVE:
                    if laughing is None:
                        laughing = _laughing_clauses(text)
                    if text.clauses[i] in laughing:
                        continue  # "wifi is on fire today lol"
                idiom = any(a <= i and end <= b for a, b in idioms) or _hot_streak(text, i, end)
                if (
                    # A text that opens by asking for words is about them; a later request
                    # sets aside the keywords of its own sentence ("... Write a flyer for
                    # 'Smoke and Swing' night"), not those of another ("Fire in the kitchen,
                    # everyone out. can you reword this for the group chat"), never a symptom.
                    wording.opens
                    or (text.sentences[i] in wording.sentences and not _literal(phrase))
                    or idiom
                    or _routine_check(text, i, end)
                    or _alarm_explained(text, i, end)
                    or _in_the_past(text, i, end)
                    or _followed_by(text, i, end)
                ):
                    # Another sense of the word, or not now: reported as dismissed.
                    if dismissed is not None:
                        dismissed.append(_Match(phrase, i, end, idiom=idiom))
                    continue
            found.append(_Match(phrase, i, end))
    return found


# --------------------------------------------------------------------------- the strategy


class RulesStrategy(RoutingStrategy):
    """Keyword rules; emergency keywords force the emergency route."""

    name = "rules"

    def __init__(self) -> None:
        self._compiled: _Compiled | None = None
        self._lock = threading.Lock()

    def compiled(self, catalog: RouteCatalog) -> _Compiled:
        """The rules for this catalog, compiled once per fingerprint (thread-safe)."""
        key = _catalog_key(catalog)
        current = self._compiled
        if current is not None and current.key == key:
            return current
        with self._lock:
            current = self._compiled
            if current is None or current.key != key:
                current = _compile(catalog)
                self._compiled = current
            return current

    def warm(self, catalog: RouteCatalog) -> None:
        self.compiled(catalog)

    def emergency_match(self, text: str, catalog: RouteCatalog) -> RouteSnapshot | None:
        """The emergency route whose safety keywords match the text, if any."""
        return self.emergency_assess(text, catalog).route

    def emergency_assess(self, text: str, catalog: RouteCatalog) -> EmergencyAssessment:
        """The emergency route the safety keywords point at, and the keywords the guards
        set aside (for a classifier that cannot tell "last week's flood" from a flood)."""
        compiled = self.compiled(catalog)
        if not compiled.has_emergency:
            return EmergencyAssessment(None, ())
        assessment = _assess(text, compiled, catalog)
        if assessment.route is None and has_separators(text):
            # A zero-width space between words separates them ("fire\u200bin\u200bbay 3");
            # between letters it hides a word ("fi\u200bre"): either reading may be meant.
            reading = visible(text, join=True)
            joined = _assess(reading, compiled, catalog)
            if joined.route is not None:
                return dataclasses.replace(joined, reading=reading)
        return assessment

    def matched_keywords(self, text: str, catalog: RouteCatalog) -> dict[str, list[str]]:
        """Which keywords of which routes match (for the admin, tests and debugging)."""
        out: dict[str, list[str]] = {}
        for m in _matches(_analyse(text), self.compiled(catalog), emergency_only=False):
            out.setdefault(m.phrase.slug, []).append(m.phrase.text)
        return out

    def decide(
        self,
        text: str,
        *,
        catalog: RouteCatalog,
        config: ConfigSnapshot | None = None,
    ) -> RouteDecision | None:
        started = time.perf_counter()
        compiled = self.compiled(catalog)
        found = _matches(_analyse(text), compiled, emergency_only=False)
        if not found:
            return None
        emergency = _best_emergency(found, compiled, catalog)
        if emergency is not None:
            words = sorted({m.phrase.text for m in found if m.phrase.slug == emergency.slug})
            return RouteDecision(
                route=emergency,
                confidence=1.0,
                source="rules",
                elapsed_ms=(time.perf_counter() - started) * 1000,
                note="emergency keywords: " + ", ".join(words),
            )
        scores: dict[str, float] = {}
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for m in found:
            ident = (m.phrase.slug, m.phrase.stems)
            if ident in seen:  # a phrase counts once however often it occurs
                continue
            seen.add(ident)
            scores[m.phrase.slug] = scores.get(m.phrase.slug, 0.0) + m.phrase.weight
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], compiled.priority[kv[0]], kv[0]))
        best_slug, best = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        route = catalog.get(best_slug)
        if route is None:  # the catalog cannot disagree with its own compilation
            return None
        return RouteDecision(
            route=route,
            confidence=rules_confidence(best, runner_up),
            source="rules",
            elapsed_ms=(time.perf_counter() - started) * 1000,
            note=f"score {best:g} vs {runner_up:g}",
        )


def rules_confidence(best: float, runner_up: float) -> float:
    """0.5 for a tie, growing towards 0.95 with the margin over the runner-up."""
    if best <= 0:
        return 0.5
    margin = max(0.0, best - runner_up)
    return round(min(0.95, max(0.5, 0.5 + 0.45 * margin / (best + 1.0))), 4)


def _assess(text: str, compiled: _Compiled, catalog: RouteCatalog) -> EmergencyAssessment:
    dismissed: list[_Match] = []
    found = _matches(_analyse(text), compiled, emergency_only=True, dismissed=dismissed)
    return EmergencyAssessment(
        _best_emergency(found, compiled, catalog),
        tuple(dict.fromkeys(m.phrase.text for m in dismissed)),
        symptom=any(_literal(m.phrase) for m in found),
        dismissed_symptom=any(_literal(m.phrase) and not m.idiom for m in dismissed),
        kept=tuple(dict.fromkeys(m.phrase.text for m in found)),
    )


def _best_emergency(
    found: Iterable[_Match], compiled: _Compiled, catalog: RouteCatalog
) -> RouteSnapshot | None:
    slugs = {m.phrase.slug for m in found if m.phrase.emergency}
    if not slugs:
        return None
    slug = min(slugs, key=lambda s: (compiled.priority[s], s))
    return catalog.get(slug)


_shared = RulesStrategy()


def emergency_match(text: str, catalog: RouteCatalog) -> RouteSnapshot | None:
    """The enabled emergency route the text's safety keywords point at, else None.

    Call this before any other routing work: an emergency is never left to a classifier.
    """
    return _shared.emergency_match(text, catalog)


def emergency_assess(text: str, catalog: RouteCatalog) -> EmergencyAssessment:
    """``emergency_match``, with the emergency keywords the guards set aside."""
    return _shared.emergency_assess(text, catalog)
