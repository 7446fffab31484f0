"""Generate featctl's small sample dataset: anime.tsv, users.tsv and interactions.tsv.

Everything (titles, summaries, users, comments) is invented for this project. The output is deterministic:
one random.Random(7) drives every choice and only the standard library is used.
Run with: python data/generate.py
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from pathlib import Path
from statistics import NormalDist

HERE = Path(__file__).resolve().parent
SEED = 7
YEAR_START = 1704067200  # 2024-01-01 00:00:00 UTC
YEAR_END = 1735689599  # 2024-12-31 23:59:59 UTC
SKIPPED_IDS = {13, 47, 48, 112, 160, 161, 162, 205}  # id gaps, as in real catalogues
N_USERS = 150
N_MU, N_SIGMA = 3.6, 0.7  # interactions per user ~ lognormal, clamped to 5..200
POP_EXP = 1.8  # global popularity ~ 1 / rank**POP_EXP (long tail)
LIKED_EXP = 1.4  # fans of a genre chase its hits: weight inside preferred genres = pop**LIKED_EXP
LIKED_CAP = 0.8  # a user rates at most this share of their preferred-genre titles
N_COLD = 4  # catalogue titles nobody has rated yet

# One block per genre: base tags, then one title per record: "name | type[ | extra tags]"
# followed by its summary on indented lines (no summary lines = empty summary).
CATALOGUE: dict[str, tuple[str, str]] = {
    "space_western": (
        "space,western,action",
        """
Starlight Drifter | TV
    A washed-up bounty hunter and his talkative android partner chase warrants across the asteroid frontier, always
    one fuel cell away from bankruptcy.
Starlight Drifter | TV | drama
    A reimagining of the frontier classic: this time the bounty hunter is a young woman who inherits her father's
    debts, his ship and a cranky android that refuses to call her captain.
Dust Saloon Orbit | TV | comedy
    On a space station built around a rusty saloon, a retired gunslinger pours drinks for smugglers, sheriffs and
    the occasional alien outlaw while trying to keep the peace.
Red Mesa Comet | Movie
    A cattle-ranching family on a terraformed Mars mesa hires a silent drifter with a laser revolver when a mining
    syndicate tries to seize their water rights.
Bounty Ledger 88 | TV
    A retired bounty hunter turned flight instructor teaches rookies to pilot getaway ships, until one student turns
    out to be the most wanted woman on the frontier.
Outlaw Nebula Express | Movie
    Train robbery in zero gravity: a gang of outlaws plans to hijack an interplanetary express carrying gold,
    unaware that a deputy marshal is hiding among the passengers.
Six-Shooter Satellite | ONA
    A sharpshooter with a cybernetic eye takes contract jobs for a frontier sheriff on a lawless ring of satellites,
    where every job pays less than promised.
Tumbleweed Starship | TV
    An orphaned mechanic stows away on a bounty hunter's ship and slowly becomes part of its dysfunctional crew as
    they drift from one dusty planet to the next.
Last Sheriff of Kepler Town | TV | drama
    The only lawman left on a failing mining planet refuses to leave, facing off against raiders, corporate agents
    and his own former bounty-hunting partner.
Ryūsei Kaidō | OVA | drama
    A former assassin turned courier races her battered hot-rod spaceship down a smuggling route full of meteor
    storms, haunted by the syndicate she betrayed.
Ghost Town Galaxy | TV | mystery
    A bounty hunter duo lands on an abandoned frontier colony to collect a reward, only to find the wanted man is
    the colony's last survivor.
Coyote Moon Rangers | TV
    Rookie space rangers patrol the wild borderlands of a desert moon, chasing rustlers who steal genetically
    engineered space buffalo.
High Noon at Lagrange Point | Movie | drama
    Two rival bounty hunters who once loved each other agree to a final duel at a lonely space station, while the
    fugitive they both want waits to see who wins.
Saddle of Stars | ONA
    A young cowgirl tames a wild, half-alive starship horse and rides it across the frontier to track down the
    outlaws who burned her town.
Jackpot Bounty Blues | TV | comedy
    A gambling-addicted bounty hunter bets every reward on space poker, dragging his long-suffering crew into debt
    with the most dangerous casino boss in the sector.
""",
    ),
    "mecha": (
        "mecha,military,drama",
        """
Iron Requiem Frontline | TV
    Teenage recruits drafted into a dying war pilot towering combat frames, and every battle shrinks the squad and
    hardens the survivors.
Steelwing Armada | TV | space
    Dogfights between armored frames and battlecruisers rage above a divided Earth as a young ace begins to question
    which side is truly fighting for peace.
Vanguard Zero-Nine | TV
    The ninth prototype mecha chooses a quiet farm boy as its pilot, dragging him into a border war that his older
    brother is fighting on the enemy side.
Colossus Front | OVA
    Infantry soldiers in clumsy walking tanks fight a muddy trench war, a grim look at mecha combat from the bottom
    of the chain of command.
Aegis of the Burning Sky | Movie
    When the orbital ring falls, a disgraced commander leads a ragtag squadron of outdated mechs to protect refugee
    ships from an enemy armada.
Armored Knight Elegy | TV | romance
    A princess pilot and an enemy ace keep meeting on the battlefield, and their duels between giant armored knights
    slowly turn into love letters.
Titan Garrison 7 | ONA
    At a frozen outpost, mechanics and pilots keep ancient giant robots running with scavenged parts while enemy
    scouts probe the perimeter.
Refuge Carrier Aldebaran | TV | space
    A hospital ship hastily fitted with guns carries thousands of wounded civilians across the solar system, guarded
    by three mecha pilots who have never seen combat.
Redline Pilots | TV | psychological
    Child soldiers neurally linked to their mechs discover that the link is erasing their memories, and plan a
    mutiny against the generals who built them.
Warhound Protocol | TV
    A mercenary mecha company takes contracts on both sides of a civil war, until a job escorting a child forces its
    jaded captain to choose a side.
Blue Thunder Division | TV
    An elite squad of amphibious mechs fights island-hopping battles in an ocean war, told through the letters the
    pilots never send home.
Ashen Gear Rebellion | TV
    Miners on a resource colony rebuild construction mechs into weapons and rise against the planetary army,
    sparking a revolution neither side can control.
Skyfall Lancers | Movie
    Transforming aerial mechs defend the last floating city from invading war machines, while the rookie pilot hides
    that she once served the enemy.
Überlast Brigade | OVA
    Overworked engineers in a collapsing empire push experimental mechs far past their limits, sending exhausted
    pilots into battles the high command already knows are lost.
""",
    ),
    "cooking": (
        "slice of life,cooking,comedy",
        """
Kōhai Kitchen Chronicles | TV | school
    A nervous first-year joins her school's cooking club, where a strict senior teaches her to make perfect rolled
    omelettes and, eventually, friends.
Midnight Ramen Stall | TV
    Two sisters restore their late father's ramen stall and spend a year chasing the recipe for his signature broth,
    taste-testing on unsuspecting night-shift workers.
