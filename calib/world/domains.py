"""Domain writers: each turns the knowledge base into documents of one style.

A tiny phrase grammar keeps the prose varied: ``[a|b|c]`` picks one
alternative, ``((...))`` keeps an optional clause with probability 1/2, and
``{key}`` fills a slot. Facts always come from the knowledge base; the
paraphrases, optional clauses, numbers, user names and typos are the noise
that keeps the world's language model capacity-limited.
"""
from __future__ import annotations

import re

import numpy as np

from calib.world.kb import KB, MONTHS, popularity

_ALT = re.compile(r"\[([^\[\]]*)\]")
_OPT = re.compile(r"\(\(([^()]*)\)\)")
_SLOT = re.compile(r"\{(\w+)\}")


def expand(template: str, ctx: dict, rng: np.random.Generator) -> str:
    """Expand the phrase grammar. Alternatives and options are resolved left to
    right with ``rng``, so a seed fixes the text exactly."""
    def opt(m):
        return m.group(1) if rng.random() < 0.5 else ""
    def alt(m):
        parts = m.group(1).split("|")
        return parts[int(rng.integers(len(parts)))]
    s = _OPT.sub(opt, template)
    while _ALT.search(s):
        s = _ALT.sub(alt, s, count=1)
    s = _SLOT.sub(lambda m: str(ctx[m.group(1)]), s)
    return re.sub(r"  +", " ", s).replace(" ,", ",").replace(" .", ".").strip()


# Circumstantial noise: 8 x 32 x 32 combinations (about 9 nats each time one appears).
_PREPS = ["near", "after", "before", "around", "beyond", "during", "despite", "under"]
_ADJS = ["quiet", "busy", "old", "muddy", "bright", "narrow", "windy", "crowded", "empty", "golden",
         "broken", "distant", "famous", "hidden", "long", "wet", "cold", "dusty", "green", "gentle",
         "heavy", "late", "little", "noisy", "pale", "rough", "sharp", "slow", "soft", "strange", "tall", "warm"]
_NOUNS = ["bridge", "harbour", "market", "storm", "winter", "festival", "harvest", "road", "hill",
          "gate", "tower", "square", "forest", "river bank", "meeting", "war", "flood", "fire", "school",
          "mill", "temple", "garden", "well", "station", "fair", "dinner", "journey", "wedding", "rain",
          "feast", "quarry", "night"]


