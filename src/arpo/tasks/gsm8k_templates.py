"""The templates of the synthetic GSM8K sample: 38 kinds of grade-school word problem.

Each template draws its numbers from a :class:`random.Random` and returns a
:class:`~arpo.tasks.gsm8k_problem.Problem` whose every step is one :func:`calc` (integer
arithmetic, exact divisions, no negative value), two to four steps per problem. They cover the
situations GSM8K's problems are made of (Cobbe et al. 2021, arXiv 2110.14168) — buying and change,
discounts, tips and raises in percent, fractions of a quantity, "more than", "fewer than" and
"times as many", rates over time, unit conversions (dozens, hours, weeks), ages, averages, profit,
sharing equally, legs of animals, a whole split by a ratio — with one or two phrasings each, so a
model trained on them meets the wording of a word problem and not one sentence pattern. Some
steps use a number the question only names in words ("twice", "half", "a dozen", "an hour", "a
week", "a year", "%", "and back"); :data:`WORD_NUMBERS` lists them.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from arpo.tasks.gsm8k_problem import Problem, calc, person

WORD_NUMBERS = {
    "twice": 2, "double": 2, "half": 2, "three times": 3, "third": 3, "four times": 4, "quarter": 4,
    "dozen": 12, "hour": 60, "week": 7, "%": 100, "legs": 4, "chickens": 2, "average": 3,
    "and back": 2, "as many": 1, "a year": 12,
}  # fmt: skip
"""Words whose number a step may use without the question writing it in digits."""

TIMES = {2: "twice", 3: "three times", 4: "four times"}
PARTS = {2: "half", 3: "a third", 4: "a quarter"}


def _eggs(rng: random.Random) -> Problem:
    p = person(rng)
    eat, bake = rng.randint(2, 5), rng.randint(2, 6)
    laid, price = rng.randint(eat + bake + 3, 30), rng.randint(2, 5)
    left_text, left = calc(laid, "-", eat, "-", bake)
    money_text, money = calc(left, "*", price)
    return Problem(
        f"{p.name}'s hens lay {laid} eggs per day. {p.He} eats {eat} for breakfast and uses {bake} "
        f"for baking every day. {p.He} sells the rest for ${price} each. How many dollars does "
        f"{p.name} make every day?",
        (f"{p.name} sells {left_text} eggs a day.", f"{p.He} makes {money_text} dollars a day."),
        money,
    )


def _change(rng: random.Random) -> Problem:
    p = person(rng)
    books, book_price = rng.randint(2, 6), rng.randint(2, 9)
    pens, pen_price = rng.randint(2, 8), rng.randint(1, 3)
    books_text, books_cost = calc(books, "*", book_price)
    pens_text, pens_cost = calc(pens, "*", pen_price)
    total_text, total = calc(books_cost, "+", pens_cost)
    bill = next(b for b in (20, 50, 100) if b >= total)
    change_text, change = calc(bill, "-", total)
    return Problem(
        f"{p.name} buys {books} notebooks at ${book_price} each and {pens} pens at ${pen_price} each. "
        f"{p.He} pays with a ${bill} bill. How much change, in dollars, does {p.he} get?",
        (
            f"The notebooks cost {books_text} dollars.",
            f"The pens cost {pens_text} dollars.",
            f"Together they cost {total_text} dollars.",
            f"The change is {change_text} dollars.",
        ),
        change,
    )


def _pages(rng: random.Random) -> Problem:
    p = person(rng)
    monday, factor = rng.randint(8, 40), rng.choice((2, 3))
    tuesday_text, tuesday = calc(monday, "*", factor)
    read_text, read = calc(monday, "+", tuesday)
    pages = rng.randint(read + 10, read + 200)
    left_text, left = calc(pages, "-", read)
    return Problem(
        f"{p.name}'s book has {pages} pages. {p.He} reads {monday} pages on Monday and {TIMES[factor]} as "
        f"many pages on Tuesday. How many pages does {p.he} still have to read?",
        (
            f"On Tuesday {p.he} reads {tuesday_text} pages.",
            f"In the two days {p.he} reads {read_text} pages.",
            f"{p.He} still has {left_text} pages to read.",
        ),
        left,
    )


def _train(rng: random.Random) -> Problem:
    speed1, hours1 = rng.randint(40, 120), rng.randint(2, 5)
    speed2, hours2 = rng.randint(30, 100), rng.randint(1, 4)
    first_text, first = calc(speed1, "*", hours1)
    second_text, second = calc(speed2, "*", hours2)
    total_text, total = calc(first, "+", second)
    return Problem(
        f"A train travels at {speed1} kilometers per hour for {hours1} hours, then at {speed2} kilometers per "
        f"hour for {hours2} hours. How many kilometers does it travel in total?",
        (
            f"First it travels {first_text} kilometers.",
            f"Then it travels {second_text} kilometers.",
            f"In total it travels {total_text} kilometers.",
        ),
        total,
    )


def _candies(rng: random.Random) -> Problem:
    p = person(rng)
    cousins, each, given = rng.randint(2, 8), rng.randint(3, 15), rng.randint(2, 20)
    candies = given + cousins * each
    rest_text, rest = calc(candies, "-", given)
    each_text, each = calc(rest, "/", cousins)
    return Problem(
        f"{p.name} has {candies} candies. {p.He} gives {given} to a friend and shares the rest "
        f"equally among {cousins} cousins. How many candies does each cousin get?",
        (f"{p.He} shares {rest_text} candies.", f"Each cousin gets {each_text} candies."),
        each,
    )


def _savings(rng: random.Random) -> Problem:
    p = person(rng)
    weekly, weeks = rng.randint(5, 30), rng.randint(3, 12)
    saved_text, saved = calc(weekly, "*", weeks)
    spent = rng.randint(1, saved - 1)
    left_text, left = calc(saved, "-", spent)
    return Problem(
        f"{p.name} saves ${weekly} every week. After {weeks} weeks {p.he} spends ${spent} on a gift. How many "
        f"dollars does {p.he} have left?",
        (f"{p.He} saves {saved_text} dollars.", f"{p.He} has {left_text} dollars left."),
        left,
    )


def _garden(rng: random.Random) -> Problem:
    rows, per_row, tomatoes = rng.randint(3, 12), rng.randint(4, 15), rng.randint(3, 20)
    plants_text, plants = calc(rows, "*", per_row)
    total_text, total = calc(plants, "*", tomatoes)
    return Problem(
        f"A garden has {rows} rows with {per_row} tomato plants in each row. Each plant gives {tomatoes} "
        "tomatoes. How many tomatoes does the garden give?",
        (f"The garden has {plants_text} plants.", f"They give {total_text} tomatoes."),
        total,
    )


def _cookies(rng: random.Random) -> Problem:
    batches, per_batch, box = rng.randint(3, 10), rng.choice((12, 18, 24, 30)), rng.choice((2, 3, 6))
    made_text, made = calc(batches, "*", per_batch)
    boxes_wanted = rng.randint(1, made // box - 1)
    sold = made - boxes_wanted * box
    left_text, left = calc(made, "-", sold)
    boxes_text, boxes = calc(left, "/", box)
    return Problem(
        f"A bakery bakes {batches} batches of {per_batch} cookies. It sells {sold} cookies and packs the rest "
        f"into boxes of {box}. How many boxes does it fill?",
        (
            f"It bakes {made_text} cookies.",
            f"It has {left_text} cookies left.",
            f"It fills {boxes_text} boxes.",
        ),
        boxes,
    )


def _discount(rng: random.Random) -> Problem:
    p = person(rng)
    item = rng.choice(("jacket", "bicycle", "lamp", "pair of shoes", "backpack"))
    percent = rng.choice((10, 20, 25, 30, 40, 50))
    price = rng.randint(2, 30) * 20
    off_text, off = calc(price, "*", percent, "/", 100)
    pay_text, pay = calc(price, "-", off)
    question = rng.choice(
        (
            f"A {item} costs ${price}. It is on sale for {percent}% off. How much does {p.name} pay for it?",
            f"{p.name} wants a {item} that normally sells for ${price}. The store gives {p.him} a {percent}% "
            f"discount. How many dollars does {p.he} pay?",
        )
    )
    return Problem(
        question, (f"The discount is {off_text} dollars.", f"{p.He} pays {pay_text} dollars."), pay
    )


def _tip(rng: random.Random) -> Problem:
    people, each = rng.randint(2, 8), rng.randint(1, 4) * 20  # a multiple of 20: the tip is whole
    percent = rng.choice((10, 15, 20))
    meal_text, meal = calc(people, "*", each)
    tip_text, tip = calc(meal, "*", percent, "/", 100)
    total_text, total = calc(meal, "+", tip)
    return Problem(
        f"{people} friends eat dinner, and each meal costs ${each}. They leave a {percent}% tip on the "
        "total. How much do they pay in all, in dollars?",
        (
            f"The meals cost {meal_text} dollars.",
            f"The tip is {tip_text} dollars.",
            f"They pay {total_text} dollars.",
        ),
        total,
    )


def _fraction_left(rng: random.Random) -> Problem:
    p = person(rng)
    q = person(rng, other_than=p)
    part = rng.choice((2, 3, 4))
    things = rng.choice(("marbles", "stickers", "baseball cards", "stamps"))
    count = rng.randint(4, 40) * part
    given_text, given = calc(count, "/", part)
    kept_text, kept = calc(count, "-", given)
    lost = rng.randint(1, kept - 1)
    left_text, left = calc(kept, "-", lost)
    return Problem(
        f"{p.name} has {count} {things}. {p.He} gives {PARTS[part]} of them to {q.name} and then loses "
        f"{lost}. How many {things} does {p.name} have now?",
        (
            f"{p.He} gives away {given_text} {things}.",
            f"{p.He} keeps {kept_text} {things}.",
            f"After losing some, {p.he} has {left_text} {things}.",
        ),
        left,
    )


def _more_than(rng: random.Random) -> Problem:
    a = person(rng)
    b = person(rng, other_than=a)
    fruit = rng.choice(("apples", "oranges", "peaches", "plums"))
    first, more, factor = rng.randint(3, 30), rng.randint(2, 15), rng.choice((2, 3))
    second_text, second = calc(first, "+", more)
    third_text, third = calc(second, "*", factor)
    total_text, total = calc(first, "+", second, "+", third)
    return Problem(
        f"{a.name} picked {first} {fruit}. {b.name} picked {more} more {fruit} than {a.name}, and their "
        f"teacher picked {TIMES[factor]} as many as {b.name}. How many {fruit} did the three of them pick?",
        (
            f"{b.name} picked {second_text} {fruit}.",
            f"The teacher picked {third_text} {fruit}.",
            f"Together they picked {total_text} {fruit}.",
        ),
        total,
    )


def _fewer_than(rng: random.Random) -> Problem:
    first = rng.randint(20, 90)
    fewer = rng.randint(3, first - 5)
    second_text, second = calc(first, "-", fewer)
    total_text, total = calc(first, "+", second)
    more, less, whole = rng.choice(
        (
            ("red cars", "blue cars", "cars"),
            ("boys", "girls", "children"),
            ("oak trees", "pine trees", "trees"),
        )
    )
    return Problem(
        f"There are {first} {more} and {fewer} fewer {less} than {more}. How many {whole} are there altogether?",
        (f"There are {second_text} {less}.", f"Altogether there are {total_text} {whole}."),
        total,
    )


def _ages(rng: random.Random) -> Problem:
    a = person(rng)
    b = person(rng, other_than=a)
    age, older, years = rng.randint(5, 30), rng.randint(2, 25), rng.randint(2, 15)
    b_text, b_age = calc(age, "+", older)
    later_text, later = calc(b_age, "+", years)
    question = rng.choice(
        (
            f"{a.name} is {age} years old. {b.name} is {older} years older than {a.name}. How old will "
            f"{b.name} be in {years} years?",
            f"{b.name} is {older} years older than {a.name}, who is {age}. In {years} years, what will "
            f"{b.name}'s age be?",
        )
    )
    return Problem(
        question,
        (f"{b.name} is {b_text} years old now.", f"In {years} years {b.he} will be {later_text}."),
        later,
    )


def _wage(rng: random.Random) -> Problem:
    p = person(rng)
    rate, hours, days = rng.randint(8, 30), rng.randint(3, 9), rng.randint(2, 6)
    daily_text, daily = calc(rate, "*", hours)
    weekly_text, weekly = calc(daily, "*", days)
    return Problem(
        f"{p.name} earns ${rate} an hour. {p.He} works {hours} hours a day, {days} days a week. How much "
        f"does {p.he} earn in a week?",
        (f"{p.He} earns {daily_text} dollars a day.", f"{p.He} earns {weekly_text} dollars a week."),
        weekly,
    )


def _minutes(rng: random.Random) -> Problem:
    p = person(rng)
    per, hours = rng.choice((5, 10, 12, 15, 20, 30)), rng.randint(1, 6)
    count = hours * 60 // per + rng.randint(0, 3) * 60 // per
    total_text, total = calc(count, "*", per)
    hours_text, hours = calc(total, "/", 60)
    task = rng.choice(("paint a fence post", "wash a car", "grade a test", "knit a row"))
    return Problem(
        f"It takes {p.name} {per} minutes to {task}. How many hours does it take {p.him} to do it {count} times?",
        (f"It takes {total_text} minutes.", f"That is {hours_text} hours."),
        hours,
    )


def _dozens(rng: random.Random) -> Problem:
    p = person(rng)
    dozens = rng.randint(2, 8)
    made_text, made = calc(dozens, "*", 12)
    used = rng.randint(3, made - 2)
    left_text, left = calc(made, "-", used)
    item = rng.choice(("eggs", "muffins", "donuts", "roses"))
    return Problem(
        f"{p.name} buys {dozens} dozen {item}. {p.He} uses {used} of them. How many {item} are left?",
        (f"{p.He} buys {made_text} {item}.", f"{left_text} {item} are left."),
        left,
    )


def _average(rng: random.Random) -> Problem:
    p = person(rng)
    first, second = rng.randint(60, 100), rng.randint(60, 100)
    third = rng.choice([x for x in range(60, 101) if (first + second + x) % 3 == 0])
    total_text, total = calc(first, "+", second, "+", third)
    mean_text, mean = calc(total, "/", 3)
    return Problem(
        f"{p.name} scored {first}, {second} and {third} on three tests. What is {p.his} average score?",
        (f"The scores add up to {total_text}.", f"The average is {mean_text}."),
        mean,
    )


def _profit(rng: random.Random) -> Problem:
    p = person(rng)
    count, cost = rng.randint(10, 60), rng.randint(1, 8)
    price = cost + rng.randint(1, 6)
    item = rng.choice(("lemonade cups", "bracelets", "cupcakes", "candles"))
    spent_text, spent = calc(count, "*", cost)
    earned_text, earned = calc(count, "*", price)
    profit_text, profit = calc(earned, "-", spent)
    return Problem(
        f"{p.name} makes {count} {item}. Each costs {p.him} ${cost} to make, and {p.he} sells each for "
        f"${price}. How much profit does {p.he} make if {p.he} sells all of them?",
        (
            f"Making them costs {spent_text} dollars.",
            f"Selling them brings {earned_text} dollars.",
            f"The profit is {profit_text} dollars.",
        ),
        profit,
    )


def _weeks(rng: random.Random) -> Problem:
    p = person(rng)
    miles, weeks = rng.randint(2, 9), rng.randint(2, 10)
    weekly_text, weekly = calc(miles, "*", 7)
    total_text, total = calc(weekly, "*", weeks)
    activity = rng.choice(("runs", "walks", "cycles", "swims"))
    return Problem(
        f"{p.name} {activity} {miles} miles every day. How many miles does {p.he} cover in {weeks} weeks?",
        (
            f"In a week {p.he} covers {weekly_text} miles.",
            f"In {weeks} weeks {p.he} covers {total_text} miles.",
        ),
        total,
    )


def _split_bill(rng: random.Random) -> Problem:
    friends = rng.randint(2, 6)
    pizzas, price = rng.randint(2, 6), rng.randint(8, 20)
    drinks = rng.randint(1, 5) * friends
    drink_price = rng.randint(1, 4)
    while (pizzas * price + drinks * drink_price) % friends:
        pizzas += 1
    pizza_text, pizza_cost = calc(pizzas, "*", price)
    drink_text, drink_cost = calc(drinks, "*", drink_price)
    total_text, total = calc(pizza_cost, "+", drink_cost)
    share_text, share = calc(total, "/", friends)
    return Problem(
        f"{friends} friends order {pizzas} pizzas at ${price} each and {drinks} drinks at ${drink_price} each. "
        "They split the bill equally. How much does each friend pay?",
        (
            f"The pizzas cost {pizza_text} dollars.",
            f"The drinks cost {drink_text} dollars.",
            f"The bill is {total_text} dollars.",
            f"Each friend pays {share_text} dollars.",
        ),
        share,
    )


def _tickets(rng: random.Random) -> Problem:
    adults, children = rng.randint(1, 6), rng.randint(1, 8)
    adult_price, child_price = rng.randint(8, 25), rng.randint(3, 12)
    place = rng.choice(("the zoo", "a museum", "the movies", "a water park"))
    adults_text, adults_cost = calc(adults, "*", adult_price)
    children_text, children_cost = calc(children, "*", child_price)
    total_text, total = calc(adults_cost, "+", children_cost)
    return Problem(
        f"Tickets to {place} cost ${adult_price} for an adult and ${child_price} for a child. A group of "
        f"{adults} adults and {children} children goes. How much do the tickets cost in total?",
        (
            f"The adult tickets cost {adults_text} dollars.",
            f"The children's tickets cost {children_text} dollars.",
            f"In total they cost {total_text} dollars.",
        ),
        total,
    )


def _gas(rng: random.Random) -> Problem:
    p = person(rng)
    mpg, gallons, price = rng.randint(15, 40), rng.randint(2, 12), rng.randint(3, 5)
    distance = mpg * gallons
    used_text, used = calc(distance, "/", mpg)
    cost_text, cost = calc(used, "*", price)
    return Problem(
        f"{p.name}'s car goes {mpg} miles on a gallon of gas. Gas costs ${price} a gallon. How much does "
        f"the gas cost for a trip of {distance} miles?",
        (f"The trip uses {used_text} gallons.", f"The gas costs {cost_text} dollars."),
        cost,
    )


def _shelves(rng: random.Random) -> Problem:
    shelves, boxes, items = rng.randint(2, 9), rng.randint(2, 8), rng.randint(5, 24)
    per_shelf_text, per_shelf = calc(boxes, "*", items)
    total_text, total = calc(per_shelf, "*", shelves)
    sold = rng.randint(1, total - 1)
    left_text, left = calc(total, "-", sold)
    item = rng.choice(("cans of soup", "light bulbs", "pencils", "toy cars"))
    return Problem(
        f"A store has {shelves} shelves. Each shelf holds {boxes} boxes, and each box has {items} {item}. "
        f"The store sells {sold} {item}. How many {item} are left?",
        (
            f"Each shelf holds {per_shelf_text} {item}.",
            f"The store has {total_text} {item}.",
            f"{left_text} {item} are left.",
        ),
        left,
    )


def _pizza(rng: random.Random) -> Problem:
    pizzas, slices, people = rng.randint(2, 8), rng.choice((6, 8, 10, 12)), rng.randint(2, 10)
    total_text, total = calc(pizzas, "*", slices)
    each = rng.randint(1, max(1, total // people - 1))
    eaten_text, eaten = calc(people, "*", each)
    left_text, left = calc(total, "-", eaten)
    return Problem(
        f"At a party there are {pizzas} pizzas cut into {slices} slices each. {people} guests eat {each} "
        "slices each. How many slices are left over?",
        (
            f"There are {total_text} slices.",
            f"The guests eat {eaten_text} slices.",
            f"{left_text} slices are left over.",
        ),
        left,
    )


def _percent_group(rng: random.Random) -> Problem:
    percent = rng.choice((20, 25, 40, 50, 60, 75))
    group = rng.choice((("class", "students", "wear glasses"), ("club", "members", "play chess")))
    size = rng.randint(1, 10) * 20
    some_text, some = calc(size, "*", percent, "/", 100)
    rest_text, rest = calc(size, "-", some)
    return Problem(
        f"A {group[0]} has {size} {group[1]}, and {percent}% of them {group[2]}. How many of the "
        f"{group[1]} do not?",
        (f"{some_text} {group[1]} {group[2]}.", f"{rest_text} {group[1]} do not."),
        rest,
    )


def _spending(rng: random.Random) -> Problem:
    p = person(rng)
    part = rng.choice((2, 3, 4))
    money = rng.randint(3, 40) * part * 5
    spent_text, spent = calc(money, "/", part)
    rest_text, rest = calc(money, "-", spent)
    snack = rng.randint(1, rest - 1)
    left_text, left = calc(rest, "-", snack)
    return Problem(
        f"{p.name} has ${money}. {p.He} spends {PARTS[part]} of it on a game and ${snack} on snacks. How "
        f"much money does {p.he} have left?",
        (
            f"The game costs {spent_text} dollars.",
            f"{p.He} has {rest_text} dollars after the game.",
            f"{p.He} has {left_text} dollars left.",
        ),
        left,
    )


def _growth(rng: random.Random) -> Problem:
    height, rate, weeks = rng.randint(5, 60), rng.randint(2, 9), rng.randint(2, 12)
    grown_text, grown = calc(rate, "*", weeks)
    now_text, now = calc(height, "+", grown)
    thing = rng.choice(("sunflower", "bean plant", "tree", "puppy's tail"))
    return Problem(
        f"A {thing} is {height} centimeters long and grows {rate} centimeters every week. How long will "
        f"it be after {weeks} weeks?",
        (f"It grows {grown_text} centimeters.", f"It will be {now_text} centimeters long."),
        now,
    )


def _compare_rates(rng: random.Random) -> Problem:
    a = person(rng)
    b = person(rng, other_than=a)
    fast, slow, days = rng.randint(20, 60), rng.randint(5, 19), rng.randint(2, 14)
    a_text, a_total = calc(fast, "*", days)
    b_text, b_total = calc(slow, "*", days)
    diff_text, diff = calc(a_total, "-", b_total)
    return Problem(
        f"{a.name} reads {fast} pages a day and {b.name} reads {slow} pages a day. After {days} days, how "
        f"many more pages has {a.name} read than {b.name}?",
        (
            f"{a.name} has read {a_text} pages.",
            f"{b.name} has read {b_text} pages.",
            f"{a.name} has read {diff_text} more pages.",
        ),
        diff,
    )


def _tank(rng: random.Random) -> Problem:
    rate, minutes, already = rng.randint(2, 15), rng.randint(3, 40), rng.randint(5, 100)
    capacity = already + rate * minutes
    missing_text, missing = calc(capacity, "-", already)
    time_text, time = calc(missing, "/", rate)
    return Problem(
        f"A tank holds {capacity} liters of water and already has {already} liters in it. A hose adds "
        f"{rate} liters a minute. How many minutes does it take to fill the tank?",
        (f"The tank needs {missing_text} more liters.", f"It takes {time_text} minutes."),
        time,
    )


def _raise(rng: random.Random) -> Problem:
    p = person(rng)
    percent = rng.choice((5, 10, 20, 25))
    salary = rng.randint(10, 60) * 100
    raise_text, raised = calc(salary, "*", percent, "/", 100)
    new_text, new = calc(salary, "+", raised)
    year_text, year = calc(new, "*", 12)
    return Problem(
        f"{p.name} earns ${salary} a month. {p.He} gets a {percent}% raise. How much will {p.he} earn in a "
        "year with the new salary?",
        (
            f"The raise is {raise_text} dollars a month.",
            f"The new salary is {new_text} dollars a month.",
            f"In a year {p.he} earns {year_text} dollars.",
        ),
        year,
    )


def _share_packs(rng: random.Random) -> Problem:
    kids, packs, per_pack = rng.randint(2, 9), rng.randint(2, 8), rng.randint(4, 20)
    while packs * per_pack % kids:
        packs += 1
    total_text, total = calc(packs, "*", per_pack)
    each_text, each = calc(total, "/", kids)
    item = rng.choice(("crayons", "granola bars", "juice boxes", "balloons"))
    return Problem(
        f"A teacher buys {packs} packs of {item} with {per_pack} in each pack and shares them equally among "
        f"{kids} children. How many {item} does each child get?",
        (f"There are {total_text} {item}.", f"Each child gets {each_text} {item}."),
        each,
    )


def _legs(rng: random.Random) -> Problem:
    chickens, cows = rng.randint(2, 30), rng.randint(2, 20)
    chicken_text, chicken_legs = calc(chickens, "*", 2)
    cow_text, cow_legs = calc(cows, "*", 4)
    total_text, total = calc(chicken_legs, "+", cow_legs)
    return Problem(
        f"A farm has {chickens} chickens and {cows} cows. How many legs do the animals have in total?",
        (
            f"The chickens have {chicken_text} legs.",
            f"The cows have {cow_text} legs.",
            f"The animals have {total_text} legs.",
        ),
        total,
    )


def _ratio(rng: random.Random) -> Problem:
    a = person(rng)
    b = person(rng, other_than=a)
    factor, unit = rng.choice((2, 3, 4)), rng.randint(3, 25)
    parts_text, parts = calc(factor, "+", 1)
    total = parts * unit
    one_text, one = calc(total, "/", parts)
    more_text, more = calc(one, "*", factor)
    return Problem(
        f"{a.name} has {TIMES[factor]} as many shells as {b.name}. Together they have {total} shells. How many "
        f"shells does {a.name} have?",
        (
            f"Together they have {parts_text} shares.",
            f"One share is {one_text} shells.",
            f"{a.name} has {more_text} shells.",
        ),
        more,
    )


def _round_trip(rng: random.Random) -> Problem:
    p = person(rng)
    distance, days = rng.randint(1, 9), rng.randint(3, 6)
    daily_text, daily = calc(distance, "*", 2)
    total_text, total = calc(daily, "*", days)
    return Problem(
        f"{p.name} walks {distance} kilometers to school and back home the same way. How many kilometers "
        f"does {p.he} walk in {days} school days?",
        (
            f"Each day {p.he} walks {daily_text} kilometers.",
            f"In {days} days {p.he} walks {total_text} kilometers.",
        ),
        total,
    )


def _hours_to_minutes(rng: random.Random) -> Problem:
    p = person(rng)
    hours, extra, sessions = rng.randint(1, 3), rng.choice((15, 20, 30, 45)), rng.randint(2, 7)
    minutes_text, minutes = calc(hours, "*", 60)
    session_text, session = calc(minutes, "+", extra)
    total_text, total = calc(session, "*", sessions)
    whole = f"{hours} hours" if hours > 1 else "1 hour"
    return Problem(
        f"{p.name} practices the piano for {whole} and {extra} minutes each day. How many minutes does {p.he} practice in "
        f"{sessions} days?",
        (
            f"{whole.capitalize()} is {minutes_text} minutes.",
            f"Each day {p.he} practices {session_text} minutes.",
            f"In {sessions} days {p.he} practices {total_text} minutes.",
        ),
        total,
    )


def _double_money(rng: random.Random) -> Problem:
    p = person(rng)
    start, added = rng.randint(5, 60), rng.randint(2, 30)
    sum_text, total = calc(start, "+", added)
    double_text, doubled = calc(total, "*", 2)
    return Problem(
        f"{p.name} has ${start} in a piggy bank. An aunt gives {p.him} ${added} more, and then {p.his} "
        "parents double the money in the bank. How much money is in the bank now?",
        (
            f"After the aunt's gift there are {sum_text} dollars.",
            f"Doubled, there are {double_text} dollars.",
        ),
        doubled,
    )


def _rows_of_seats(rng: random.Random) -> Problem:
    rows, seats = rng.randint(5, 30), rng.randint(8, 25)
    total_text, total = calc(rows, "*", seats)
    taken = rng.randint(1, total - 1)
    empty_text, empty = calc(total, "-", taken)
    place = rng.choice(("theater", "stadium section", "school hall", "bus station"))
    return Problem(
        f"A {place} has {rows} rows of {seats} seats. {taken} people are sitting. How many seats are empty?",
        (f"There are {total_text} seats.", f"{empty_text} seats are empty."),
        empty,
    )


TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    "eggs": _eggs,
    "change": _change,
    "pages": _pages,
    "train": _train,
    "candies": _candies,
    "savings": _savings,
    "garden": _garden,
    "cookies": _cookies,
    "discount": _discount,
    "tip": _tip,
    "fraction_left": _fraction_left,
    "more_than": _more_than,
    "fewer_than": _fewer_than,
    "ages": _ages,
    "wage": _wage,
    "minutes": _minutes,
    "dozens": _dozens,
    "average": _average,
    "profit": _profit,
    "weeks": _weeks,
    "split_bill": _split_bill,
    "tickets": _tickets,
    "gas": _gas,
    "shelves": _shelves,
    "pizza": _pizza,
    "percent_group": _percent_group,
    "spending": _spending,
    "growth": _growth,
    "compare_rates": _compare_rates,
    "tank": _tank,
    "raise": _raise,
    "share_packs": _share_packs,
    "legs": _legs,
    "ratio": _ratio,
    "round_trip": _round_trip,
    "hours_to_minutes": _hours_to_minutes,
    "double_money": _double_money,
    "rows_of_seats": _rows_of_seats,
}