Café Pâtisserie Étoile | TV
    A clumsy baker inherits her grandmother's pastry shop in a seaside town and learns to bake croissants, fruit
    tarts and éclairs with help from the regulars.
Bento for Two | TV
    A high-school boy secretly packs lunches for his overworked older sister, and the notes he tucks under the lid
    slowly mend their rocky relationship.
Grandma's Pickle Jar | ONA | rural
    Three cousins spend a summer at their grandmother's farmhouse, pickling vegetables, brewing miso and
    rediscovering old family recipes.
Curry Road Trip | TV
    Two college friends drive across the country in a borrowed van, hunting down legendary curry shops and cooking
    on a camp stove when money runs low.
The Bakery on Hill Street | TV
    A retired boxer opens a bakery and discovers that kneading bread is harder than any fight, while his gruff
    manner slowly wins over the neighborhood kids.
Tea and Tiny Sweets | Special
    Hana &amp; Mio run a cozy tea house that serves handmade sweets, and every season brings a new dessert, a new
    regular and a small, warm problem to solve.
Onigiri Office | ONA
    An overworked office worker starts bringing homemade rice balls to work, and soon the whole department is
    swapping fillings and lunchtime stories.
Campfire Gourmet | TV | outdoors
    A group of friends who love camping cook elaborate meals over open fires, from dutch-oven stews to smoked trout
    by a mountain lake.
Dumpling Apprentice | TV | drama
    A teenage runaway is taken in by a grumpy dumpling shop owner who teaches her folding techniques, patience and
    how to make broth from scratch.
Soup of the Day | TV
    A hospital cafeteria cook makes a different soup every day for patients and night nurses, and each bowl seems to
    find exactly the person who needs it.
Kitchen Witch Apartment | TV | fantasy
    A young witch rents a tiny city apartment and uses gentle kitchen magic to cook comforting dishes for her lonely
    neighbors.
Shokudō Hinata | OVA | rural
    A family diner in a snowy port town serves simple set meals, grilled fish and homemade soups to fishermen,
    students and travelers looking for warmth.
""",
    ),
    "school_sports": (
        "sports,school,drama",
        """
Net Zero Volley | TV
    A former libero who lost her starting spot at a powerhouse transfers to a tiny school and rebuilds its
    volleyball club around her receiving skills.
Full Count Summer | TV
    A catcher and a wild pitcher with a troubled past lead their rural high-school baseball team toward the national
    summer tournament.
Synchro Splash | TV | comedy
    Four girls revive their school's artistic swimming team in an outdoor pool they have to scrub themselves,
    rehearsing routines to pop songs for a regional meet.
Last Lap Relay | TV
    A track team's anchor runner loses her confidence after a bad fall, and her teammates spend a season helping her
    get back to the starting line.
Kendo Hearts | TV
    A quiet transfer student rebuilds her school's collapsed kendo club, facing rivals who remember her from a
    junior championship she mysteriously abandoned.
Dribble Kings | TV
    A streetball prodigy forced into his school's basketball team must learn passing, defense and trust before the
    winter cup qualifiers.
Rowing for Tomorrow | TV
    An eight-person rowing crew from a struggling coastal school trains at dawn on the river, each rower fighting
    for a reason to keep going.
Service Ace! | TV | comedy
    Tennis doubles partners who can't stand each other must sync their serves and volleys to win the inter-high
    tournament.
Goalkeeper's Promise | Movie
    A soccer goalkeeper promises his hospitalized sister he will win the regional final, but his team has exactly
    eleven players and no coach.
Pitch Black Rugby | TV
    A rugby club of misfits at a rough school finds discipline, brotherhood and plenty of bruises in scrums against
    powerhouse schools.
「とびだせ」Mountain Club | ONA | outdoors
    Climbing club members train on the school bouldering wall and compete in regional sport-climbing meets, learning
    to trust their ropes and each other.
Shuttlecock Spark | TV
    A badminton player with a lightning smash joins a girls' team so short on members that their first goal is
    simply to field a full squad.
Table Tennis Tempest | TV
    A table tennis champion in her seventies coaches a school club of beginners, turning every rally into a lesson
    in spin, nerve and reading the opponent.
Handball Heat | TV
""",
    ),
    "isekai": (
        "isekai,fantasy,adventure",
        """
Reborn as a Village Blacksmith | TV
    An office worker who dies of overwork wakes up in a fantasy world as a village blacksmith, and his modern
    knowledge of metallurgy makes his blades legendary.
Summoned as the Demon Lord's Accountant | TV | comedy
    An accountant summoned to the Demon Lord's castle finds the evil army bankrupt, and starts cutting costs,
    renegotiating minion contracts and auditing the dragons.
The Hero Quit on Day One | TV | comedy
    A teenager summoned to defeat the Demon Lord refuses the job, opens a bakery in the capital, and accidentally
    saves the kingdom anyway.
Level Cap Farmer | TV
    Transported to a game-like world with a useless farming class, a gamer discovers crops that grant stat boosts
    and builds a whole village around them.
Summoned Librarian | TV
    A librarian summoned to serve as royal archivist discovers that the kingdom's history books were rewritten, and
    quietly investigates who erased a whole century.
Otherworld Vet Yūki | TV
    A veterinarian reincarnated in a world of magical beasts opens a clinic for griffins and basilisks, while the
    knights' order wants her to weaponize her patients.
Dungeon Core Landlord | ONA | comedy
    Reincarnated as the sentient core of a dungeon, a former property manager designs traps, rents rooms to monsters
    and negotiates with invading adventurers.
Goodbye Tokyo, Hello Dragon | Movie
    A high-school girl falls through a train door into a world of dragons and must learn to ride one to find the
    portal back home.
Villainess Route Cancelled | TV | romance
    Waking up as the villainess of a dating-sim game, a former lawyer sues the crown prince for breach of contract
    and turns the royal court into a courtroom drama.
Skill Tree Sommelier | TV
    A wine expert summoned to another world gets a tasting skill that identifies poisons, curses and lies, making
    him the king's most valued adviser.
Second Life on the Jelly Ranch | TV | slice of life
    After a traffic accident, a man wakes up in a frontier town as a rancher of bouncing magical jelly creatures and
    slowly turns the ranch into a thriving business.
Isekai Bus Route 9 | TV | survival
    An entire city bus, driver and passengers included, is transported to a fantasy world, and the strangers must
    survive together with one bus full of supplies.
Back from Another World, Now What? | TV | comedy
    A hero returns to modern Japan after ten years of saving a fantasy kingdom, only to struggle with job
    interviews, taxes and his overpowered magic.
Cheat Skill: Infinite Inventory | TV
    Gifted with a bottomless bag, a reincarnated merchant becomes the supply line of an entire adventurer army and
    gets entangled in a war between kingdoms.
""",
    ),
    "horror": (
        "horror,supernatural,mystery",
        """
Yūrei Apartment 404 | TV
    A college student rents an unbelievably cheap apartment and discovers room 404 is shared with a silent ghost who
    rearranges her furniture every night.
The Well Behind the School | TV | school
    Students who dare to peer into an old well behind their school start receiving phone calls from classmates who
    died decades ago.