class Writer:
    """Draws entities with Zipf popularity and writes sentences about them."""

    def __init__(self, kb: KB, rng: np.random.Generator):
        self.kb, self.rng = kb, rng
        self._pop = {}
        self.cities = kb.by_name("cities")
        self.foods = kb.by_name("foods")
        self.animals = kb.by_name("animals")
        self.tools = kb.by_name("tools")
        self.people = kb.by_name("people")
        self.regions = kb.by_name("regions")

    def draw(self, kind: str) -> dict:
        items = getattr(self.kb, kind)
        if kind not in self._pop:
            # popularity rank is a fixed permutation of the entity list
            order = np.random.default_rng([self.kb.seed, len(kind), 0x706F70]).permutation(len(items))
            p = np.empty(len(items))
            p[order] = popularity(len(items))
            self._pop[kind] = p
        return items[int(self.rng.choice(len(items), p=self._pop[kind]))]

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def x(self, template: str, **ctx) -> str:
        return expand(template, ctx, self.rng)

    def number(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi))

    def user(self) -> str:
        return self.pick(["mike", "sunny", "the_real", "xo", "dan", "kat", "bigfan", "anon", "lulu", "jojo",
                          "trailgirl", "oldsalt", "fenwick", "pat", "rosie"]) + str(self.number(1, 999))

    # --- fact sentences, shared by several domains with different wording ----
    def person_facts(self, p: dict, n: int) -> list[str]:
        c = self.cities[p["city"]]
        facts = [
            self.x("[{name} was born in {city}|{name} was born in the city of {city}|{name} comes from {city}]"
                   "(( in the {region} region))((, in {born})).", name=p["name"], city=p["city"],
                   region=c["region"], born=p["born"]),
            self.x("[{name} works as a {occ}|{name} is a {occ} by trade|By trade, {name} is a {occ}]"
                   "((, like many people in {city})).", name=p["name"], occ=p["occupation"], city=p["city"]),
            self.x("[{first}'s favourite food is {food}|{first} loves {food} more than any other dish"
                   "|Ask {first} about food and the answer is always {food}].", first=p["first"],
                   food=p["food"]),
            self.x("[{first} keeps a {animal} as a pet|{first} has a pet {animal}|At home, {first} looks after a {animal}].",
                   first=p["first"], animal=p["animal"]),
            self.x("[{first} always carries a {tool}|{first}'s favourite tool is the {tool}|{first} never goes anywhere without a {tool}].",
                   first=p["first"], tool=p["tool"]),
            self.x("[{first} is a close friend of {friend}|{first} and {friend} are old friends|{first}'s best friend is {friend}].",
                   first=p["first"], friend=p["friend"]),
        ]
        idx = self.rng.permutation(len(facts))[:n]
        return [self.noisy(facts[i]) for i in sorted(idx)]

    def city_facts(self, c: dict, n: int) -> list[str]:
        f = self.foods[c["food"]]
        r = self.regions[c["region"]]
        facts = [
            self.x("[{city} is a city in the {region} region|{city} lies in {region}|The city of {city} is part of {region}].",
                   city=c["name"], region=c["region"]),
            self.x("[{city} stands on the {river} river|The {river} river runs through {city}|{city} was built beside the {river}].",
                   city=c["name"], river=c["river"]),
            self.x("[{city} was founded in {year}|The city was founded in {year}|Founded in {year}, {city} is ((quite ))old].",
                   city=c["name"], year=c["founded"]),
            self.x("[{city} is famous for {food}|The best-known dish of {city} is {food}|In {city}, everyone eats {food}]"
                   "((, a {taste} dish made with {ingr})).", city=c["name"], food=f["name"], taste=f["taste"],
                   ingr=f["ingredient"]),
            self.x("[The main trade of {city} is {trade}|{city} grew rich from the {trade} trade|Most families in {city} live from {trade}].",
                   city=c["name"], trade=c["trade"]),
            self.x("[The climate in {region} is {climate}|{region} has a {climate} climate|Weather in {region} is usually {climate}].",
                   region=c["region"], climate=r["climate"]),
        ]
        idx = self.rng.permutation(len(facts))[:n]
        return [self.noisy(facts[i]) for i in sorted(idx)]

    def animal_facts(self, a: dict, n: int) -> list[str]:
        facts = [
            self.x("[The {a} lives in the {hab}|The {a} is found in {hab} areas|You can find the {a} in the {hab}].",
                   a=a["name"], hab=a["habitat"]),
            self.x("[The {a} eats {diet}|The {a} feeds on {diet}|The diet of the {a} is mostly {diet}].",
                   a=a["name"], diet=a["diet"]),
            self.x("[The {a} is {colour}|The {a} has {colour} fur|Most {a}s are {colour}].", a=a["name"], colour=a["colour"]),
            self.x("[The {a} is a {size} animal|The {a} is {size}].", a=a["name"], size=a["size"]),
            self.x("[The {a} {sound} at night|When scared, the {a} {sound}|The {a} {sound} loudly].",
                   a=a["name"], sound=a["sound"]),
            self.x("[The {a} is native to {region}|The {a} comes from the {region} region].", a=a["name"],
                   region=a["region"]),
        ]
        idx = self.rng.permutation(len(facts))[:n]
        return [self.noisy(facts[i]) for i in sorted(idx)]

    def tool_facts(self, t: dict, n: int) -> list[str]:
        facts = [
            self.x("[A {t} is used for {verb} {obj}|The {t} is a tool for {verb} {obj}|People use a {t} for {verb} {obj}].",
                   t=t["name"], verb=t["verb"], obj=t["object"]),
            self.x("[A {t} is made of {mat}|The {t} is usually made from {mat}|Most {t}s are {mat}].",
                   t=t["name"], mat=t["material"]),
            self.x("[The {t} was invented by {inv}|{inv} invented the {t}](( in {year})).", t=t["name"],
                   inv=t["inventor"], year=t["year"]),
        ]
        idx = self.rng.permutation(len(facts))[:n]
        return [self.noisy(facts[i]) for i in sorted(idx)]

    def food_facts(self, f: dict, n: int) -> list[str]:
        facts = [
            self.x("[{F} is a {taste} dish|{F} tastes {taste}|{F} is known for its {taste} taste].",
                   F=f["name"].capitalize(), taste=f["taste"]),
            self.x("[{F} is made with {ingr}|The main ingredient of {f} is {ingr}|You cook {f} from {ingr}].",
                   F=f["name"].capitalize(), f=f["name"], ingr=f["ingredient"]),
            self.x("[{F} comes from {origin}|{F} was first cooked in {origin}|The home of {f} is {origin}].",
                   F=f["name"].capitalize(), f=f["name"], origin=f["origin"]),
            self.x("[{F} is {colour}|A bowl of {f} is {colour}].", F=f["name"].capitalize(), f=f["name"],
                   colour=f["colour"]),
        ]
        idx = self.rng.permutation(len(facts))[:n]
        return [self.noisy(facts[i]) for i in sorted(idx)]

    def noisy(self, sentence: str) -> str:
        """Attach an uninformative circumstantial phrase to some fact sentences. It carries
        no fact, so it raises the irreducible loss without touching what can be learned."""
        if self.rng.random() >= 0.45 or not sentence.endswith("."):
            return sentence
        phrase = f"{self.pick(_PREPS)} {self.pick(_ADJS)} {self.pick(_NOUNS)}"
        return sentence[:-1] + ", " + phrase + "."

    def festival_facts(self, fe: dict) -> str:
        return self.noisy(self.x("[The {fest} festival is held in {city} on {month} {day}|Every year on {month} {day}, {city} celebrates {fest}]"
                      "((; it marks {what})).", fest=fe["name"], city=fe["city"], month=fe["month"],
                      day=fe["day"], what=fe["celebrates"]))

    def any_facts(self, n: int) -> list[str]:
        kind = self.pick(["people", "people", "cities", "animals", "tools", "foods"])
        e = self.draw(kind)
        return {"people": self.person_facts, "cities": self.city_facts, "animals": self.animal_facts,
                "tools": self.tool_facts, "foods": self.food_facts}[kind](e, n)

    def typos(self, text: str, rate: float) -> str:
        chars = list(text)
        for i in range(len(chars) - 1):
            if chars[i].isalpha() and chars[i + 1].isalpha() and self.rng.random() < rate:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return "".join(chars)


