"""Writes dags/data/reviews.parquet: product reviews for the example DAGs.

Reviews are assembled from sentences written for this project (praise, complaints, shipping,
support, family, comparisons), with products, brands, prices, dates and people varied by a fixed
seed, so the file is the same on every machine. Run: python dags/data/generate_reviews.py
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PRODUCTS = [
    ("Sony", "WH-1000XM5 headphones", 349), ("Bose", "QuietComfort 45 headphones", 279),
    ("Dyson", "V15 Detect vacuum", 699), ("Breville", "Barista Express espresso machine", 599),
    ("KitchenAid", "Artisan stand mixer", 449), ("Apple", "iPad Air", 599), ("Samsung", "Galaxy S23 phone", 799),
    ("Garmin", "Forerunner 265 watch", 449), ("Logitech", "MX Master 3S mouse", 99), ("Anker", "PowerCore 20000 battery", 49),
    ("Philips", "Hue starter kit", 199), ("Nespresso", "Vertuo Next coffee maker", 179), ("Lego", "Technic 42141 set", 219),
    ("Canon", "EOS R50 camera", 679), ("Vitamix", "E310 blender", 349), ("JBL", "Flip 6 speaker", 129),
    ("Fitbit", "Charge 6 tracker", 159), ("Razer", "BlackWidow V4 keyboard", 169), ("Nintendo", "Switch OLED console", 349),
    ("IKEA", "Markus office chair", 229),
]
PEOPLE = ["Anna Schmidt", "Mark Davis", "Priya Patel", "Tom Becker", "Laura Rossi", "James O'Connor", "Mei Chen",
          "Carlos Mendes", "Sofia Nowak", "David Kim", "Emma Johansson", "Lucas Martin"]
RELATIONS = ["my wife", "my husband", "my daughter", "my son", "my colleague", "my neighbour", "my brother"]
CITIES = ["London", "Berlin", "Paris", "Madrid", "Chicago", "Toronto", "Sydney", "Amsterdam", "Dublin", "Seattle"]
PRAISE = [
    "Honestly the best purchase I have made this year.", "Build quality is excellent and it feels sturdy.",
    "It works exactly as advertised and setup took five minutes.", "I love how quiet it is.",
    "Battery life is fantastic and easily lasts a week.", "Great value for the price.",
    "The design is beautiful and it fits perfectly on my desk.", "Customer service was friendly and helpful.",
    "I would recommend it to anyone.", "It exceeded my expectations in every way.",
]
COMPLAINTS = [
    "It stopped working after two weeks.", "The box arrived damaged and a part was missing.",
    "Support never answered my emails.", "It is much louder than the reviews suggested.",
    "The app keeps crashing and I had to reset it three times.", "Way overpriced for what you get.",
    "The battery drains overnight, which is disappointing.", "Returning it was a nightmare.",
    "The plastic feels cheap and already cracked.", "Terrible instructions, I wasted an afternoon.",
]
NEUTRAL = [
    "It does the job.", "Nothing special, but nothing wrong either.", "Shipping took about a week.",
    "The colour is slightly different from the photos.", "I have only used it a few times so far.",
]
EXTRA = [
    "I compared it with the {other} before buying and the reviews convinced me.",
    "{relation} uses it every morning now.", "{person} from the store in {city} helped me choose.",
    "It came with a {months}-month warranty, which is reassuring.",
    "I had a call with {person} from support on {when}; the issue was solved in twenty minutes.",
    "Delivery to {city} was quick: it arrived on {when}.",
    "After {months} months of daily use it still looks new.",
    "The manual is clear and the accessories are well thought out.",
    "I paid ${price} on sale, down from ${full}.",
]


def review(rng: random.Random, review_id: int) -> dict:
    brand, product, price = rng.choice(PRODUCTS)
    paid = round(price * rng.choice([1, 1, 0.9, 0.85, 0.75]), 2)
    bought = date(2024, 1, 1) + timedelta(days=rng.randint(0, 600))
    mood = rng.choices(["praise", "complaint", "neutral", "mixed"], [45, 30, 10, 15])[0]
    opening = {
        "praise": f"I bought the {brand} {product} for ${paid:g} on {bought:%B %d, %Y}.",
        "complaint": f"Ordered the {brand} {product} on {bought:%B %d, %Y} and paid ${paid:g}. Big mistake.",
        "neutral": f"Got the {brand} {product} ({bought:%Y-%m-%d}) for ${paid:g}.",
        "mixed": f"The {brand} {product} cost me ${paid:g} back on {bought:%B %d, %Y}.",
    }[mood]
    pool = {"praise": PRAISE, "complaint": COMPLAINTS, "neutral": NEUTRAL,
            "mixed": PRAISE[:5] + COMPLAINTS[:5]}[mood]
    long = rng.random() < 0.35
    sentences = [opening] + rng.sample(pool, k=min(len(pool), rng.randint(3, 6) if long else rng.randint(1, 2)))
    for template in rng.sample(EXTRA, k=rng.randint(2, 5) if long else rng.randint(0, 1)):
        other_brand, other_product, _ = rng.choice(PRODUCTS)
        sentences.append(template.format(
            other=f"{other_brand} {other_product}", relation=rng.choice(RELATIONS).capitalize(),
            person=rng.choice(PEOPLE), city=rng.choice(CITIES), months=rng.choice([6, 12, 18, 24]),
            when=f"{bought + timedelta(days=rng.randint(2, 40)):%B %d}", price=f"{paid:g}", full=f"{price:g}"))
    rating = {"praise": rng.choice([4, 5, 5]), "complaint": rng.choice([1, 1, 2]), "neutral": 3,
              "mixed": rng.choice([2, 3, 4])}[mood]
    return {"review_id": review_id, "product": f"{brand} {product}", "brand": brand, "price": paid,
            "reviewer": rng.choice(PEOPLE), "review_date": bought + timedelta(days=rng.randint(3, 60)),
            "rating": rating, "body": " ".join(sentences)}


def main(count: int = 300) -> Path:
    rng = random.Random(20261125)
    rows = [review(rng, 1000 + i) for i in range(count)]
    path = Path(__file__).with_name("reviews.parquet")
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, path)
    partitions = path.with_name("partitions")  # for the partitioned_enrichment example
    partitions.mkdir(exist_ok=True)
    for number in range(3):
        pq.write_table(table.slice(number * 100, 100), partitions / f"reviews-{number}.parquet")
    return path


if __name__ == "__main__":
    print(main())