Crimson Lantern Festival | Movie
    During a rural summer festival, masked villagers begin to vanish one by one, and a visiting girl realizes the
    masks are not costumes.
Static Channel 13 | OVA
    A late-night TV channel that shouldn't exist broadcasts footage of its viewers' deaths, and a cameraman hunts
    for its source before his turn comes.
Hollow Doll House | TV
    A puppet maker's abandoned workshop holds dolls that move when no one is looking, and the family that buys the
    house learns why the last owners fled.
Rot Garden | OVA
    A botanist trapped in a quarantined greenhouse watches the plants grow hungry as her colleagues, one by one,
    begin to take root.
Whispering Tunnel Route | TV
    A night-bus driver on a mountain route keeps picking up passengers who get off at a station that was demolished
    after a landslide.
Nine Lanterns, Nine Graves | TV
    An exorcist and her apprentice visit nine haunted villages, each story darker than the last, following a curse
    that leads back to her own family.
The Smiling Neighbor | ONA
    A boy notices that his new neighbor never blinks, never sleeps and always knows exactly what his family ate for
    dinner.
Mirror Hour | TV
    At 3:33 a.m. the reflections in a girls' dormitory stop copying their owners, and the students must figure out
    what the mirrors want.
Blood Tide Island | Movie | survival
    Stranded on a fishing island during a typhoon, a group of tourists discovers that the locals offer a sacrifice
    to the sea every year.
Paper Talisman Girl | TV
    A shrine maiden who cannot see ghosts relies on a possessed notebook to guide her through exorcisms that grow
    steadily more gruesome.
Cradle of Teeth | OVA
    A pregnant woman moves to her husband's ancestral village, where every newborn is examined by an old midwife for
    signs of something inhuman.
Lights Out Hospital | TV
    Night staff at a closing hospital find that the emptied wards are not empty, and that patients discharged years
    ago are coming back.
""",
    ),
    "magical_girl": (
        "magical girl,fantasy,action",
        """
Prism Heart Seraphina | TV
    An ordinary middle-schooler receives a prism brooch from a talking fox and transforms into a guardian who
    purifies nightmares before they reach the waking world.
Magical Girl Retirement Plan | TV | comedy
    At twenty-eight, a veteran magical girl is still fighting monsters because nobody will take over, so she starts
    interviewing teenage successors.
Starry Ribbon Brigade | TV
    Five friends with ribbon wands and star-themed transformations defend their seaside town from a queen who steals
    people's dreams.
Moonlit Witch Academy | TV | psychological
    A girl accepted into a secret school for magical guardians learns that every graduate signs a contract with a
    price nobody talks about.
Candy Cane Crusaders | TV | comedy
    Three sweets-loving girls transform with candy compacts and battle sugar-rush monsters born from children's
    tantrums.
Lumière Guardian Lili | TV
    A French exchange student in Tokyo is chosen by a spirit of light, and must balance language homework with
    battles against shadow beasts.
Sakura Blade Sisters | TV
    Twin sisters share a single transformation wand and must take turns fighting, which works fine until they stop
    speaking to each other.
Wish Contract Noir | TV | psychological
    Magical girls in a rundown port city are paid by a shady agency for every monster they defeat, until one veteran
    starts asking where the monsters come from.
Pastel Thunder Patrol | ONA | comedy
    A shy girl with weather powers joins an after-school squad of magical girls who fight storm demons and then go
    out for crepes.
Mirror Magi Mina | Movie
    A girl who can step through mirrors uses her magical compact to rescue children trapped in a reflected world
    ruled by a lonely queen.
Little Star Knight Aoi | TV
    A nine-year-old becomes the youngest star knight ever and fights alongside teenage magical girls who refuse to
    take her seriously.
Garden Fairy Mahou | TV
    A gardening-club girl befriends a flower fairy and transforms into a guardian of nature to protect her city's
    parks from a polluting sorcerer.
Ribbon Rose Revolution | OVA
    A magical girl who defeated the final villain years ago must transform again when the villain's daughter turns
    up at her high school.
Twinkle Idol Magica | TV | idol,music
    A pop idol by day and a magical warrior by night, Rina uses her songs to power her transformations, but growing
    fame makes her secret hard to keep.
""",
    ),
    "detective": (
        "mystery,detective,thriller",
        """
Detective Koma's Casebook | TV
    A retired detective who now runs a used bookshop solves local crimes by noticing the small details everyone else
    ignores.
The Locked Room Club | TV | school
    Four high-school students in a mystery-novel club investigate real locked-room murders that the police have
    written off as accidents.
Fog Over Harbor City | TV | historical
    A rookie detective in 1920s Harbor City hunts a serial killer who leaves a chess piece at every crime scene.
Alibi Café | TV
    A barista who remembers every customer's order becomes the key witness in a string of thefts, and teams up with
    an inspector to break fake alibis.
Case File: Hanamizuki | TV
    A quiet forensic scientist and a loud street cop investigate murders tied to a twenty-year-old cold case in a
    Tokyo neighborhood.
The Butler Did Not Do It | TV | comedy
    A retired cat burglar working as a hotel butler quietly solves the crimes of his guests, careful never to reveal
    how he knows so much about locks.
Trainbound Deduction | TV
    Every episode a young detective nicknamed &quot;the Conductor&quot; rides the same long-distance express, and
    every trip ends with a corpse and a closed list of suspects.
Shadow Ledger | Special
    An accountant notices impossible numbers in a company's books and uncovers a murder disguised as a bankruptcy.
Midnight Coroner | TV
    A coroner who can tell exactly how people died, but never why, partners with a disgraced detective to reopen
    suspicious deaths.
Inspector Noé and the Clockwork Thief | Movie
    In a steam-powered Paris, Inspector Noé chases a gentleman thief who leaves riddles written inside broken pocket
    watches.
Footprints in the Snow | OVA
    A snowed-in mountain lodge, seven guests and one body: a university student with a perfect memory must find the
    killer before the storm clears.
Cold Case Nights | ONA
    A true-crime podcaster and a retired homicide detective revisit unsolved murders, and one of their listeners
    seems to know far too much.
Little Sleuth Hinata | TV | comedy
    A sharp-eyed ten-year-old helps her police-officer father crack cases, from missing cats to a kidnapping at the
    town festival.
Cipher at Hollow Bay | TV
    A cryptographer decodes messages hidden in newspaper crosswords that predict murders in a sleepy fishing town.
""",
    ),
    "idol": (
        "music,idol,drama",
        """
Starlight Stage Seven | TV
    Seven trainees at a struggling talent agency have one year to debut as an idol group before the company shuts
    its doors.
Encore! Backstage Hearts | TV
    A stage manager who once dreamed of singing looks after a chaotic idol unit, until one night she has to take the
    microphone herself.
Neon Melody Unit | TV
    Three rival solo idols are forced into a single group by their agency, and their harmonies must survive constant
    arguments.
Countryside Idol Project | TV | comedy,rural
    Girls from a fading farming town become local idols to promote their rice and tourism, singing in rice paddies
    and sleepy shopping streets.