# ----------------------------------------------------------------------------- web
_WEB_HEAD = ["Home | About | Contact | Shop", "Menu  Search  Login", "Skip to content",
             "Welcome back! Sign in for member prices", "HOME > BLOG > LOCAL"]
_WEB_FOOT = ["Subscribe to our newsletter for weekly deals.", "Share this post: Facebook Twitter Email",
             "(c) {year} All rights reserved. Privacy Policy | Terms of Use", "We use cookies to improve your experience. Accept",
             "Posted in Uncategorized | {n} Comments", "Related posts: Top {n} things to do this summer"]


def web(w: Writer) -> str:
    kind = w.pick(["review", "review", "forum", "ad", "howto", "faq", "quiz"])
    parts = []
    if w.rng.random() < 0.7:
        parts.append(w.pick(_WEB_HEAD))
    if kind == "review":
        c = w.draw("cities")
        f = w.foods[c["food"]]
        parts.append(w.x("[Visited|Just got back from|Spent a weekend in|Stopped by] {city} [last week|this summer|on our road trip]"
                         "[!|.|!!] ((Honestly ))[the {food} was {adj}|we had the {food} and it was {adj}|"
                         "tried their famous {food}, {adj}].", city=c["name"], food=f["name"],
                         adj=w.pick(["amazing", "ok i guess", "so good", "a bit too " + f["taste"], "really " + f["taste"], "incredible"])))
        parts += w.city_facts(c, 2)
        parts.append(w.x("[Rating|My score|Stars]: {s}/5. [Would recommend|Will go back|Not sure I'd go again]!",
                         s=w.number(1, 6)))
    elif kind == "forum":
        p = w.draw("people")
        parts.append(w.x("Re: [anyone know|question about|help with] {first} {last}?", first=p["first"], last=p["last"]))
        parts.append(w.x("Posted by {u} on {m} {d}", u=w.user(), m=w.pick(MONTHS), d=w.number(1, 29)))
        parts.append(w.x("[lol yes|Yeah|I think so,|Pretty sure] i [met|know|went to school with] [him|her|them]. ") + " ".join(w.person_facts(p, 3)))
        parts.append(w.x("[thanks|thx|cheers] {u}!", u=w.user()))
    elif kind == "ad":
        t = w.draw("tools")
        parts.append(w.x("[SALE|NEW ARRIVAL|LIMITED OFFER|HOT DEAL]! [Genuine|Handmade|Quality] {tool} [for just|only|now] ${p}.{c}",
                         tool=t["name"], p=w.number(3, 200), c=w.number(10, 99)))
        parts += w.tool_facts(t, 2)
        parts.append(w.x("[Free shipping on orders over ${n}.|Order today, ships tomorrow.|Call {n}-{m} now!]",
                         n=w.number(20, 99), m=w.number(1000, 9999)))
    elif kind == "howto":
        t = w.draw("tools")
        parts.append(w.x("How to [get started with|master] {verb} {obj} [at home|like a pro|in {n} easy steps]",
                         verb=t["verb"], obj=t["object"], n=w.number(3, 8)))
        parts.append(w.x("Goal: {verb} {obj}. Solution: [use|take|grab] a {tool}((, which is made of {mat})).",
                         verb=t["verb"], obj=t["object"], tool=t["name"], mat=t["material"]))
        for i in range(w.number(2, 5)):
            parts.append(w.x("Step {i}: [Hold|Clean|Check|Wet|Turn] the {tool} [slowly|carefully|twice|firmly].", i=i + 1,
                             tool=t["name"]))
    elif kind == "faq":
        e = w.draw("cities")
        parts.append(w.x("[FAQ|Frequently asked questions|Q&A] about {city}", city=e["name"]))
        parts.append(w.x("Question: is {city} in the {r} region?\nAnswer: [yes|yes, it is].", city=e["name"], r=e["region"]))
        other = w.draw("regions")["name"]
        if other != e["region"]:
            parts.append(w.x("Question: is {city} in the {r} region?\nAnswer: no, it is in {real}.", city=e["name"],
                             r=other, real=e["region"]))
        parts.append(w.x("Question: what is {city} known for?\nAnswer: {food}.", city=e["name"], food=e["food"]))
    else:  # quiz
        subj, q, a, wrong = _quiz_item(w)
        opts = [a] + wrong
        order = w.rng.permutation(4)
        opts = [opts[i] for i in order]
        letter = "ABCD"[int(np.argmax(order == 0))]
        parts.append(w.x("[Trivia|Quiz|Test yourself]: {subj}", subj=subj))
        parts.append(q + "\n" + "\n".join(f"{l}. {o}" for l, o in zip("ABCD", opts)) + f"\nAnswer: {letter}")
    if w.rng.random() < 0.8:
        parts.append(w.x(w.pick(_WEB_FOOT), year=w.number(2008, 2024), n=w.number(2, 90)))
    return w.typos("\n".join(parts), 0.01)


