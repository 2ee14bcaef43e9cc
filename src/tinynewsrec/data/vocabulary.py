"""Word lists of the synthetic MIND world (see :mod:`tinynewsrec.data.synthetic`).

MIND's news come from MSN News: 15-18 categories (``news``, ``sports``, ``finance``...)
each split into subcategories (``football_nfl``, ``newspolitics``, ``markets``...). The
synthetic world copies that shape with 15 categories and 3-6 subcategories each. Every
subcategory has its own topic nouns (what its news are about), the roles of its people
and a recipe for its organisations (teams, companies, shows...); every category has
its own verbs, adjectives, title templates and click appeal.

Named entities are invented but plausible: people are first name + last name, teams are
US city + mascot, companies are an invented brand + an industry word, places are real
cities, states, countries and travel destinations. No real person or company is named,
so no synthetic headline can be mistaken for news about someone real.

Template fields (filled by the generator, the same for title and abstract):
``{P}`` ``{P2}`` people, ``{O}`` ``{O2}`` organisations, ``{G}`` a place, ``{N}`` ``{N2}``
topic nouns of the subcategory, ``{A}`` an adjective and ``{V}`` a verb of the category,
``{R}`` a role with its article ("a quarterback"), ``{K}`` a small count, ``{S}`` a game
score, ``{M}`` an amount of money, ``{D}`` a weekday.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrgRecipe:
    """How a subcategory's organisations are named: ``f"{left} {right}"``.

    ``left`` is a tuple of words or the name of a shared list (``CITY``, ``STATE``,
    ``BRAND``); ``kind`` is MIND's entity type code (``O`` organisation, ``W`` a work:
    a show, a film, a book).
    """

    left: tuple[str, ...] | str
    right: tuple[str, ...]
    kind: str = "O"


@dataclass(frozen=True)
class Subcategory:
    name: str
    nouns: tuple[str, ...]
    roles: tuple[str, ...]
    orgs: OrgRecipe
    #: which shared place list its ``{G}`` comes from: us, state, world or travel
    places: str = "us"
    #: replaces the category's title templates (e.g. golf has no team-vs-team games)
    templates: tuple[str, ...] = ()
    #: range of a game score ``{S}`` (winner's points drawn above the loser's)
    score: tuple[int, int] = (1, 5)
    #: relative number of news it publishes within its category
    volume: float = 1.0


@dataclass(frozen=True)
class Category:
    name: str
    #: share of all news published in this category
    volume: float
    #: how clickable its news are on average (a logit offset; MIND: news/sports/lifestyle high)
    appeal: float
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    templates: tuple[str, ...]
    subcategories: tuple[Subcategory, ...]


FIRST_NAMES = tuple(
    """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
    Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy
    Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Paul Emily Andrew
    Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy
    Stephanie Ronald Rebecca Jason Laura Edward Sharon Jeffrey Cynthia Ryan Kathleen Jacob Amy
    Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda Stephen Pamela Larry Emma Justin
    Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel Christine Gregory Debra
    Alexander Rachel Frank Carolyn Patrick Janet Raymond Maria Jack Olivia Dennis Heather Jerry
    Diane Tyler Julie Aaron Joyce Jose Victoria Adam Kelly Nathan Christina Henry Lauren
    Zachary Joan Douglas Evelyn Peter Judith Kyle Megan Noah Andrea Ethan Cheryl Jeremy Hannah
    Walter Jacqueline Christian Martha Keith Gloria Roger Teresa Terry Ann Austin Sara Sean
    Madison Gerald Frances Carl Kathryn Harold Janice Dylan Jean Arthur Abigail Lawrence Alice
    Jordan Judy Jesse Sophia Bryan Grace Billy Denise Bruce Amber Gabriel Doris Joe Marilyn
    Logan Danielle Albert Beverly Willie Isabella Alan Theresa Juan Diana Wayne Natalie Elijah
    Brittany Randy Charlotte Roy Marie Vincent Kayla Ralph Alexis Eugene Lori Russell Malik
    Darius Andre Marcus Jamal Tariq Priya Aisha Mei Kenji Diego Sofia Mateo Lucia Omar Leila""".split()
)

LAST_NAMES = tuple(
    """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
    Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White
    Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres
    Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts
    Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales
    Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos
    Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes
    Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry
    Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons
    Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West
    Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro
    Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen
    Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva
    Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose
    Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens
    Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Hansen
    Okafor Nakamura Haddad Kowalski Lindqvist Moreau Rossi Novak Abernathy Whitfield""".split()
)

CITY = (
    "Portland", "Denver", "Austin", "Phoenix", "Seattle", "Boston", "Chicago", "Atlanta",
    "Miami", "Dallas", "Houston", "Detroit", "Cleveland", "Nashville", "Memphis", "Charlotte",
    "Tampa", "Orlando", "Pittsburgh", "Baltimore", "Milwaukee", "Minneapolis", "Omaha",
    "Tulsa", "Louisville", "Richmond", "Raleigh", "Sacramento", "San Diego", "San Jose",
    "Salt Lake City", "Albuquerque", "Tucson", "Fresno", "Boise", "Spokane", "Anchorage",
    "Honolulu", "Buffalo", "Rochester", "Hartford", "Providence", "Newark", "Columbus",
    "Cincinnati", "Indianapolis", "Kansas City", "St. Louis", "Oklahoma City", "El Paso",
    "Las Vegas", "Reno", "Birmingham", "New Orleans", "Jacksonville", "Savannah",
    "Charleston", "Knoxville", "Madison", "Des Moines", "Wichita", "Little Rock",
    "Baton Rouge", "Lexington", "Fort Worth", "San Antonio", "Oakland", "Long Beach",
    "Tacoma", "Burlington",
)

STATE = (
    "Texas", "California", "Florida", "New York", "Ohio", "Michigan", "Georgia", "Oregon",
    "Colorado", "Arizona", "Minnesota", "Wisconsin", "Tennessee", "Kentucky", "Alabama",
    "Louisiana", "Iowa", "Kansas", "Nebraska", "Oklahoma", "Missouri", "Indiana", "Illinois",
    "Virginia", "North Carolina", "South Carolina", "Pennsylvania", "New Jersey", "Maine",
    "Vermont", "Montana", "Idaho", "Utah", "Nevada", "New Mexico", "Washington State",
    "Massachusetts", "Maryland", "Arkansas", "Mississippi",
)

WORLD = (
    "Brazil", "India", "Japan", "Germany", "France", "Mexico", "Canada", "Australia",
    "Nigeria", "Egypt", "Turkey", "Iran", "Iraq", "Syria", "Israel", "China", "Russia",
    "Ukraine", "Poland", "Italy", "Spain", "Greece", "Chile", "Argentina", "Venezuela",
    "Colombia", "Peru", "Kenya", "South Africa", "Pakistan", "Afghanistan", "Indonesia",
    "Vietnam", "Thailand", "South Korea", "North Korea", "Hong Kong", "London", "Paris",
    "Berlin", "Tokyo", "Beijing", "Moscow", "Mexico City", "Cairo", "New Delhi", "Sydney",
    "Bolivia", "Ethiopia", "Lebanon",
)

TRAVEL = (
    "Lisbon", "Reykjavik", "Bali", "Kyoto", "Santorini", "Patagonia", "Yellowstone", "Banff",
    "Maui", "Tuscany", "Provence", "the Amalfi Coast", "Dubrovnik", "Prague", "Budapest",
    "Vienna", "Edinburgh", "Dublin", "Cape Town", "Marrakech", "Havana", "Cancun", "Tulum",
    "Costa Rica", "Sedona", "Napa Valley", "Key West", "Aspen", "Lake Tahoe", "Zion",
    "the Grand Canyon", "Vancouver", "Quebec City", "Barcelona", "Seville", "Florence",
    "Venice", "Amsterdam", "Copenhagen", "Stockholm", "Oslo", "Bangkok", "Hanoi", "Singapore",
    "Queenstown", "Fiji", "Bora Bora", "Machu Picchu", "Petra", "Jaipur", "Seoul", "Hokkaido",
)

#: invented brand words for companies, studios, gyms and the like
BRAND = tuple(
    """Northwind Bluepeak Ironwood Crestline Silverline Redstone Brightwater Oakridge Summitview
    Harborview Pinnacle Evergreen Keystone Riverbend Starling Granite Copperfield Lakeshore
    Highland Westbrook Eastgate Sunridge Clearwater Goldleaf Maplewood Stonebridge Aldergrove
    Vantor Kestrel Halcyon Meridian Solace Quillon Tessera Norvell Arborline Cobalt Juniper
    Larkspur Marlow Nexa Orchid Palisade Quarry Rowan Sable Tamarack Umber Verdant Willow
    Yarrow Zephyr Alder Beacon Cedarline Driftwood Ember Foxglove Glacier Hawthorn Indigo
    Jasper Kinetic Lumen Mosaic Nimbus Onyx Prairie Quasar Radiant Sierra Trident Upland
    Vector Wren Bramble Corvid""".split()
)

PLACES = {"us": CITY, "state": STATE, "world": WORLD, "travel": TRAVEL}
SHARED = {"CITY": CITY, "STATE": STATE, "BRAND": BRAND}

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: title templates any category may use (about a fifth of all titles)
GENERIC_TEMPLATES = (
    "{K} things to know about the {N} right now",
    "Why {P} says the {N} matters more than ever",
    "What we know so far about the {A} {N}",
    "{P} opens up about the {N}",
    "Here's what {O} plans to do about the {N}",
    "The {N} debate, explained",
    "{P} weighs in on the {N} and the {N2}",
    "Everything you need to know about the {N} in {G}",
)

#: abstract sentences; an abstract is one or two of them (a few percent are empty, as in MIND)
ABSTRACT_TEMPLATES = (
    "{P}, {R}, spoke about the {N} on {D} and what it could mean for {O}.",
    "The {A} {N} has drawn attention across {G}, and {P} is at the center of it.",
    "Officials in {G} say the {N} is far from over. Here is what {P} said about the {N2}.",
    "{O} confirmed the {N} in a statement on {D}, adding that the {N2} would be reviewed.",
    "Fans and critics weighed in after {P} addressed the {N}.",
    "It has been a {A} week for {O}, with the {N} and the {N2} dominating the conversation.",
    "From the {N} to the {N2}, here is everything you need to know, including what {P} had to say.",
    "{P} told reporters in {G} that the {N} was only the beginning.",
    "The {N} is the latest chapter for {O}, which has spent months dealing with the {N2}.",
    "{K} people close to {P} said the {N} had been in the works for some time.",
    "A closer look at the {N} and the {N2}, and at the people behind them.",
    "{P} has long been a familiar face in {G}, and the {N} only added to the attention.",
    "Not everyone at {O} agrees on the {N}, but {P} insists the {N2} comes first.",
    "Here is how the {N} played out on {D}, and why {P} is still talking about it.",
)


def _s(*words: str) -> tuple[str, ...]:
    return tuple(words)


_TEAM_TEMPLATES = _s(
    "{O} beat {O2} {S} behind {P}",
    "{P} leads {O} past {O2} in {A} win",
    "{O2} stun {O} {S}",
    "{O} rally to beat {O2} {S} as {P} shines",
    "{O} {V} {P} amid {N} questions",
    "Report: {O} {V} {P} ahead of the {N}",
    "{P} injury update: what it means for the {O}",
    "{K} takeaways from the {O} game against {O2}",
    "{O} vs. {O2}: the {N} could decide it",
    "{P} sets {A} mark in {O} win",
    "Why the {O} need to fix their {N}",
    "{P} frustrated with the {N} after loss to {O2}",
)

CATEGORIES: tuple[Category, ...] = (
    Category(
        "news", 0.20, 0.25,
        verbs=_s("pushes for", "slams", "defends", "announces", "rejects", "calls for", "backs",
                 "responds to", "warns of", "signs off on", "questions", "unveils"),
        adjectives=_s("new", "major", "growing", "sweeping", "controversial", "surprise",
                      "long-awaited", "bitter", "emergency", "historic"),
        templates=_s(
            "{P} {V} {N} as {G} braces for {N2}",
            "{O} {V} {A} {N}",
            "{A} {N} in {G} sparks debate",
            "{P} {V} {N} after weeks of pressure",
            "Lawmakers in {G} clash over {N}",
            "{O} under fire over {N}",
            "Inside the fight over the {N} in {G}",
            "{P} says the {N} will not derail the {N2}",
            "{G} {V} {A} {N}",
            "{P} {V} {N}, setting up showdown with {O}",
        ),
        subcategories=(
            Subcategory("newsus", _s(
                "school board vote", "water main break", "property tax hike", "highway project",
                "police reform", "housing shortage", "power outage", "wildfire recovery",
                "minimum wage increase", "opioid crisis", "teacher strike", "bridge repair",
                "census count", "gun law"),
                _s("mayor", "governor", "police chief", "sheriff", "city council member"),
                OrgRecipe("CITY", _s("City Council", "School District", "Transit Authority",
                                     "Housing Authority", "Water Department")), volume=1.6),
            Subcategory("newspolitics", _s(
                "impeachment inquiry", "budget deal", "tax plan", "health care bill",
                "trade agreement", "border wall funding", "campaign finance", "voting rights",
                "debate stage", "primary race", "Senate vote", "spending bill",
                "election security", "approval rating"),
                _s("senator", "congresswoman", "congressman", "governor", "presidential candidate",
                   "White House adviser"),
                OrgRecipe(_s("House", "Senate", "State", "Federal", "Joint", "National"),
                          _s("Judiciary Committee", "Ethics Committee", "Election Commission",
                             "Budget Office", "Appropriations Panel", "Oversight Board")),
                places="state", volume=1.6),
            Subcategory("newsworld", _s(
                "peace talks", "refugee crisis", "trade war", "protest movement", "ceasefire",
                "nuclear deal", "election result", "border dispute", "climate summit",
                "sanctions", "military buildup", "embassy closure", "currency crisis",
                "humanitarian aid"),
                _s("prime minister", "foreign minister", "president", "opposition leader",
                   "ambassador"),
                OrgRecipe(_s("United", "Global", "International", "Northern", "Pacific", "Atlantic"),
                          _s("Relief Agency", "Trade Council", "Security Alliance",
                             "Rights Watchdog", "Development Bank", "Peace Mission")),
                places="world"),
            Subcategory("newscrime", _s(
                "shooting", "robbery", "fraud case", "murder trial", "car theft ring", "drug bust",
                "kidnapping", "arson investigation", "cold case", "hit-and-run", "bank heist",
                "cyber scam", "police chase", "jury verdict"),
                _s("suspect", "detective", "prosecutor", "defense attorney", "victim"),
                OrgRecipe("CITY", _s("Police Department", "Sheriff's Office",
                                     "District Attorney's Office", "Superior Court", "Crime Lab"))),
            Subcategory("newsgoodnews", _s(
                "food drive", "surprise reunion", "scholarship fund", "community garden",
                "rescue mission", "random act of kindness", "charity run", "holiday toy drive",
                "volunteer effort", "birthday surprise", "donation", "hero firefighter"),
                _s("volunteer", "teacher", "nurse", "firefighter", "veteran", "student"),
                OrgRecipe("CITY", _s("Food Bank", "Animal Shelter", "Rotary Club",
                                     "Children's Hospital", "Community Center")), volume=0.6),
        ),
    ),
    Category(
        "sports", 0.17, 0.2,
        verbs=_s("sign", "release", "trade for", "bench", "extend", "activate", "waive", "re-sign",
                 "acquire", "promote"),
        adjectives=_s("wild", "dominant", "gritty", "lopsided", "overtime", "record-setting",
                      "comeback", "ugly", "statement", "nail-biting"),
        templates=_TEAM_TEMPLATES,
        subcategories=(
            Subcategory("football_nfl", _s(
                "quarterback battle", "pass rush", "red zone offense", "run defense",
                "playoff race", "trade deadline", "injury report", "contract extension",
                "coaching search", "kicking game", "secondary", "offensive line", "draft pick",
                "two-minute drill"),
                _s("quarterback", "wide receiver", "linebacker", "running back", "head coach",
                   "cornerback"),
                OrgRecipe("CITY", _s("Hawks", "Stallions", "Pioneers", "Titans", "Marauders",
                                     "Wolves", "Mustangs", "Gladiators", "Sentinels", "Rams")),
                score=(3, 45), volume=2.0),
            Subcategory("basketball_nba", _s(
                "three-point shooting", "bench scoring", "rotation", "free throws",
                "trade rumors", "rebounding", "fast break", "pick-and-roll defense",
                "max contract", "rookie season", "playoff seeding", "load management"),
                _s("point guard", "forward", "center", "shooting guard", "head coach"),
                OrgRecipe("CITY", _s("Blaze", "Storm", "Knights", "Thunderbirds", "Lynx", "Rockets",
                                     "Vipers", "Dragons", "Comets", "Flyers")),
                score=(88, 131), volume=1.2),
            Subcategory("baseball_mlb", _s(
                "bullpen", "starting rotation", "free agency", "batting order", "pitching staff",
                "winter meetings", "trade talks", "home run race", "managerial search", "payroll",
                "closer role", "spring training"),
                _s("pitcher", "shortstop", "outfielder", "catcher", "manager", "slugger"),
                OrgRecipe("CITY", _s("Sluggers", "Aces", "Mariners", "Cardinals", "Pilots", "Miners",
                                     "Barons", "Outlaws", "Bison", "Canaries")),
                score=(0, 12), volume=0.9),
            Subcategory("icehockey_nhl", _s(
                "power play", "penalty kill", "goaltending", "top line", "overtime streak",
                "blue line", "faceoff battle", "road trip", "injury list", "shootout",
                "defensive zone", "winning streak"),
                _s("goalie", "center", "defenseman", "winger", "coach"),
                OrgRecipe("CITY", _s("Blades", "Frost", "Wings", "Bruisers", "Glaciers", "Huskies",
                                     "Lumberjacks", "Polar Bears", "Monarchs", "Whalers")),
                score=(0, 7), volume=0.7),
            Subcategory("soccer", _s(
                "title race", "transfer window", "midfield", "set pieces", "relegation fight",
                "penalty kick", "derby", "back line", "striker search", "cup run",
                "knockout stage", "clean sheet"),
                _s("striker", "midfielder", "goalkeeper", "manager", "defender"),
                OrgRecipe("CITY", _s("United", "FC", "City", "Athletic", "Rovers", "Wanderers")),
                score=(0, 5), volume=0.8),
            Subcategory("golf", _s(
                "final round", "putting woes", "swing change", "major championship",
                "Ryder Cup spot", "driving accuracy", "comeback bid", "course record",
                "playoff hole", "world ranking", "short game", "tee time"),
                _s("golfer", "caddie", "tour pro", "captain"),
                OrgRecipe("CITY", _s("Open", "Classic", "Invitational", "Championship", "Pro-Am")),
                templates=_s(
                    "{P} takes lead at {O} with {A} round",
                    "{P} wins {O} in playoff over {P2}",
                    "{P} struggles with {N} at {O}",
                    "{P2} and {P} tied heading into the {N}",
                    "What went wrong for {P} at the {O}",
                    "{P} on the {N}: 'I just need to keep going'",
                    "{P} withdraws from {O}, citing {N}",
                ), volume=0.5),
        ),
    ),
    Category(
        "finance", 0.07, -0.1,
        verbs=_s("raises", "cuts", "reports", "warns of", "unveils", "plans", "announces",
                 "delays", "doubles down on", "rethinks"),
        adjectives=_s("quarterly", "record", "surprise", "sharp", "steady", "weak", "strong",
                      "unexpected", "rising", "falling"),
        templates=_s(
            "{O} stock jumps after {A} {N}",
            "{O} stock slides on {N} worries",
            "{O} {V} {N}",
            "{P} of {O} {V} {N}",
            "What the {N} means for your {N2}",
            "{K} ways to prepare for the {N}",
            "{O} agrees to {M} deal for {O2}",
            "Is now the time to worry about the {N}?",
            "{P} bets {M} on {N}",
            "{A} {N} puts pressure on {O}",
        ),
        subcategories=(
            Subcategory("markets", _s(
                "interest rates", "bond yields", "earnings season", "oil prices", "stock rally",
                "market selloff", "Fed decision", "trade talks", "inflation data", "jobs report",
                "dollar", "tech stocks", "IPO", "recession fears"),
                _s("analyst", "strategist", "Fed official", "fund manager", "economist"),
                OrgRecipe("BRAND", _s("Capital", "Securities", "Investments", "Asset Management"))),
            Subcategory("finance-companies", _s(
                "layoffs", "merger", "quarterly earnings", "product recall", "CEO shakeup",
                "store closures", "hiring spree", "stock buyback", "data breach", "supply chain",
                "union contract", "expansion plan", "antitrust probe", "dividend"),
                _s("CEO", "chief executive", "founder", "chairman", "CFO"),
                OrgRecipe("BRAND", _s("Corp.", "Industries", "Technologies", "Retail",
                                      "Pharmaceuticals", "Telecom"))),
            Subcategory("personalfinance", _s(
                "credit score", "student loans", "emergency fund", "budget", "credit card debt",
                "tax refund", "savings account", "holiday spending", "side hustle",
                "mortgage payment", "insurance premium", "paycheck"),
                _s("financial planner", "money coach", "personal finance expert", "accountant"),
                OrgRecipe("BRAND", _s("Bank", "Credit Union", "Financial", "Lending", "Insurance"))),
            Subcategory("finance-real-estate", _s(
                "home prices", "mortgage rates", "housing market", "rent increases",
                "first-time buyers", "starter homes", "luxury listing", "home sales",
                "property values", "foreclosures", "condo boom", "open house"),
                _s("real estate agent", "broker", "homebuilder", "developer", "economist"),
                OrgRecipe("BRAND", _s("Realty", "Homes", "Properties", "Mortgage", "Builders"))),
            Subcategory("finance-retirement", _s(
                "401(k)", "Social Security", "pension", "retirement savings",
                "required minimum distributions", "Medicare costs", "annuity",
                "early retirement", "nest egg", "IRA contributions", "retirement age",
                "long-term care"),
                _s("retiree", "retirement planner", "financial adviser"),
                OrgRecipe("BRAND", _s("Retirement Services", "Pension Fund", "Wealth Partners",
                                      "Trust")), volume=0.7),
        ),
    ),
    Category(
        "lifestyle", 0.09, 0.2,
        verbs=_s("shares", "reveals", "shows off", "celebrates", "opens up about", "tries",
                 "swears by", "gets candid about", "surprises fans with", "debuts"),
        adjectives=_s("stunning", "adorable", "cozy", "viral", "heartwarming", "surprising",
                      "simple", "genius", "timeless", "budget-friendly"),
        templates=_s(
            "{P} {V} {A} {N}",
            "{K} {A} {N} ideas you'll want to try",
            "The {A} {N} everyone is talking about",
            "{P} {V} the secret to a {A} {N}",
            "Why the {N} is having a moment in {G}",
            "This {A} {N} went viral for the best reason",
            "How {P} makes the {N} work",
            "{P} and {P2} celebrate {A} {N}",
        ),
        subcategories=(
            Subcategory("lifestylebuzz", _s(
                "wedding photo", "viral video", "prank", "makeover", "gender reveal",
                "dance challenge", "family reunion", "proposal", "Halloween costume",
                "road trip", "airport moment", "lottery win"),
                _s("influencer", "mom", "dad", "bride", "TikTok star"),
                OrgRecipe(_s("The Morning", "The Daily", "The Weekend", "The Local"),
                          _s("Show", "Buzz", "Report", "Edition")), volume=1.4),
            Subcategory("lifestyleroyals", _s(
                "royal tour", "palace statement", "christening", "royal wedding", "tiara",
                "engagement", "Christmas card", "state banquet", "royal baby",
                "charity patronage", "family rift", "coronation plans"),
                _s("duchess", "prince", "princess", "queen", "royal aide"),
                OrgRecipe(_s("Kensington", "Clarence", "Windsor", "Balmoral", "Sandringham"),
                          _s("Palace", "House", "Estate", "Trust")), places="world", volume=0.6),
            Subcategory("lifestylehomeandgarden", _s(
                "kitchen remodel", "fall decor", "houseplants", "backyard patio",
                "closet organization", "paint color", "small space", "garden bed",
                "holiday tablescape", "home office", "bathroom upgrade", "curb appeal"),
                _s("designer", "interior designer", "gardener", "homeowner"),
                OrgRecipe("BRAND", _s("Home", "Interiors", "Garden Center", "Furniture"))),
            Subcategory("lifestyleparenting", _s(
                "bedtime routine", "screen time", "toddler tantrum", "school lunch", "baby name",
                "homework", "sleep training", "family vacation", "picky eater", "teen driver",
                "first day of school", "allowance"),
                _s("mom", "dad", "pediatrician", "teacher", "parenting expert"),
                OrgRecipe("CITY", _s("Elementary School", "Parents Association",
                                     "Children's Museum", "Day Care"))),
            Subcategory("pets", _s(
                "rescue dog", "shelter cat", "puppy", "dog park", "pet adoption", "vet visit",
                "dog breed", "kitten", "pet food recall", "service dog", "dog training",
                "senior dog"),
                _s("veterinarian", "dog trainer", "pet owner", "shelter volunteer"),
                OrgRecipe("CITY", _s("Humane Society", "Animal Rescue", "Pet Hospital", "SPCA"))),
        ),
    ),
    Category(
        "health", 0.06, 0.0,
        verbs=_s("warns about", "recommends", "studies", "links", "explains", "questions",
                 "backs", "tracks", "treats", "targets"),
        adjectives=_s("hidden", "common", "surprising", "new", "simple", "serious", "early",
                      "daily", "rare", "proven"),
        templates=_s(
            "{K} {A} signs of {N} you shouldn't ignore",
            "Doctors say {N} may raise risk of {N2}",
            "{P} {V} {N} in new study",
            "What {A} {N} does to your body",
            "New study links {N} to {N2}",
            "Is {N} really good for you? Experts weigh in",
            "{O} {V} {A} approach to {N}",
            "How {P} beat {N}",
        ),
        subcategories=(
            Subcategory("wellness", _s(
                "stress", "sleep", "meditation", "burnout", "anxiety", "screen time",
                "morning routine", "gratitude", "loneliness", "self-care", "daylight saving time",
                "breathing exercises"),
                _s("psychologist", "sleep expert", "therapist", "wellness coach"),
                OrgRecipe("CITY", _s("Wellness Center", "Sleep Institute", "Mindfulness Center"))),
            Subcategory("medical", _s(
                "heart disease", "cancer screening", "flu season", "measles outbreak",
                "blood pressure", "diabetes", "vaping illness", "Alzheimer's",
                "antibiotic resistance", "organ transplant", "stroke", "vaccine"),
                _s("doctor", "surgeon", "cardiologist", "researcher", "nurse"),
                OrgRecipe("CITY", _s("General Hospital", "Medical Center", "Cancer Institute",
                                     "Health Department", "University Clinic")), volume=1.3),
            Subcategory("nutrition", _s(
                "sugar", "protein", "intermittent fasting", "gut health", "vitamin D",
                "processed food", "fiber", "coffee", "red meat", "plant-based diet", "breakfast",
                "sodium"),
                _s("dietitian", "nutritionist", "researcher"),
                OrgRecipe("BRAND", _s("Nutrition Lab", "Foods", "Diet Institute"))),
            Subcategory("fitness", _s(
                "strength training", "running", "walking", "yoga", "HIIT workout",
                "core exercises", "marathon training", "stretching", "push-ups", "cycling",
                "rest days", "home workout"),
                _s("trainer", "coach", "marathoner", "physical therapist"),
                OrgRecipe("BRAND", _s("Fitness", "Gym", "Athletic Club", "Running Club"))),
            Subcategory("weightloss", _s(
                "weight loss", "belly fat", "calorie counting", "keto diet", "meal prep",
                "portion control", "metabolism", "weight-loss plateau", "low-carb diet",
                "cheat day", "snacking", "water intake"),
                _s("dietitian", "trainer", "weight-loss coach"),
                OrgRecipe("BRAND", _s("Weight Loss Center", "Diet Program", "Nutrition"))),
        ),
    ),
    Category(
        "foodanddrink", 0.05, 0.05,
        verbs=_s("shares", "serves", "opens", "closes", "revives", "tests", "perfects",
                 "reinvents", "launches", "recommends"),
        adjectives=_s("easy", "crispy", "creamy", "one-pot", "cozy", "spicy", "classic",
                      "five-ingredient", "make-ahead", "best"),
        templates=_s(
            "{K} {A} {N} recipes for busy weeknights",
            "This {A} {N} is the only recipe you need",
            "{P} {V} the secret to perfect {N}",
            "{O} {V} new {N} menu in {G}",
            "The best {N} in {G}, according to {P}",
            "How to make {A} {N} at home",
            "{O} is bringing back its {N}",
        ),
        subcategories=(
            Subcategory("recipes", _s(
                "chicken soup", "pumpkin bread", "lasagna", "mashed potatoes", "apple pie",
                "chili", "roast turkey", "banana bread", "mac and cheese", "stuffing",
                "casserole", "cookies"),
                _s("chef", "home cook", "food writer", "baker"),
                OrgRecipe("BRAND", _s("Kitchen", "Test Kitchen", "Cooking School")), volume=1.4),
            Subcategory("foodnews", _s(
                "fast food", "plant-based burger", "food recall", "grocery prices",
                "coffee chain", "pumpkin spice", "chicken sandwich", "holiday menu", "meal kit",
                "snack brand", "food delivery", "frozen pizza"),
                _s("food critic", "executive", "analyst"),
                OrgRecipe("BRAND", _s("Burgers", "Coffee", "Foods", "Pizza", "Grocers"))),
            Subcategory("restaurantsandnews", _s(
                "restaurant opening", "brunch spot", "steakhouse", "food truck", "tasting menu",
                "pizza place", "diner", "taco spot", "bakery", "barbecue joint", "sushi bar",
                "seafood shack"),
                _s("restaurateur", "chef", "owner", "food critic"),
                OrgRecipe(_s("The Golden", "The Rusty", "The Blue", "The Hungry", "The Copper",
                             "The Little"),
                          _s("Spoon", "Anchor", "Fork", "Table", "Kettle", "Pig", "Oven"))),
            Subcategory("cocktails", _s(
                "wine", "craft beer", "bourbon", "cocktail", "holiday punch", "mocktail",
                "espresso martini", "whiskey", "cider", "sangria", "hot toddy", "margarita"),
                _s("bartender", "sommelier", "brewer", "distiller"),
                OrgRecipe("BRAND", _s("Brewing Co.", "Distillery", "Winery", "Cellars")),
                volume=0.6),
        ),
    ),
    Category(
        "travel", 0.04, 0.0,
        verbs=_s("ranks", "opens", "bans", "adds", "cuts", "reveals", "names", "welcomes",
                 "launches", "closes"),
        adjectives=_s("hidden", "stunning", "underrated", "affordable", "remote", "luxury",
                      "charming", "crowded", "quiet", "bucket-list"),
        templates=_s(
            "{K} {A} places to visit this winter, from {G} to beyond",
            "{G} named one of the world's best places for a {N}",
            "{O} {V} new routes to {G}",
            "Why {G} should be your next {N}",
            "The {A} {N} in {G} you've never heard of",
            "{P} on the {N} that changed how they travel",
            "What to know before your {N} to {G}",
        ),
        subcategories=(
            Subcategory("travelnews", _s(
                "flight delays", "airfare", "holiday travel", "airport security", "TSA lines",
                "passport rules", "baggage fees", "cruise cancellation", "travel ban",
                "hotel prices", "airline merger", "overbooking"),
                _s("traveler", "pilot", "flight attendant", "travel expert"),
                OrgRecipe("BRAND", _s("Airlines", "Air", "Cruise Line", "Hotels")), places="travel"),
            Subcategory("traveltrip", _s(
                "road trip", "beach town", "ski resort", "national park", "island getaway",
                "hiking trail", "weekend getaway", "small town", "cruise", "train ride",
                "castle", "waterfall"),
                _s("travel writer", "photographer", "tour guide", "traveler"),
                OrgRecipe("BRAND", _s("Resort", "Lodge", "Inn", "Tours")), places="travel"),
            Subcategory("travel-tips", _s(
                "packing list", "carry-on", "travel insurance", "jet lag", "hotel points",
                "layover", "travel hack", "rental car", "credit card points", "airport lounge",
                "budget trip", "solo trip"),
                _s("travel expert", "flight attendant", "points expert"),
                OrgRecipe("BRAND", _s("Travel", "Rewards", "Getaways")), places="travel"),
        ),
    ),
    Category(
        "autos", 0.04, -0.05,
        verbs=_s("unveils", "recalls", "reveals", "tests", "redesigns", "discontinues", "teases",
                 "launches", "prices", "updates"),
        adjectives=_s("new", "electric", "affordable", "rugged", "fastest", "luxury", "classic",
                      "hybrid", "redesigned", "compact"),
        templates=_s(
            "{O} {V} {A} {N}",
            "Review: the {A} {N} from {O} is worth the wait",
            "{K} {A} cars under $30,000 worth a look",
            "{O} recalls thousands of vehicles over {N}",
            "Why {P} thinks the {N} is the future",
            "{A} {N} spotted testing in {G}",
            "The {N} that changed everything for {O}",
        ),
        subcategories=(
            Subcategory("autosnews", _s(
                "electric pickup", "recall", "self-driving car", "gas prices", "charging network",
                "auto tariffs", "sales slump", "factory", "plant closure", "safety rating",
                "car prices", "auto show"),
                _s("CEO", "engineer", "auto analyst", "executive"),
                OrgRecipe("BRAND", _s("Motors", "Automotive", "Auto Group"))),
            Subcategory("autosenthusiasts", _s(
                "V8 engine", "sports car", "track day", "supercar", "muscle car",
                "manual transmission", "horsepower", "drag race", "concept car", "hot hatch",
                "roadster", "tuning"),
                _s("racer", "car collector", "driver", "mechanic"),
                OrgRecipe("BRAND", _s("Performance", "Racing", "Motorsport"))),
            Subcategory("autosbuying", _s(
                "SUV", "pickup truck", "used car", "lease deal", "minivan", "sedan", "car loan",
                "trade-in", "compact crossover", "hybrid", "extended warranty", "dealer markup"),
                _s("car buyer", "dealer", "auto expert"),
                OrgRecipe("BRAND", _s("Auto Sales", "Dealership", "Cars"))),
            Subcategory("autosclassics", _s(
                "barn find", "restoration", "classic convertible", "vintage truck",
                "car auction", "hot rod", "fastback", "muscle car", "station wagon",
                "chrome bumper", "car show", "original engine"),
                _s("collector", "restorer", "auctioneer"),
                OrgRecipe("BRAND", _s("Classics", "Auctions", "Garage", "Restorations")),
                volume=0.6),
        ),
    ),
    Category(
        "weather", 0.04, 0.05,
        verbs=_s("brings", "threatens", "slams", "hits", "pounds", "blankets", "targets",
                 "delivers", "sweeps", "eases"),
        adjectives=_s("heavy", "record", "arctic", "severe", "dangerous", "early", "powerful",
                      "freezing", "unseasonable", "first"),
        templates=_s(
            "{A} {N} {V} {G}",
            "{G} braces for {A} {N} this weekend",
            "{N} warning issued for {G}",
            "When will the {N} end? {P} explains",
            "{K} inches of snow possible as {N} {V} {G}",
            "Forecast: {A} {N} expected across {G}",
            "{P}: the {N} could bring {N2} to {G}",
        ),
        subcategories=(
            Subcategory("weathertopstories", _s(
                "winter storm", "cold snap", "snowstorm", "polar vortex", "ice storm",
                "blizzard", "heat wave", "wind chill", "flash flood", "nor'easter", "freeze",
                "thunderstorm"),
                _s("meteorologist", "forecaster", "weather expert"),
                OrgRecipe("STATE", _s("Weather Service", "Emergency Management", "Power Company"))),
            Subcategory("weather-forecast", _s(
                "weekend forecast", "first frost", "rain", "sunshine", "fog",
                "temperature drop", "warm-up", "snow totals", "wind gusts", "sleet", "drizzle",
                "clear skies"),
                _s("meteorologist", "forecaster"),
                OrgRecipe("CITY", _s("Weather Center", "Weather Team", "Forecast Office"))),
            Subcategory("weather-storms", _s(
                "hurricane", "tornado", "tropical storm", "wildfire", "flooding", "hailstorm",
                "earthquake", "mudslide", "storm surge", "drought", "power outages",
                "evacuation"),
                _s("meteorologist", "emergency manager", "governor"),
                OrgRecipe("STATE", _s("National Guard", "Emergency Agency", "Relief Fund")),
                places="state"),
        ),
    ),
    Category(
        "entertainment", 0.06, 0.15,
        verbs=_s("reveals", "slams", "celebrates", "responds to", "opens up about", "teases",
                 "confirms", "denies", "shares", "addresses"),
        adjectives=_s("shocking", "emotional", "rare", "surprise", "candid", "glamorous",
                      "epic", "awkward", "sweet", "unexpected"),
        templates=_s(
            "{P} {V} {N}",
            "{P} and {P2} spark rumors with {A} {N}",
            "{P} {V} {A} {N} on social media",
            "Fans react to {P}'s {A} {N}",
            "{P} makes {A} appearance at {O}",
            "Everything we know about {P}'s {N}",
            "{P} gets candid about the {N} in new interview",
        ),
        subcategories=(
            Subcategory("celebrity", _s(
                "divorce", "engagement", "red carpet look", "new romance", "baby news", "feud",
                "birthday party", "Instagram post", "wedding", "vacation photos", "new tattoo",
                "breakup"),
                _s("actress", "actor", "singer", "reality star", "model"),
                OrgRecipe(_s("Golden", "Silver", "Fashion", "Starlight", "Harbor"),
                          _s("Gala", "Ball", "Festival", "Benefit")), volume=1.8),
            Subcategory("entertainment-awards", _s(
                "nomination", "acceptance speech", "awards snub", "host gig", "red carpet",
                "best dress", "surprise win", "tribute", "lifetime achievement award",
                "after-party", "performance", "award ceremony"),
                _s("host", "presenter", "nominee", "winner"),
                OrgRecipe(_s("Golden", "Silver", "Crystal", "National", "Grand"),
                          _s("Lantern Awards", "Star Awards", "Choice Awards", "Screen Awards",
                             "Honors"))),
            Subcategory("entertainment-books", _s(
                "memoir", "novel", "book tour", "best-seller list", "book club pick",
                "audiobook", "sequel", "book deal", "poetry collection", "children's book",
                "thriller", "biography"),
                _s("author", "novelist", "memoirist", "publisher"),
                OrgRecipe(_s("The Silent", "The Last", "The Glass", "The Winter", "The Lost",
                             "The Broken"),
                          _s("River", "Harbor", "Garden", "House", "Letters", "Compass"), kind="W"),
                volume=0.6),
        ),
    ),
    Category(
        "music", 0.03, 0.05,
        verbs=_s("drops", "announces", "cancels", "teases", "releases", "covers", "headlines",
                 "postpones", "performs", "celebrates"),
        adjectives=_s("surprise", "new", "sold-out", "emotional", "acoustic", "farewell",
                      "debut", "chart-topping", "long-awaited", "live"),
        templates=_s(
            "{P} {V} {A} {N}",
            "{O} {V} {N} dates for 2020",
            "{P} and {P2} team up for {A} {N}",
            "{P}'s {A} {N} is finally here",
            "Review: {O} show in {G} was unforgettable",
            "{P} says the {N} was the hardest thing to make",
        ),
        subcategories=(
            Subcategory("musicnews", _s(
                "album", "single", "music video", "collaboration", "Grammy nomination",
                "streaming record", "record deal", "lyrics", "remix", "chart debut", "duet",
                "holiday song"),
                _s("singer", "rapper", "songwriter", "producer"),
                OrgRecipe(_s("The Midnight", "Electric", "Velvet", "Neon", "Silver", "Paper"),
                          _s("Echoes", "Rivals", "Strangers", "Lights", "Kings", "Wolves"))),
            Subcategory("music-tours", _s(
                "world tour", "concert", "residency", "farewell tour", "festival lineup",
                "reunion show", "stadium show", "encore", "ticket sales", "set list",
                "opening act", "livestream"),
                _s("singer", "drummer", "frontman", "guitarist"),
                OrgRecipe("CITY", _s("Arena", "Amphitheater", "Music Hall", "Festival"))),
            Subcategory("music-country", _s(
                "country album", "ballad", "Opry debut", "honky-tonk", "duet", "CMA nomination",
                "tribute song", "songwriting", "tour bus", "fiddle", "hit single",
                "Nashville show"),
                _s("country singer", "songwriter", "guitarist"),
                OrgRecipe(_s("Whiskey", "Dusty", "Lonesome", "Red Dirt", "Cotton"),
                          _s("Road Band", "Creek Boys", "Ramblers", "Sisters")), volume=0.7),
        ),
    ),
    Category(
        "movies", 0.03, 0.0,
        verbs=_s("tops", "joins", "drops", "leads", "directs", "teases", "earns", "stars in",
                 "wraps", "lands"),
        adjectives=_s("first", "new", "final", "official", "box-office", "record", "surprise",
                      "long-awaited", "gritty", "animated"),
        templates=_s(
            "{O} tops box office with {M} weekend",
            "{P} {V} {A} trailer for {O}",
            "{P} to star in {A} {N}",
            "{O} review: {P} delivers {A} performance",
            "{K} {A} movies coming to theaters this month",
            "Why {O} is the {N} everyone is talking about",
            "{P} reveals the {N} behind {O}",
        ),
        subcategories=(
            Subcategory("movienews", _s(
                "sequel", "reboot", "casting news", "trailer", "release date", "spinoff",
                "franchise", "remake", "superhero movie", "biopic", "streaming deal",
                "director's cut"),
                _s("director", "actor", "actress", "producer", "screenwriter"),
                OrgRecipe(_s("The Last", "Midnight", "Dark", "Frozen", "Silent", "Iron"),
                          _s("Horizon", "Empire", "Kingdom", "Signal", "Frontier", "Protocol"),
                          kind="W")),
            Subcategory("movies-boxoffice", _s(
                "opening weekend", "box office", "ticket sales", "holiday release", "flop",
                "record debut", "global haul", "second weekend", "studio battle",
                "theater attendance", "premiere", "sleeper hit"),
                _s("studio executive", "analyst", "producer"),
                OrgRecipe("BRAND", _s("Pictures", "Studios", "Films", "Entertainment"))),
            Subcategory("movies-reviews", _s(
                "horror movie", "comedy", "drama", "thriller", "animated film", "war movie",
                "romantic comedy", "documentary", "indie film", "western", "mystery", "musical"),
                _s("critic", "director", "actor"),
                OrgRecipe(_s("The Quiet", "Broken", "Crimson", "Wild", "The Long", "Northern"),
                          _s("Road", "Hearts", "Tide", "Summer", "Goodbye", "Lights"), kind="W")),
        ),
    ),
    Category(
        "tv", 0.04, 0.1,
        verbs=_s("renews", "cancels", "returns with", "recaps", "teases", "casts", "ends",
                 "premieres", "revives", "shakes up"),
        adjectives=_s("shocking", "explosive", "final", "heartbreaking", "surprise", "new",
                      "emotional", "hilarious", "wild", "tense"),
        templates=_s(
            "'{O}' recap: {A} {N} changes everything",
            "{P} joins '{O}' for {A} {N}",
            "'{O}' star {P} teases the {N}",
            "Who went home on '{O}'? {A} {N} recap",
            "{P} opens up about leaving '{O}'",
            "{K} {A} moments from last night's '{O}'",
            "Network {V} '{O}' after {A} {N}",
        ),
        subcategories=(
            Subcategory("tvnews", _s(
                "season premiere", "finale", "renewal", "cancellation", "spinoff", "ratings",
                "casting shake-up", "reboot", "holiday special", "streaming debut",
                "midseason return", "showrunner exit"),
                _s("showrunner", "actor", "actress", "host"),
                OrgRecipe(_s("Chicago", "Blue", "Night", "Code", "Station", "Harbor"),
                          _s("Precinct", "Shift", "Family", "Files", "Nineteen", "Watch"),
                          kind="W")),
            Subcategory("tv-celebrity", _s(
                "exit", "cameo", "wedding", "feud", "return", "behind-the-scenes photo",
                "talk show appearance", "new role", "baby news", "reunion", "interview",
                "salary"),
                _s("actor", "actress", "TV host", "co-star"),
                OrgRecipe(_s("Modern", "Small", "Happy", "Grand", "Brooklyn"),
                          _s("Neighbors", "Town", "Days", "Hotel", "Diner"), kind="W")),
            Subcategory("tvreviews", _s(
                "pilot", "binge", "limited series", "miniseries", "cliffhanger", "plot twist",
                "character arc", "season two", "comedy special", "docuseries", "period drama",
                "sitcom"),
                _s("critic", "creator", "star"),
                OrgRecipe(_s("The Crown", "Dark", "Silver", "Wild", "The Gilded"),
                          _s("Falls", "Age", "Valley", "Heirs", "Coast"), kind="W")),
            Subcategory("tv-reality", _s(
                "elimination", "rose ceremony", "dance-off", "audition", "judges' decision",
                "tribal council", "live show", "villain edit", "finale twist", "fan vote",
                "blind audition", "hometown date"),
                _s("contestant", "judge", "host", "finalist"),
                OrgRecipe(_s("Dancing", "Love", "Island", "Top", "Survivor", "Singing"),
                          _s("Challenge", "Showdown", "Getaway", "House", "Battle"), kind="W")),
        ),
    ),
    Category(
        "video", 0.04, 0.1,
        verbs=_s("catches", "captures", "films", "rescues", "surprises", "stops", "chases",
                 "stuns", "spots", "finds"),
        adjectives=_s("incredible", "hilarious", "terrifying", "adorable", "heartwarming",
                      "dramatic", "unbelievable", "close", "rare", "bizarre"),
        templates=_s(
            "Watch: {A} {N} in {G}",
            "Video: {P} {V} {A} {N}",
            "Camera {V} {A} {N}",
            "Watch {P} react to the {N}",
            "{A} moment: {N} caught on video",
            "Dashcam captures {A} {N} on {G} highway",
        ),
        subcategories=(
            Subcategory("viral", _s(
                "dance", "prank", "stunt", "wedding toast", "surprise proposal",
                "talent show act", "kid's reaction", "magic trick", "flash mob",
                "street performance", "perfect shot", "trick shot"),
                _s("teen", "dad", "grandma", "street performer"),
                OrgRecipe("BRAND", _s("Studios", "Media", "Channel"))),
            Subcategory("animals", _s(
                "bear encounter", "shark sighting", "dog rescue", "baby elephant", "cat video",
                "deer crossing", "alligator", "whale breach", "owl", "raccoon", "horse",
                "goat yoga"),
                _s("wildlife officer", "zookeeper", "hiker", "ranger"),
                OrgRecipe("CITY", _s("Zoo", "Aquarium", "Wildlife Sanctuary", "Animal Rescue"))),
            Subcategory("video-news", _s(
                "police chase", "tornado footage", "rescue", "bridge collapse", "car crash",
                "building fire", "flash flood", "protest", "speech", "press conference",
                "traffic jam", "storm damage"),
                _s("reporter", "witness", "officer", "firefighter"),
                OrgRecipe("CITY", _s("News", "Fire Rescue", "Highway Patrol"))),
        ),
    ),
    Category(
        "science", 0.04, -0.05,
        verbs=_s("discovers", "launches", "reveals", "tests", "unveils", "detects", "maps",
                 "builds", "studies", "tracks"),
        adjectives=_s("mysterious", "ancient", "massive", "new", "tiny", "breakthrough", "rare",
                      "distant", "strange", "powerful"),
        templates=_s(
            "Scientists find {A} {N}",
            "{O} {V} {A} {N}",
            "{A} {N} could change how we think about the {N2}",
            "{P} explains the {N} behind the {N2}",
            "What the {N} tells us about the {N2}",
            "{O} researchers find {A} clue to the {N}",
        ),
        subcategories=(
            Subcategory("science-space", _s(
                "asteroid", "black hole", "Mars rover", "exoplanet", "meteor shower",
                "moon mission", "rocket launch", "solar flare", "space station", "galaxy",
                "comet", "satellite"),
                _s("astronomer", "astronaut", "astrophysicist", "space scientist"),
                OrgRecipe(_s("Orion", "Apex", "Stellar", "Nova", "Horizon", "Zenith"),
                          _s("Space Agency", "Aerospace", "Observatory", "Launch Systems"))),
            Subcategory("science-technology", _s(
                "smartphone", "artificial intelligence", "data privacy", "5G network",
                "smart speaker", "facial recognition", "app update", "cybersecurity",
                "chip shortage", "robot", "electric scooter", "software bug"),
                _s("engineer", "developer", "tech executive", "researcher"),
                OrgRecipe("BRAND", _s("Labs", "Systems", "Software", "Robotics", "Devices")),
                volume=1.3),
            Subcategory("science-environment", _s(
                "climate change", "plastic pollution", "coral reef", "carbon emissions",
                "sea level rise", "deforestation", "renewable energy", "endangered species",
                "air quality", "melting glacier", "recycling", "ocean temperature"),
                _s("climate scientist", "ecologist", "activist", "biologist"),
                OrgRecipe("BRAND", _s("Climate Institute", "Conservation Fund", "Ocean Project"))),
            Subcategory("science-research", _s(
                "fossil", "dinosaur", "ancient tomb", "DNA study", "brain research",
                "shipwreck", "archaeological dig", "new species", "human ancestor", "ice core",
                "gene editing", "quantum computer"),
                _s("archaeologist", "paleontologist", "geneticist", "researcher"),
                OrgRecipe("CITY", _s("University", "Institute of Technology",
                                     "Museum of Natural History", "Research Lab"))),
        ),
    ),
)