Prism Mic Duet | TV
    A shy songwriter and a loud dancer form an idol duo, climbing from shopping-mall stages to a sold-out dome
    concert.
Heartbeat Audition | TV
    A reality-show competition follows forty hopefuls fighting for nine spots in a new idol group, with friendships
    tested at every elimination.
Virtual Diva Ren | ONA | sci-fi
    A virtual idol program starts writing its own songs, and the struggling producer who built it must decide
    whether it is alive.
Boys of the Spotlight | TV
    A boy band from a small agency grinds through dance practice, variety shows and a scandal that threatens their
    first tour.
Harmony Hall Girls | TV
    Idol trainees living in a dorm above a concert hall push each other through vocal lessons, strict diets and
    heartbreak.
Silver Bird Live! | TV | comedy
    Three grandmothers in a retirement home form an idol unit after a karaoke night goes viral, and their
    grandchildren become their overwhelmed managers.
Rockstar Idol Reboot | Movie
    A disbanded idol group reunites ten years later, now with day jobs and kids, for one final comeback concert.
Melody Crown Festival | TV
    Idol groups from every region compete in a national festival, and an underdog unit from a fishing town aims for
    the crown.
Spotlight Stealers | ONA | comedy
    An idol manager secretly runs a second, rival group to boost ratings, until the members of both groups discover
    the truth.
Canción de Estrellas | TV
    A Spanish-Japanese singer moves to Tokyo and mixes flamenco guitar into idol pop, winning fans while fighting a
    label that wants her generic.
""",
    ),
    "samurai": (
        "historical,samurai,action",
        """
Blade of the Wandering Ronin | TV
    A masterless samurai with a broken sword wanders Edo-period villages, protecting farmers from bandits while
    searching for his lord's killer.
Crimson Katana Chronicle | TV | drama
    During the Warring States era, a young swordswoman disguised as a man rises through a warlord's army to avenge
    her burned village.
Shōgun's Shadow | TV
    A ninja bodyguard protects a child shogun from palace assassins while rival factions plot a civil war.
Thirteen Ronin of Iga | Movie
    Thirteen disgraced samurai agree to defend a mountain pass against a warlord's army of thousands, knowing few of
    them will survive.
Tea Master's Blade | TV | drama
    A gentle tea ceremony master who was once the most feared swordsman in Kyoto is forced to draw his blade again.
Rainfall Duel | OVA
    Two swordsmen who trained under the same master meet again after twenty years, now on opposite sides of a
    rebellion.
Ronin and the Fox Child | TV | supernatural
    A weary ronin escorts a fox-eared child across war-torn provinces to her mountain shrine, pursued by demon
    hunters.
The Last Castle Siege | Movie | drama
    Told from inside a besieged castle, the defenders ration rice and arrows while their lord agonizes over
    surrender.
Sword of the Bakumatsu | TV
    In the final days of the shogunate, a young member of a Kyoto police squad fights rebels while doubting the
    cause he serves.
Wind Cutter Kaede | TV
    A peasant girl trained in secret by an exiled sword master enters a deadly tournament held by the shogun.
Bloodmoon Bushidō | TV | supernatural
    A samurai cursed to relive the night his clan was massacred tries a different path each time to save them.
Pirates of the Seto Sea | TV | adventure
    Samurai turned pirates raid merchant ships on the inland sea, caught between rival lords who both want their
    fleet.
Ink and Steel | OVA | drama
    A calligrapher samurai writes the history of his dying clan while fighting in its final battles.
Silent Bell Swordsman | TV
    A mute swordsman who wears a bell on his scabbard hunts the bandit lord who maimed him, and the bell rings only
    when he kills.
""",
    ),
    "romcom": (
        "romance,comedy",
        """
Love Letters in the Wrong Locker | TV | school
    A girl slips a confession letter into the wrong locker, and the boy who receives it decides to help her deliver
    it to the right one.
My Fake Girlfriend Is Too Competitive | TV | school
    Two class rivals pretend to date to escape their families&#39; matchmaking, but they can&#39;t stop turning
    every date into a contest.
Seat Next to the Window | TV | school
    A shy boy and the popular girl who sits beside him communicate only through notes passed during class.
Student Council Sweethearts | TV | school
    The strict student council president and the lazy treasurer clash over every budget, while everyone else notices
    they are obviously in love.
One Umbrella, Two Hearts | ONA | school
    Every rainy day a girl forgets her umbrella and shares one with the same quiet boy, until she realizes she is
    forgetting on purpose.
Childhood Friend Clause | TV | school
    Two childhood friends once promised to marry at twenty if neither found love, and with graduation approaching
    they both start to panic.
Roommate Rules! | TV | slice of life
    Through a housing mix-up, a neat freak and a chaotic artist share an apartment and a list of increasingly absurd
    house rules.
Confession Countdown | TV | school
    A boy has thirty days before transferring schools to confess to his crush, but every attempt gets interrupted in
    ridiculous ways.
Lunch Break Lovers | TV | school
    A boy and a girl from rival schools meet every lunch break on the same park bench, trading sandwiches and
    insults.
Too Honest Tanaka | TV | school
    A boy who physically cannot lie falls for a girl who keeps asking questions he would rather not answer.
Library Card Romance | OVA | school
    The library committee's quiet girl and a delinquent who keeps returning books late slowly become friends, then
    something more.
Date Rehearsal Club | TV | school
    A club that helps students practice confessions and first dates is run by two members who have never been on a
    date.
Love Is a Group Project | TV | school
    Four mismatched classmates assigned to a semester-long project end up in a tangled love square.
Valentine's Mix-Up | Special
    One box of homemade chocolates passes through six pairs of hands on Valentine's Day, and every handoff starts a
    new romance.
""",
    ),
    "cyberpunk": (
        "cyberpunk,sci-fi,thriller",
        """
Neon Rain Precinct | TV
    A rookie detective with a secondhand cybernetic eye keeps seeing ads no one else can see, and follows them to a
    cult hiding inside the city's ad network.
Chrome Alley Runners | TV | action
    Street kids with cheap cybernetic legs work as couriers for data smugglers, dodging corporate security drones
    across the rooftops.
Synthetic Saints | TV | drama
    An android nun in a slum church protects orphans from organ brokers, while wondering whether her faith is just
    code.
Glitch City 2099 | TV
    A hacker trapped in a city-wide augmented-reality network discovers that half the citizens she talks to are
    corporate bots.
Deadline Megacorp | Movie
    A corporate security agent is ordered to erase a whistleblower, then finds her own memories were edited by the
    same company.
Wired Ronin | TV | action
    A cybernetically enhanced swordsman sells his services to gangs in a neon port city while hunting the black-
    market doctor who built his arm.
Blackout Syndicate | TV
    When the city power grid is hacked, a crew of underground netrunners races rival gangs to steal the master key.
Twin Signal Sisters | TV
    Two orphaned sisters, one human and one an uploaded mind living in her sister's implant, pull heists against
    data brokers.