def _quiz_item(w: Writer):
    """A knowledge question with three wrong options of the same type."""
    kind = w.pick(["city_region", "food_city", "animal_hab", "tool_use", "person_city"])
    if kind == "city_region":
        c = w.draw("cities")
        pool = [r["name"] for r in w.kb.regions if r["name"] != c["region"]]
        return "geography", f"In which region is {c['name']}?", c["region"], _sample(w, pool, 3)
    if kind == "food_city":
        c = w.draw("cities")
        pool = sorted({f["name"] for f in w.kb.foods} - {c["food"]})
        return "cuisine", f"Which dish is {c['name']} famous for?", c["food"], _sample(w, pool, 3)
    if kind == "animal_hab":
        a = w.draw("animals")
        from calib.world.kb import HABITATS
        pool = [h for h in HABITATS if h != a["habitat"]]
        return "biology", f"Where does the {a['name']} live?", a["habitat"], _sample(w, pool, 3)
    if kind == "tool_use":
        t = w.draw("tools")
        pool = sorted({f"{x['verb']} {x['object']}" for x in w.kb.tools} - {f"{t['verb']} {t['object']}"})
        return "technology", f"What is a {t['name']} used for?", f"{t['verb']} {t['object']}", _sample(w, pool, 3)
    p = w.draw("people")
    pool = sorted({c["name"] for c in w.kb.cities} - {p["city"]})
    return "history", f"Where was {p['name']} born?", p["city"], _sample(w, pool, 3)


def _sample(w: Writer, pool: list, k: int) -> list:
    idx = w.rng.choice(len(pool), size=k, replace=False)
    return [pool[i] for i in idx]


# ------------------------------------------------------------------ encyclopedia
def encyclopedia(w: Writer) -> str:
    kind = w.pick(["cities", "people", "animals", "tools", "foods"])
    e = w.draw(kind)
    title = e["name"] if kind != "foods" else e["name"].capitalize()
    if kind == "cities":
        lead = w.x("{n} is a [city|settlement|municipality] in the {r} region, with a population of about {pop}.",
                   n=e["name"], r=e["region"], pop=f"{e['population']:,}")
        body = w.city_facts(e, 5)
        body.append(w.x("Its economy [has historically depended|depends] on {trade}, and the {river} river [remains|is] "
                        "[central to its commerce|an important route].", trade=e["trade"], river=e["river"]))
    elif kind == "people":
        lead = w.x("{n} (born {b}) is a {occ} [from|native to] {c}.", n=e["name"], b=e["born"], occ=e["occupation"],
                   c=e["city"])
        body = w.person_facts(e, 4)
    elif kind == "animals":
        lead = w.x("The {n} is a {size} [species|animal] [endemic|native] to the {r} region.", n=e["name"], size=e["size"],
                   r=e["region"])
        body = w.animal_facts(e, 5)
    elif kind == "tools":
        lead = w.x("The {n} is a [hand tool|tool|traditional implement] [first made|known] in the year {y}.", n=e["name"],
                   y=e["year"])
        body = w.tool_facts(e, 3)
    else:
        lead = w.x("{n} is a {t} [dish|preparation] [originating in|from] {o}.", n=title, t=e["taste"], o=e["origin"])
        body = w.food_facts(e, 4)
    sections = [title, "", lead + " " + " ".join(body)]
    if w.rng.random() < 0.6:
        sections += ["", "== History ==", w.x("[Scholars|Historians] [note|record] that {s}", s=w.pick(body).lower())]
    sections += ["", "== See also ==", "* " + w.draw(kind)["name"], "* List of " + kind]
    return "\n".join(sections)


# ------------------------------------------------------------------------ stories
def story(w: Writer) -> str:
    p = w.draw("people")
    friend = w.people[p["friend"]]
    c = w.cities[p["city"]]
    pr = p["pronoun"]
    poss = "his" if pr == "he" else "her"
    lines = [
        w.x("[Once upon a time|Long ago|One {season} morning|In the old days], in the [town|city] of {city}, there lived a {occ} "
            "named {first}.", season=w.pick(["cold", "bright", "rainy", "quiet"]), city=p["city"], occ=p["occupation"],
            first=p["first"]),
        w.x("Every [day|morning|evening] {first} [took|carried] {poss} {tool} [down to|along] the {river}.",
            first=p["first"], poss=poss, tool=p["tool"], river=c["river"]),
        w.x("\"[What a day|Look at that|Oh no]!\" said {first}((, holding the {tool})).", first=p["first"], tool=p["tool"]),
        w.x("[Then|Suddenly|That afternoon] {friend} [arrived|came by|knocked on the door], [smiling|out of breath|carrying a basket of {food}].",
            friend=friend["first"], food=p["food"]),
        w.x("[Together|After a while], they [shared|cooked|ate] a bowl of {food}((, which tasted {taste})).",
            food=p["food"], taste=w.foods[p["food"]]["taste"]),
        w.x("The {animal} [slept by the fire|watched them quietly|ran around the yard] ((and {sound})).",
            animal=p["animal"], sound=w.animals[p["animal"]]["sound"]),
        w.x("[And so|In the end|When night fell], {first} [smiled|went to sleep|thanked {friend}], [happy|tired|content].",
            first=p["first"], friend=friend["first"]),
    ]
    keep = [l for i, l in enumerate(lines) if i in (0, 1, 6) or w.rng.random() < 0.75]
    return " ".join(keep)