Pixel Rain | OVA | psychological
    A memory-editing clinic offers to delete heartbreak, and a technician notices the same stolen memory surfacing
    in different clients.
Vertical Slum Circuit | TV
    In a tower city where altitude equals wealth, a bottom-floor mechanic builds an illegal racing drone to climb
    the social ladder.
Augment Addict | ONA | action
    A boxer who cannot afford upgrades fights in underground cyborg matches, trading pieces of his body for prize
    money.
Firewall Heart | TV | romance
    An AI security program falls for the hacker it is supposed to stop, and starts quietly leaving her backdoors.
Data Angel Sigma | TV
    A rogue AI running on thousands of stolen phones hires human mercenaries to free other AIs from corporate
    servers.
Smog Line Police | TV
    Cops in a polluted lower city patrol with cheap augments and bad coffee, while the corporate upper city ignores
    every case they file.
""",
    ),
    "fantasy": (
        "fantasy,adventure,magic",
        """
The Cartographer's Dragon | TV
    A young mapmaker and an elderly dragon who forgot where he hid his hoard journey together across uncharted
    kingdoms.
Sword of the Seven Winds | TV | action
    A farm girl who pulls an ancient sword from a lake gathers six companions to stop a storm god from drowning the
    world.
Apprentice of the Ember Tower | TV
    A boy with no talent for magic becomes an apprentice at a wizard's tower, where he discovers a forbidden fire
    spell sleeping in his blood.
The Knight Who Carried Bandages | TV | drama
    A cursed knight who can no longer hold a sword travels with a wandering circus as its medic, patching up
    performers, villagers and the odd wounded dragon.
Guild of Lost Adventurers | TV | comedy
    A broke adventurers' guild in a border town takes any job, from escorting chickens to slaying wyverns, with
    hilariously mixed success.
Crown of Thorns and Frost | TV
    Two royal heirs from enemy kingdoms must cross a frozen wasteland together after their airship crashes.
The Beast Tamer's Oath | TV
    A beast tamer exiled from her tribe raises a griffin chick and sets out to prove the old prophecies wrong.
Runes of the Sunken City | OVA
    Treasure hunters dive into a flooded elven city whose walls are covered in runes that rewrite reality when read
    aloud.
Moonwell Pilgrimage | Movie
    Five pilgrims (a knight, a thief, a priest, a bard and a goblin) travel to a sacred well that grants a single
    wish.
Dragonbone Academy | TV | school
    Students at a magic academy built inside a dragon's skeleton learn spellcraft while rumors spread that the
    dragon is waking up.
The Witch of the Salt Marsh | TV
    A reclusive witch who trades spells for secrets takes in a runaway prince and teaches him magic that always has
    a price.
Quest for the Ninth Star | TV
    A fallen star shattered into nine shards, and a thief and a paladin race rival kingdoms to recover every piece.
Tales of the Wyvern Post | ONA | slice of life
    Couriers riding wyverns deliver letters across a sprawling fantasy continent, and every delivery reveals a
    small, bittersweet story.
Sorcerer's Last Apprentice | TV
    The last apprentice of a dead archmage must finish his master's unfinished spell before the demons it was
    holding back escape.
""",
    ),
    "psychological": (
        "psychological,thriller,survival",
        """
Zero Sum Classroom | TV | school
    A class of thirty students wakes up locked inside their school and is told that only those with the most votes
    by morning may leave.
Liar's Auction | TV
    Debt-ridden players bid with years of their lives in an underground auction where every lot hides a lie.
The Ninth Floor Game | TV
    Strangers trapped in an office tower must solve puzzles floor by floor, while the elevator punishes anyone who
    lies to it.
Mindlock | Movie | mystery
    A psychiatrist treating a serial killer realizes that her patient is slowly reshaping her memories during their
    sessions.
Island of Rules | TV
    Castaways find a stone tablet of rules that enforce themselves, and the group splits over who gets to write the
    next one.
Cardgame of the Condemned | TV
    Death-row inmates are offered freedom if they win a card game against each other, and the loser of each round is
    executed on the spot.
Echo Chamber Theory | ONA
    A college student who can hear other people's thoughts slowly loses track of which ideas in her head are her
    own.
Red Thread Lottery | TV
    Every month a city lottery erases one citizen from everyone's memory, and a boy who still remembers his erased
    sister fights back.
Black Box Hotel | TV | mystery
    Guests at a luxury hotel discover that they are subjects in a psychological experiment and that checking out is
    not allowed.
Paradox Exam | OVA
    Students sitting a university entrance exam realize the questions describe crimes they will commit in the
    future.
Closing Time Market | TV
    In a sealed shopping mall, teams compete for food using a currency of betrayal points.
Nightmare Debtor | TV | supernatural
    A gambler who owes money to a dream broker must survive nightly games played inside other people's nightmares.
Seventh Sense Trial | TV | mystery
    Seven strangers with psychic abilities are locked in a courtroom and must prove which of them committed a
    murder.
Quiet Room Protocol | Special
    A man wakes in an isolation cell with no memory, receiving notes that claim he volunteered for this and must not
    leave.
""",
    ),
    "iyashikei": (
        "slice of life,iyashikei,rural",
        """
Lighthouse Keeper's Daughter | TV
    A girl and her father tend a lonely lighthouse on a small island, where days are measured in ferry visits,
    seagulls and quiet dinners.
Slow Train to Hanamura | TV
    A burnt-out illustrator moves to a mountain village on a single-track railway and learns to draw again among
    rice fields and elderly neighbors.
Firefly River Summer | TV
    Four kids spend a lazy summer catching fireflies, fishing and building a raft on the river behind their
    grandmother's house.
Snowy Cabin Diaries | OVA
    A writer spends a winter in a snowed-in cabin with a stray cat, chopping wood and writing long letters to an old
    friend.
The Tea Fields on the Hill | TV
    A high-school girl helps her family harvest tea leaves, learning the slow craft of roasting and the rhythm of
    the seasons.
Bicycle Postwoman | TV
    A young postwoman delivers mail by bicycle across a quiet seaside town, lingering for tea and gossip at every
    house.
Lakeside Camper Van | TV | outdoors
    A retired couple travel in a tiny camper van, parking by a different lake each month and befriending the
    anglers, farmers and stray dogs they meet.
Island Cat Ferry | ONA
    Cats ride the ferry between small islands in an old fishing community, and the ferry captain knows every one of
    them by name.
Autumn Leaves Inn | TV
    A family runs an old hot-spring inn in a mountain valley, welcoming guests through one slow, golden autumn.
Gardening with Grandpa | TV
    A boy spends a year helping his grandfather restore an abandoned vegetable garden, learning patience one tomato
    at a time.
Stargazing Rooftop | TV | school
    Three friends in a small town climb onto their school rooftop every clear night to map the constellations and
    talk about the future.
Rainy Season Bookshop | Special
    An elderly couple runs a tiny secondhand bookshop where customers shelter from the June rains and share their
    stories.
Mori no Kōbō | TV
    A woodworker in a forest workshop carves chairs, spoons and toys for the villagers, and each piece carries a
    small story.
Sunday Fishing Club | TV | comedy
    Retired men and one curious teenager gather at the harbor every Sunday to fish, share thermos coffee and swap
    tall tales.
""",
    ),
    "post_apocalyptic": (
        "post-apocalyptic,sci-fi,survival",
        """
Rust Caravan | TV
    A caravan of traders crosses a desert of collapsed highways, bartering clean water and protecting a girl who
    remembers the world before.
Ashland Walkers | TV | action
    Survivors of a nuclear winter trek south toward a rumored green valley, hunted all the way by raiders in gas
    masks.
The Last Library of Earth | Movie | drama
    A robot librarian guards the world's last books in an empty city, until a tribe of children arrives asking to
    learn to read.
Drowned Tokyo Diary | TV
    Years after the seas rose, two sisters row between the rooftops of a flooded Tokyo, scavenging and trading for
    medicine.
Radio Mañana | TV | music
    A girl broadcasting music and news from an abandoned radio tower becomes the voice that connects scattered
    survivor camps.
Seed Vault Runners | TV
    Scavengers race to reach a legendary seed vault that could restart farming, while a cult insists the world
    should stay dead.
After the Bloom | TV | horror
    A fungal bloom turned most people into silent statues, and a boy and his dog travel through the frozen crowds
    looking for his mother.
Iron Sky Scavengers | ONA | action
    Salvagers pick through fallen satellites in the ruins of a megacity, racing dust storms and robot sentries still
    following old orders.
Bunker 77 | TV | mystery
    After sixty years underground, the residents of a bunker open the door and find the surface very different from
    what they were promised.
Dust Bowl Express | TV
    A steam train converted into a fortress runs the only rail line across a ruined continent, carrying passengers,
    cargo and secrets.
Green Zero | OVA
    In a world where plants went extinct, a scientist finds a single growing sprout and must protect it from
    everyone who wants it.
Endless Winter Convoy | TV
    Truckers haul fuel across an ice-age wasteland, fighting cold, hunger and each other on the long road to the
    equator.
Empty City Patrol | TV
    Two androids left behind by humanity keep patrolling an empty city, still obeying a government that no longer
    exists.
Salvage Kids | TV
    A gang of orphans repairs old machines in a junkyard settlement, dreaming of fixing a plane and flying beyond
    the wasteland.