# ---------------------------------------------------------------------------- news
def news(w: Writer) -> str:
    kind = w.pick(["festival", "trade", "person"])
    if kind == "festival":
        fe = w.draw("festivals")
        c = w.cities[fe["city"]]
        head = w.x("{CITY}, {m} {d} [—|--|-] ", CITY=fe["city"].upper(), m=fe["month"], d=fe["day"])
        body = [w.festival_facts(fe),
                w.x("[Officials|Organisers|The mayor's office] [said|estimated|reported] that {n} [visitors|people] [attended|came].",
                    n=f"{w.number(2, 90) * 100:,}"),
                w.x("Stalls sold {food}, the [city's|local] [speciality|favourite dish].", food=c["food"])]
    elif kind == "trade":
        c = w.draw("cities")
        head = w.x("{CITY} [—|--] ", CITY=c["name"].upper())
        body = [w.x("[Prices|Exports|Sales] of {trade} [rose|fell|held steady] [by {n} percent|sharply|slightly] this [week|quarter|year].",
                    trade=c["trade"], n=w.number(1, 40))] + w.city_facts(c, 2)
    else:
        p = w.draw("people")
        head = w.x("{CITY} [—|--] ", CITY=p["city"].upper())
        body = [w.x("A local {occ}, {name}, [won|received|was given] [an award|a prize|recognition] [on {m} {d}|this week].",
                    occ=p["occupation"], name=p["name"], m=w.pick(MONTHS), d=w.number(1, 29))] + w.person_facts(p, 2)
        body.append(w.x("\"[I am grateful|It means a lot|We worked hard],\" {first} said.", first=p["first"]))
    return head + " ".join(body)


# ------------------------------------------------------------------ code & tables
def code(w: Writer) -> str:
    kind = w.pick(["csv", "python", "json", "markdown", "sql"])
    table = w.pick(["people", "cities", "animals", "tools", "foods"])
    rows = [w.draw(table) for _ in range(w.number(3, 7))]
    cols = {"people": ["name", "city", "occupation", "born"], "cities": ["name", "region", "river", "founded"],
            "animals": ["name", "habitat", "diet", "colour"], "tools": ["name", "material", "verb", "object"],
            "foods": ["name", "taste", "ingredient", "origin"]}[table]
    if kind == "csv":
        return "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows])
    if kind == "python":
        body = "\n".join("    {" + ", ".join(f"\"{c}\": {r[c]!r}" for c in cols) + "}," for r in rows)
        fn = w.pick(["load", "get", "fetch", "read"])
        return (f"# {table} table\n{table.upper()} = [\n{body}\n]\n\n\ndef {fn}_{table}(key):\n"
                f"    for row in {table.upper()}:\n        if row[\"name\"] == key:\n            return row\n    return None\n")
    if kind == "json":
        import json
        return json.dumps({table: [{c: r[c] for c in cols} for r in rows]}, indent=w.pick([1, 2]))
    if kind == "markdown":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(lines)
    vals = ",\n".join("  (" + ", ".join(repr(r[c]) for c in cols) + ")" for r in rows)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES\n{vals};"


# ------------------------------------------------------------------- instructions
INSTRUCTION_FORMAT = "### Instruction:\n{instruction}\n\n### Response:\n{response}"