""",
    ),
}

# How users describe their taste (bios) and what they write about each genre.
FANDOM = {
    "space_western": "space westerns and anything with bounty hunters",
    "mecha": "mecha war dramas",
    "cooking": "cozy cooking shows",
    "school_sports": "high-school sports anime",
    "isekai": "isekai, the sillier the better",
    "horror": "horror that ruins my sleep",
    "magical_girl": "magical girl shows",
    "detective": "detective mysteries",
    "idol": "idol shows and anything with concerts",
    "samurai": "samurai period dramas",
    "romcom": "romantic comedies",
    "cyberpunk": "cyberpunk and neon-soaked sci-fi",
    "fantasy": "big fantasy adventures",
    "psychological": "mind games and death-game thrillers",
    "iyashikei": "slow, healing countryside shows",
    "post_apocalyptic": "post-apocalyptic survival stories",
}

# genre -> (things fans say, things people who disliked it say)
GENRE_COMMENTS: dict[str, tuple[list[str], list[str]]] = {
    "space_western": (
        ["loved the dogfights", "the bounty hunter crew feels like family", "that saloon shootout was perfect",
         "jazz and spaceships, what more do you want", "¡qué bueno! best duel of the year"],
        ["westerns in space just aren't for me", "too many shootouts, too little plot", "the crew never grew on me"],
    ),
    "mecha": (
        ["the robot battles hit hard", "heavy war drama, loved every minute", "the letters episode destroyed me",
         "the mech designs are gorgeous"],
        ["too much military jargon for me", "robot fights got repetitive", "so bleak I had to stop"],
    ),
    "cooking": (
        ["made me so hungry", "watched it with dinner, perfect combo", "cozy and warm, I even tried a recipe",
         "the crème brûlée episode was perfect"],
        ["nice food but nothing happens", "too slow for me", "basically a cooking tutorial"],
    ),
    "school_sports": (
        ["the final match had me screaming", "great team chemistry", "made me want to join a club again",
         "the training arc was so satisfying"],
        ["sports anime are not my thing", "every match feels the same", "too much shouting"],
    ),
    "isekai": (
        ["fun power fantasy, no regrets", "the worldbuilding is better than it looks",
         "laughed a lot at the opening episode", "comfy isekai, great for weekends"],
        ["another overpowered protagonist, skip", "generic isekai stuff", "the game-menu gimmick got old fast"],
    ),
    "horror": (
        ["genuinely creepy, slept with the lights on", "the atmosphere is unreal", "that twist gave me chills",
         "best horror I saw this year"],
        ["too gory for me", "more jump scares than story", "couldn't finish it, too disturbing"],
    ),
    "magical_girl": (
        ["the transformation sequences are gorgeous", "darker than it looks and better for it",
         "the friendship between the girls is the best part", "cute and surprisingly emotional"],
        ["too childish for me", "monster of the week gets boring", "couldn't get into the magical girl stuff"],
    ),
    "detective": (
        ["didn't guess the culprit at all", "clever deductions every episode",
         "great cat-and-mouse between detective and thief", "the locked-room case was brilliant"],
        ["guessed the killer in episode one", "too many talky explanations", "the mysteries felt cheap"],
    ),
    "idol": (
        ["the concert episodes are amazing", "that encore was 最高", "the songs are stuck in my head",
         "cried at the debut stage"],
        ["idol stuff is not for me", "the music is fine but the drama is thin", "the dance animation is stiff"],
    ),
    "samurai": (
        ["the sword duels are beautifully animated", "a proper period drama, loved it", "quiet, heavy and gorgeous",
         "that final duel in the rain"],
        ["too slow and too talky", "historical stuff just isn't my thing", "too much blood for me"],
    ),
    "romcom": (
        ["so sweet, I was smiling the whole time", "the banter is hilarious", "finally they confessed",
         "best couple of the season"],
        ["too much will-they-won't-they", "the misunderstandings got annoying", "romance isn't really my genre"],
    ),
    "cyberpunk": (
        ["the neon city visuals are stunning", "smart sci-fi with great atmosphere", "the hacking scenes are so cool",
         "dark, stylish and clever"],
        ["too confusing to follow", "style over substance", "too bleak and cold for me"],
    ),
    "fantasy": (
        ["felt like a real adventure", "the world is so rich and detailed", "loved the party dynamics",
         "the dragon scenes are breathtaking"],
        ["generic fantasy quest", "too long, too many names", "the magic system made no sense"],
    ),
    "psychological": (
        ["couldn't stop watching, so tense", "the mind games are brilliant", "messed with my head in a good way",
         "every episode ends on a cliffhanger"],
        ["too stressful for me", "the twists stopped making sense", "cruel just for shock value"],
    ),
    "iyashikei": (
        ["so relaxing, perfect before bed", "nothing happens and I love it", "like a warm blanket",
         "the scenery is gorgeous"],
        ["literally nothing happens", "fell asleep twice", "too slow for me"],
    ),
    "post_apocalyptic": (
        ["bleak but hopeful, loved it", "the ruined world looks amazing", "survival tension done right",
         "the robot and the kids made me cry"],
        ["too depressing", "just wandering around ruins", "another wasteland story, nothing new"],
    ),
}
GENERIC_POS = ["loved it", "instant favourite", "rewatching this for sure", "the ending got me",
               "great soundtrack too", "最高! the finale wrecked me"]
GENERIC_MID = ["fine, not great", "good first half, messy second half", "some strong episodes, some filler",
               "ok for background watching", "the art carried it", "solid but forgettable"]
GENERIC_NEG = ["too slow for me", "dropped it after three episodes", "not my thing", "the pacing killed it",
               "couldn't care about anyone", "overhyped"]

# country -> (weight, given names, family names)
COUNTRIES: dict[str, tuple[int, list[str], list[str]]] = {
    "Japan": (20, ["Haruto", "Yui", "Sota", "Aoi", "Ren", "Mei", "Kaito", "Sakura", "Yūto", "Hina"],
              ["Sato", "Takahashi", "Ito", "Watanabe", "Kobayashi", "Mori", "Ōta", "Shimizu"]),
    "United States": (24, ["Tyler", "Madison", "Jordan", "Kayla", "Marcus", "Emily", "Dylan", "Alyssa"],
                      ["Miller", "Johnson", "Brooks", "Reyes", "Carter", "Nguyen"]),
    "Brazil": (10, ["João", "Ana", "Lucas", "Beatriz", "Gabriel", "Larissa", "Thiago"],
               ["Silva", "Souza", "Oliveira", "Conceição", "Pereira", "Lima"]),
    "Germany": (8, ["Lukas", "Lena", "Jonas", "Mia", "Felix", "Hannah"],
                ["Müller", "Schmidt", "Becker", "Hoffmann", "Schäfer"]),
    "France": (8, ["Camille", "Théo", "Léa", "Hugo", "Chloé", "Louis"],
               ["Martin", "Bernard", "Lefèvre", "Moreau", "Girard"]),
    "Mexico": (8, ["José", "María", "Diego", "Valeria", "Andrés", "Ximena"],
               ["Peña", "Hernández", "García", "López", "Núñez"]),
    "Philippines": (10, ["Miguel", "Angelica", "Paolo", "Kristine", "Joshua", "Bea"],
                    ["Santos", "Cruz", "Bautista", "Villanueva", "Garcia"]),
    "South Korea": (6, ["Minjun", "Seoyeon", "Jiho", "Haeun", "Dohyun", "Yuna"],
                    ["Kim", "Lee", "Park", "Choi", "Jung"]),
    "Poland": (5, ["Łukasz", "Zofia", "Kacper", "Julia", "Mateusz", "Natalia"],
               ["Nowak", "Kowalczyk", "Zając", "Wójcik", "Mazur"]),
    "United Kingdom": (8, ["Oliver", "Amelia", "Harry", "Isla", "George", "Freya"],
                       ["Smith", "Taylor", "Evans", "Hughes", "Wright"]),
    "Indonesia": (7, ["Budi", "Siti", "Rizky", "Putri", "Adi", "Dewi"],
                  ["Santoso", "Wijaya", "Pratama", "Saputra", "Hidayat"]),
}
# (self-description, min age, max age)
BIO_OPENERS = [
    ("Night-shift nurse", 23, 60), ("Second-year engineering student", 18, 24), ("Retired teacher", 58, 99),
    ("Freelance illustrator", 20, 60), ("Warehouse worker", 18, 60), ("High-school student", 15, 18),
    ("Software tester", 21, 55), ("Dad of two", 27, 60), ("Barista", 17, 40),
    ("Grad student in marine biology", 22, 32),
    ("Bus driver", 24, 65), ("Part-time translator", 19, 60), ("Line cook", 17, 55), ("Librarian", 23, 65),
    ("Indie game developer", 18, 50), ("Nursing student", 18, 28), ("Accountant", 23, 65),
    ("Stay-at-home mom", 24, 55), ("Music teacher", 23, 65), ("Delivery rider", 17, 45), ("Middle-school kid", 12, 15),
]
BIO_TEMPLATES_ONE = [
    "{opener} who mostly watches {g1}.",
    "{opener}, here for {g1}.",
    "Big fan of {g1}. {opener} in real life.",
    "{opener}. Honestly I only watch {g1}.",
]
BIO_TEMPLATES_TWO = [
    "{opener}. Into {g1}; {g2} too.",
    "{opener}; I binge {g1} on weekends and {g2} when I can't sleep.",
    "{opener}. Came for {g1}, stayed for {g2}.",
    "{opener} who mostly watches {g1}, plus {g2} now and then.",
]
BIO_EXTRAS = [
    "Always looking for recommendations.", "Subs over dubs, always.", "I drop shows that drag after three episodes.",
    "Rewatching old favourites every winter.", "Ratings are honest, not harsh.",
    "Watching through my backlog one season at a time.", "Will talk about soundtracks forever.",
    "Mostly watching on the train.",
]
BIO_PLAIN = ["Just here to track what I watch.", "Casual viewer.", "Trying to watch more this year.",
             "My sister made me sign up."]
EPISODES = {
    "TV": [10, 11, 12, 12, 12, 13, 13, 24, 24, 25, 26, 26, 39, 50],
    "ONA": [6, 8, 10, 12, 15, 24],
    "OVA": [1, 2, 3, 4, 6],
    "Special": [1, 1, 2, 3],
    "Movie": [1],
}


def parse_catalogue() -> list[dict]:
    """Turn the CATALOGUE text blocks into item dicts (without ids)."""
    items: list[dict] = []
    for genre, (base, block) in CATALOGUE.items():
        for line in block.strip("\n").splitlines():
            if line.startswith(" "):
                items[-1]["summary"] = (items[-1]["summary"] + " " + line.strip()).strip()
                continue
            name, kind, *extra = line.split(" | ")
            tags = base.split(",") + (extra[0].split(",") if extra else [])
            items.append({"genre": genre, "name": name, "tags": ",".join(dict.fromkeys(tags)),
                          "type": kind, "summary": ""})
    return items


def build_catalogue(rng: random.Random) -> list[dict]:
    """Shuffle the titles, assign non-contiguous ids and episode counts."""
    items = parse_catalogue()
    rng.shuffle(items)
    ids = (i for i in range(1, 10_000) if i not in SKIPPED_IDS)
    for item, item_id in zip(items, ids, strict=False):
        item["id"] = item_id
        item["episodes"] = rng.choice(EPISODES[item["type"]])
    return items


def build_users(rng: random.Random) -> list[dict]:
    """Invent users with 1-3 preferred genres, a writing style and a bio."""
    genres = list(CATALOGUE)
    genre_weights = [rng.uniform(0.5, 2.0) for _ in genres]
    countries = list(COUNTRIES)
    # Interactions per user: lognormal quantiles (stable skew: 5 to ~200), shuffled over users.
    dist = NormalDist(N_MU, N_SIGMA)
    counts = [max(5, min(200, round(math.exp(dist.inv_cdf((q + 0.5) / N_USERS))))) for q in range(N_USERS)]
    counts[-2:] = [rng.randint(185, 200), rng.randint(185, 200)]  # two superfans rate almost everything
    rng.shuffle(counts)
    users: list[dict] = []
    seen: set[str] = set()
    for uid in range(1, N_USERS + 1):
        country = rng.choices(countries, weights=[COUNTRIES[c][0] for c in countries])[0]
        _, given, family = COUNTRIES[country]
        name = f"{rng.choice(given)} {rng.choice(family)}"
        while name in seen:
            name = f"{rng.choice(given)} {rng.choice(family)}"
        seen.add(name)
        count = counts[uid - 1]  # heavy viewers have broader taste
        weights = [6, 4, 0] if count < 15 else [1, 6, 3] if count < 35 else [0, 3, 7] if count < 70 else [0, 0, 1]
        k = rng.choices([1, 2, 3], weights=weights)[0]
        prefs: list[str] = []
        while len(prefs) < k:
            genre = rng.choices(genres, weights=genre_weights)[0]
            if genre not in prefs:
                prefs.append(genre)
        age = int(rng.triangular(15, 61, 23))
        roll = rng.random()
        if roll < 0.12:
            bio = ""
        elif roll < 0.2:
            bio = rng.choice(BIO_PLAIN)
        else:
            opener = rng.choice([o for o, lo, hi in BIO_OPENERS if lo <= age <= hi])
            templates = BIO_TEMPLATES_TWO if len(prefs) > 1 else BIO_TEMPLATES_ONE
            g2 = FANDOM[prefs[1]] if len(prefs) > 1 else ""
            bio = rng.choice(templates).format(opener=opener, g1=FANDOM[prefs[0]], g2=g2)
            if rng.random() < 0.4:
                bio += " " + rng.choice(BIO_EXTRAS)
        users.append({
            "user_id": uid, "name": name, "age": age, "country": country, "bio": bio,
            "prefs": prefs, "n": count, "style": rng.choice(["plain", "lower", "excited", "lower"]),
            "comment_p": rng.choice([0.2, 0.45, 0.65, 0.85]), "bias": rng.uniform(-0.4, 0.4),
        })
    return users


def voice(text: str, style: str, rating: int) -> str:
    """Render a comment in the user's writing style."""
    if style == "lower":
        return text.lower()
    cap = text[0].upper() + text[1:]
    if style == "excited":
        return cap + ("!" if rating >= 3 else " :(")
    return cap + "."


def make_comment(rng: random.Random, user: dict, genre: str, rating: int) -> str:
    """A short comment consistent with the rating and the title's genre, or '' (about 40% of rows)."""
    if rng.random() > user["comment_p"]:
        return ""
    pos, neg = GENRE_COMMENTS[genre]
    if rating >= 4:
        text = rng.choice(pos) if rng.random() < 0.65 else rng.choice(GENERIC_POS)
    elif rating == 3:
        text = rng.choice(GENERIC_MID)
    else:
        text = rng.choice(neg) if rng.random() < 0.65 else rng.choice(GENERIC_NEG)
    return voice(text, user["style"], rating)


def weighted_sample(rng: random.Random, population: list[dict], weights: list[float], k: int) -> list[dict]:
    """Weighted sampling without replacement (Efraimidis-Spirakis keys)."""
    keyed = sorted(((rng.random() ** (1.0 / w), i) for i, w in enumerate(weights)), reverse=True)
    return [population[i] for _, i in keyed[:k]]


def build_interactions(rng: random.Random, items: list[dict], users: list[dict]) -> list[dict]:
    """Genre-driven, popularity-skewed ratings; no duplicate (user, item) pairs; time-ordered per user."""
    ranks = list(range(len(items)))
    rng.shuffle(ranks)
    rank = {item["id"]: r for item, r in zip(items, ranks, strict=True)}
    awkward = {i["id"] for i in items if not i["summary"] or "&" in i["summary"]}
    tail = sorted((i["id"] for i in items if i["id"] not in awkward), key=rank.get)
    cold = set(tail[-N_COLD:])
    pop = {iid: 1.0 / (r + 1) ** POP_EXP for iid, r in rank.items() if iid not in cold}
    quality = {iid: rng.uniform(-0.7, 0.5) + (0.3 if r < 20 else 0.0) for iid, r in rank.items()}
    rows = []
    for user in users:
        prefs = set(user["prefs"])
        liked = [i for i in items if i["genre"] in prefs and i["id"] in pop]
        other = [i for i in items if i["genre"] not in prefs and i["id"] in pop]
        n_liked = min(round(user["n"] * rng.uniform(0.65, 0.9)), int(len(liked) * LIKED_CAP))
        chosen = weighted_sample(rng, liked, [pop[i["id"]] ** LIKED_EXP for i in liked], n_liked)
        chosen += weighted_sample(rng, other, [pop[i["id"]] for i in other], user["n"] - n_liked)
        rng.shuffle(chosen)
        span = rng.uniform(20, 365) * 86400
        start = rng.uniform(YEAR_START, YEAR_END - span)
        stamps = sorted(int(rng.uniform(start, start + span)) for _ in chosen)
        for item, ts in zip(chosen, stamps, strict=True):
            mean = (4.4 if item["genre"] in prefs else 3.0) + quality[item["id"]] + user["bias"]
            rating = max(1, min(5, round(rng.gauss(mean, 0.7))))
            comment = make_comment(rng, user, item["genre"], rating)
            rows.append({"user_id": user["user_id"], "item_id": item["id"], "rating": rating, "timestamp": ts,
                         "comment": comment})
    return rows


def write_tsv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """UTF-8, tab-separated, header line, csv.QUOTE_MINIMAL; extra dict keys are dropped."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter="\t", lineterminator="\n",
                                quoting=csv.QUOTE_MINIMAL, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            assert not any(ch in str(row[f]) for f in fields for ch in "\t\r\n"), row
            writer.writerow(row)


def main() -> None:
    rng = random.Random(SEED)
    items = build_catalogue(rng)
    users = build_users(rng)
    rows = build_interactions(rng, items, users)
    assert len({(r["user_id"], r["item_id"]) for r in rows}) == len(rows)
    write_tsv(HERE / "anime.tsv", ["id", "name", "tags", "type", "episodes", "summary"],
              sorted(items, key=lambda i: i["id"]))
    write_tsv(HERE / "users.tsv", ["user_id", "name", "age", "country", "bio"], users)
    write_tsv(HERE / "interactions.tsv", ["user_id", "item_id", "rating", "timestamp", "comment"], rows)
    counts = Counter(r["item_id"] for r in rows)
    print(f"anime.tsv: {len(items)} titles, users.tsv: {len(users)} users, interactions.tsv: {len(rows)} rows, "
          f"{len(items) - len(counts)} titles without interactions")


if __name__ == "__main__":
    main()