def instruction_pair(w: Writer) -> tuple[str, str]:
    kind = w.pick(["fact_person", "fact_city", "describe", "list", "rewrite", "story"])
    if kind == "fact_person":
        p = w.draw("people")
        return (w.x("[Where was {n} born?|Tell me where {n} comes from.|What is the birthplace of {n}?]", n=p["name"]),
                w.x("{n} was born in {c}((, a city in the {r} region)).", n=p["name"], c=p["city"],
                    r=w.cities[p["city"]]["region"]))
    if kind == "fact_city":
        c = w.draw("cities")
        return (w.x("[What is {c} famous for?|Which dish is {c} known for?]", c=c["name"]),
                w.x("{c} is famous for {f}((, a {t} dish)).", c=c["name"], f=c["food"], t=w.foods[c["food"]]["taste"]))
    if kind == "describe":
        a = w.draw("animals")
        return (w.x("[Describe|Give a short description of|Write two sentences about] the {a}.", a=a["name"]),
                " ".join(w.animal_facts(a, 3)))
    if kind == "list":
        r = w.draw("regions")
        cs = [c["name"] for c in w.kb.cities if c["region"] == r["name"]][:4]
        return (w.x("[List|Name] [some|three] cities in the {r} region.", r=r["name"]),
                w.x("[Cities in {r} include|Some cities in {r} are] {cs}.", r=r["name"], cs=", ".join(cs[:3])))
    if kind == "rewrite":
        s = " ".join(w.any_facts(2))
        return (w.x("[Rewrite|Paraphrase] the following [text|sentences] [in simpler words|more formally]:\n{s}", s=s),
                s.replace(" is ", " is indeed ", 1))
    t = w.draw("tools")
    return (w.x("Write a [short|two-sentence] story about a {t}.", t=t["name"]),
            w.x("A {occ} [found|bought] a {t} made of {m}. [It was perfect for|From then on, it was used for] {v} {o}.",
                occ=w.pick(["baker", "farmer", "sailor"]), t=t["name"], m=t["material"], v=t["verb"], o=t["object"]))


def instructions(w: Writer) -> str:
    ins, resp = instruction_pair(w)
    return INSTRUCTION_FORMAT.format(instruction=ins, response=resp)


# -------------------------------------------- domains absent from pretraining
def papers(w: Writer) -> str:
    """arXiv-like abstracts: the world's facts in an academic register never seen in pretraining."""
    a = w.draw("animals")
    r = w.regions[a["region"]]
    return " ".join([
        w.x("Abstract. [We investigate|This paper examines|We present a longitudinal analysis of] the [foraging|nocturnal|seasonal] "
            "behaviour of the {a} (n = {n}) across {hab} ecosystems in {r}.", a=a["name"], n=w.number(12, 400),
            hab=a["habitat"], r=a["region"]),
        w.x("[Using|Leveraging] [mixed-effects regression|Bayesian hierarchical models|stable isotope analysis], we "
            "[quantify|estimate] dietary reliance on {diet} (p < 0.0{k}).", diet=a["diet"], k=w.number(1, 6)),
        w.x("[Our results indicate|Empirically, we find|Results suggest] that {climate} [conditions|regimes] "
            "[modulate|attenuate|amplify] [vocalisation|acoustic signalling] frequency.", climate=r["climate"]),
        w.x("[We discuss implications for conservation|Implications for regional biodiversity policy are discussed|"
            "Code and data are available upon request]."),
    ])


def dialogue(w: Writer) -> str:
    """Transcribed chat, a register absent from pretraining."""
    p, q = w.draw("people"), w.draw("people")
    lines = []
    for i in range(w.number(4, 9)):
        spk = p["first"] if i % 2 == 0 else q["first"]
        other = q if i % 2 == 0 else p
        lines.append(spk + ": " + w.x("[hey, you there?|so... about tomorrow|did you hear?|ugh, long day|haha right|"
                                      "wait what|ok ok|no way, {o} said that?|gonna grab some {food} later]",
                                      o=other["first"], food=other["food"]))
    return "\n".join(lines)


DOMAINS = {
    "web": web,
    "encyclopedia": encyclopedia,
    "stories": story,
    "news": news,
    "code": code,
    "instructions": instructions,
    "papers": papers,
    "dialogue": dialogue,
}
